"""The ``asyncio`` backend: a real asyncio event loop runs the tasks.

Data flow::

    submit(fn, *args) ──► _Task ──► incoming deque ──(one call_soon_threadsafe per burst)──►
        loop thread: _drain ──► admit (max_workers) ──► ledger.begin(task)
            async def fn ──► loop.create_task(_run(task, fn, args)): await fn(*args), then
                             report the outcome from inside that asyncio task ──────┐
            plain fn ─────► loop.run_in_executor(None, …) ──► done-callback ───────┤
                                                                                    ▼
                          ledger.succeeded / failed ──► the taskkit.Future settles

    On the loop's own thread, ``submit(async_fn, *args)`` skips the hand-off: the
    task is made running and its asyncio task is created at once, and a task that
    ends with a value is settled and counted by that asyncio task (``_run``),
    without the ledger's lock.  asyncio code that submits by the hundred thousand
    pays little more than ``loop.create_task`` would cost it.  This is the
    ``asyncio_inline_submit`` fast path (``_start_here``, the backend's
    ``submit_here``); with it off (see ``_fastpaths``) such a submit goes the way above.

The loop is the one running where the executor was opened, if any, or an existing
loop passed as ``loop=`` (the executor uses these but never stops or closes them),
else the executor's own, run by a daemon thread (``uvloop`` when asked for and
installed).  Per-task timeouts are ``loop.call_later`` timers and
cancellation is asyncio's own: ``CancelledError`` is raised inside the task at
its next ``await``, so its ``finally`` blocks and ``async with`` exits run.
A map chunk of an ``async def`` function runs its calls as concurrent tasks.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Generator
from threading import get_ident
from types import FunctionType
from typing import Any, TypeVar, final

from typing_extensions import ParamSpec

from ..._core._backend import Backend, check_max_workers
from ..._core._calls import ChunkResult, run_chunk, run_chunk_concurrently
from ..._core._compat import (
    get_running_loop_or_none,
    has_loop_thread_id,
    loop_thread_id,
    register_atexit,
)
from ..._core._executor import KILL_GRACE, Executor, is_async_callable, shut_down_at_exit
from ..._core._fastpaths import ASYNCIO_INLINE_SUBMIT
from ..._core._future import (
    Future,
    await_in_asyncio,
    current_await_hook,
    is_running,
    set_await_hook,
)
from ..._core._ledger import (
    NO_KWARGS,
    LoopTasks,
    call_as_task,
    call_of,
    handle_of,
    set_handle,
    set_width,
    weight_of,
)
from ..._core._ledger import Task as _Task
from ..._core._timer import Deadline
from .._admission import Admission

__all__ = ["AsyncioExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

_CO_COROUTINE = inspect.CO_COROUTINE

_live_backends: weakref.WeakSet[_AsyncioBackend] = weakref.WeakSet()


def _at_exit() -> None:
    shut_down_at_exit(backend.executor for backend in list(_live_backends))


register_atexit(_at_exit)


class _LoopDeadline(Deadline):
    """A per-task deadline kept by the event loop's own timer."""

    __slots__ = ("handle", "loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], object]
    ):
        super().__init__(loop.time() + delay, callback)
        self.loop = loop
        self.handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback()

    def cancel(self) -> None:
        self.cancelled = True
        # TimerHandle.cancel is not thread-safe; off the loop, the timer fires as a no-op.
        if get_running_loop_or_none() is self.loop:
            self.handle.cancel()


@final
class AsyncioExecutor(Executor):
    """Run ``async def`` functions on an asyncio event loop (plain functions on its executor).

    ``await ex.submit(fn, x)`` is ``await fn(x)``.  From code on the executor's loop
    (with no ``max_workers`` limit), ``submit`` of an ``async def`` function makes an
    asyncio task at once, as ``loop.create_task`` makes one, and costs little more:
    asyncio code may submit tasks by the hundred thousand.
    """

    backend = "asyncio"

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        uvloop: bool = False,
    ) -> None:
        """Start the event loop's thread, or adopt ``loop``.

        Args:
            max_workers: the most submitted tasks that run at once (the others wait
                their turn); None, the default, starts every task at once.
            loop: an existing event loop to run tasks on; the executor never stops or
                closes it.  None (the default): the running loop when opened inside
                one, else a loop of the executor's own, run by a thread.
            uvloop: run a loop of the executor's own on uvloop if it is installed (it
                is never required: without it, asyncio's loop is used).
        """
        check_max_workers(1 if max_workers is None else max_workers)
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
        if loop is not None and uvloop:
            raise ValueError("uvloop=True applies to the executor's own loop, not to loop=")
        self._asyncio = _AsyncioBackend(max_workers, loop, uvloop)
        super().__init__(self._asyncio)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the tasks run on."""
        return self._asyncio.loop


class _AsyncioBackend(Backend):
    """The event loop behind an ``AsyncioExecutor``, and how tasks run on it."""

    name = "asyncio"
    timeout_detail = "it was cancelled at its next await (a plain function runs on to its end)"

    def __init__(
        self, max_workers: int | None, loop: asyncio.AbstractEventLoop | None, uvloop: bool
    ) -> None:
        super().__init__(1 if max_workers is None else max_workers)
        self._incoming: collections.deque[_Task] = collections.deque()
        self._drain_scheduled = False
        self._admission = Admission(max_workers, self._start)
        self._stop_when_idle = False
        self._stopped: set[asyncio.Task[Any]] = set()  # tasks whose stop was requested
        # Attempts cancelled before their first step, until they are reported (_Attempt).
        self._unstarted_cancels: set[asyncio.Task[Any]] = set()
        # What each plain function's executor call runs: one table and one bound
        # callback, rather than a callback object per call.
        self._owners: dict[asyncio.Future[Any], _Task] = {}
        self._done_hook = self._done
        self._thread: threading.Thread | None = None
        if loop is None and not uvloop:
            loop = get_running_loop_or_none()  # opened inside a running loop: use it
        if loop is not None:
            self.loop = loop
            if get_running_loop_or_none() is loop and current_await_hook() is None:
                set_await_hook(await_on_loop)  # this thread runs the loop: await futures fast
        else:
            self.loop = _new_loop(uvloop)
            self._thread = threading.Thread(
                target=self._run_loop, name="taskkit-asyncio", daemon=True
            )
            self._thread.start()
            _live_backends.add(self)
        # submit() from code on the loop starts an async def function at once, as one of
        # its LoopTasks; with max_workers set, it may have to wait its turn instead.  The
        # inline submit of an async def on the loop's thread: a fast path (_fastpaths).
        if max_workers is None and ASYNCIO_INLINE_SUBMIT:
            self.submit_here = self._start_here
        self.loop_tasks = LoopTasks(self.ledger)
        # asyncio's own loops say which thread runs them in one attribute (None while
        # stopped), cheaper to read than asking for the running loop; others are asked.
        self.loop_thread_known = has_loop_thread_id(self.loop)

    # ------------------------------------------------------------ the loop

    def _run_loop(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        set_await_hook(await_on_loop)
        try:
            loop.run_forever()
            # Then clean up as asyncio.run() does.
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _on_loop(self) -> bool:
        return get_running_loop_or_none() is self.loop

    # ------------------------------------------------------------ the protocol

    def _start_here(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any] | None:
        """``submit`` on the loop's own thread: start an ``async def`` function at once.

        The ``asyncio_inline_submit`` fast path (see ``_fastpaths``); None where it does
        not apply, and ``Executor.submit`` goes the ordinary way, its plain twin.
        """
        loop: Any = self.loop
        if not (
            (
                get_ident() == loop_thread_id(loop)
                if self.loop_thread_known
                else get_running_loop_or_none() is loop
            )
            and type(fn) is FunctionType
            and fn.__code__.co_flags & _CO_COROUTINE
            and loop.get_task_factory() is None
        ):
            return None
        # The ledger's submit and _start in one, on the loop's own thread (see LoopTasks).
        loop_tasks = self.loop_tasks
        task = loop_tasks.start(fn, args, kwargs)
        loop_tasks.set_handle(
            task, _Attempt(self._run(task, fn, args, kwargs or NO_KWARGS, True), loop=loop)
        )
        self._admission.running += 1
        return task

    def dispatch(self, task: _Task) -> None:
        if get_running_loop_or_none() is self.loop:  # submitted from a task on the loop
            self._admission.admit(task)
            return
        self._incoming.append(task)
        if not self._drain_scheduled:
            # One wake-up of the loop per burst of submits, not one per task.
            self._drain_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._drain_scheduled = False
                raise

    def _drain(self) -> None:
        # Clear the flag first: a submit that sees it set is taken by this drain.
        self._drain_scheduled = False
        incoming, admit = self._incoming, self._admission.admit
        while incoming:
            admit(incoming.popleft())

    def _start(self, task: _Task) -> None:
        if not self.ledger.begin(task):
            return  # cancelled while it waited
        self._admission.running += 1
        fn, args, kwargs = call_of(task)
        if fn is run_chunk and is_async_callable(args[0]):
            fn = _gather_chunk  # its calls run at once (only without a max_workers limit)
            set_width(task, weight_of(task))
        elif not is_async_callable(fn):
            # Plain functions run on the loop's default executor (a thread pool), so
            # they never block the loop; a running one cannot be cancelled.
            outcome = self.loop.run_in_executor(None, call_as_task, self.ledger, fn, args, kwargs)
            self._owners[outcome] = task
            set_handle(task, outcome)
            outcome.add_done_callback(self._done_hook)
            return
        # One asyncio task per attempt, which reports its own outcome as it ends: no
        # done-callback, and so no second trip through the loop per task.
        loop = self.loop
        if loop.get_task_factory() is None:
            set_handle(task, _Attempt(self._run(task, fn, args, kwargs), loop=loop))
        else:
            # The loop makes its tasks its own way: step into a guard first instead.
            entered = self._run_entered(task, fn, args, kwargs)
            entered.send(None)
            set_handle(task, loop.create_task(entered))
        self.ledger.stoppable(task)  # an asyncio task: cancellable

    async def _run(
        self,
        task: _Task,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        at_once: bool = False,
    ) -> None:
        """The asyncio task of one attempt: call ``fn``, await it, report how it ended.

        ``fn`` is called in the task's first step, so an attempt cancelled before
        then leaves no coroutine that was never awaited (see ``_Attempt`` for how
        such an attempt is reported).

        A task ``submit`` started ``at_once`` on the loop has no deadline, no retries and
        no place under ``max_workers``, so unless a stop is pending, a value settles its
        future and is counted here, by the loop's thread, without the ledger's lock
        (``LoopTasks.succeeded``).
        """
        try:
            value = await fn(*args, **kwargs)
        except BaseException as error:
            self._ended(task, None, error)
            if self._ends_the_attempt(error):
                raise
        else:
            if not at_once or self._stopped:
                self._ended(task, value, None)
                return
            self.loop_tasks.succeeded(task, value)
            self._admission.running -= 1
            if self._stop_when_idle:
                self._stop_if_idle()

    def _ends_the_attempt(self, error: BaseException) -> bool:
        """True if ``error``, reported as the task's outcome, goes on up its asyncio task.

        Cancellation ends the asyncio task too.  ``SystemExit`` and ``KeyboardInterrupt``
        raised by a task would stop the executor's own loop, leaving every other future
        unsettled and the executor unable to shut down: there they fail only that task's
        future.  On a loop the executor was given (or found running), they go on up as
        they do from the loop's other tasks.
        """
        return isinstance(error, asyncio.CancelledError) or (
            self._thread is None and not isinstance(error, Exception)
        )

    def _ended(self, task: _Task, value: Any, error: BaseException | None) -> None:
        """Loop thread, in the attempt's own asyncio task: report its outcome."""
        # A stale attempt (one a timeout replaced) always had its stop asked for, so
        # while no stop is pending the task's handle is this attempt.
        attempt = asyncio.current_task(self.loop) if self._stopped else handle_of(task)
        if not self._reported_elsewhere(task, attempt):
            self._report(task, value, error)
        self._release()

    async def _run_entered(
        self, task: _Task, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """``_run``, for a loop with its own task factory: ``_start`` steps this once, into
        its try block, so that a cancel before asyncio first runs it is still reported."""
        try:
            await _ENTERED
        except BaseException as error:
            self._ended(task, None, error)
            raise
        await self._run(task, fn, args, kwargs)

    def _never_ran(self, task: _Task, attempt: asyncio.Task[None]) -> None:
        """Loop thread: an attempt cancelled before its first step is done; report it."""
        self._unstarted_cancels.discard(attempt)
        if not self._reported_elsewhere(task, attempt):
            self.ledger.stopped(task)  # cancelled by code outside taskkit
        self._release()

    def _done(self, outcome: asyncio.Future[Any]) -> None:
        """Loop thread: a plain function's call on the loop's executor ended."""
        task = self._owners.pop(outcome)
        if not self._reported_elsewhere(task, outcome):
            try:
                value = outcome.result()
            except BaseException as error:
                self._report(task, None, error)
            else:
                self.ledger.succeeded(task, value)
        self._release()

    def _report(self, task: _Task, value: Any, error: BaseException | None) -> None:
        """Report how an attempt ended (its stop was not asked for by taskkit).

        Cancelled by other code (one that cancels every task on the loop, say, or the
        loop's own clean-up), the future is cancelled, as the asyncio task was.
        """
        if isinstance(error, asyncio.CancelledError):
            self.ledger.stopped(task)
        else:
            self.ledger.report_outcome(task, value, error)

    def _reported_elsewhere(self, task: _Task, attempt: asyncio.Future[Any] | None) -> bool:
        """Loop thread, as ``attempt`` ends: True if its outcome must not be reported.

        That is when its stop was asked for (the asker settled the future as cancelled
        or timed out), when a newer attempt replaced it, or when the future was settled
        by another path (a kill).
        """
        stopped = self._stopped
        if stopped and attempt in stopped:
            stopped.discard(attempt)
            return True
        return handle_of(task) is not attempt or not is_running(task)

    def _release(self) -> None:
        self._admission.release()
        if self._stop_when_idle:
            self._stop_if_idle()

    def _request_cancel(self, atask: asyncio.Task[Any]) -> bool:
        """Any thread: cancel a running task at its next await."""
        # Marked before the cancel can take effect, so that the attempt's end (_ended,
        # _never_ran or _done) never reports the CancelledError as its outcome: the
        # caller settles the future as cancelled.
        self._stopped.add(atask)
        if self._on_loop():
            atask.cancel()
        else:
            self.loop.call_soon_threadsafe(atask.cancel)
        return True

    def stop_running(self, task: _Task) -> bool:
        handle = handle_of(task)
        if not isinstance(handle, asyncio.Task):
            return False  # a plain function, running on a thread: it cannot be stopped
        return self._request_cancel(handle)

    def schedule_deadline(self, task: _Task, timeout: float) -> Deadline:
        # ledger.begin runs on the loop thread: the loop's own timer keeps the deadline.
        return _LoopDeadline(self.loop, timeout, lambda: self.ledger.deadline_passed(task))

    def to_await_after_kill(self) -> list[asyncio.Future[Any]]:
        # On the executor's own loop, `async with` left by an exception also waits for
        # the cancelled tasks' ``finally`` blocks, as ``asyncio.TaskGroup`` does.
        if not self._on_loop():
            return []
        current = asyncio.current_task()
        handles = [handle_of(task) for task in list(self.ledger.live.values())]
        return [h for h in handles if isinstance(h, asyncio.Task) and h is not current]

    def worker_count(self) -> int:
        return 1 if self.loop.is_running() else 0

    def map_per_call(self, fn: Callable[..., Any]) -> bool:
        # A chunk of an async function runs its calls at once: under a max_workers
        # limit, each call is a task of its own, so that the limit counts calls.
        return self._admission.limit is not None and is_async_callable(fn)

    def on_own_loop(self) -> bool:
        return self._on_loop()

    def now(self) -> float:
        return self.loop.time()

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        _live_backends.discard(self)
        if self._thread is None:
            return  # a loop we were given: never stopped or closed by us
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self._begin_stop, kill)
        except RuntimeError:
            return  # the loop already closed
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(KILL_GRACE if kill else None)

    def _begin_stop(self, kill: bool) -> None:
        if kill:
            self.loop.stop()
        else:
            self._stop_when_idle = True
            self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        admission = self._admission
        if not admission.running and not admission.waiting and not self._incoming:
            self.loop.stop()


class _Attempt(asyncio.Task[None]):
    """The asyncio task of one attempt of a submitted ``async def`` call.

    An asyncio task like any other, but for one case: cancelled before its first
    step, its coroutine (``_AsyncioBackend._run``) never runs,
    so nothing in it can report how the attempt ended.  ``cancel`` notices that case
    and has the backend report the attempt once the task is done; every other
    attempt costs nothing extra.  It holds no reference of its own to the backend or
    the taskkit task (a cycle with the task's handle would leave every finished task to
    the collector): an unstarted coroutine's frame already holds both, as its
    arguments.
    """

    # No slot of its own, not even one: an asyncio task one pointer larger measurably
    # slows every attempt.  Which attempts await their report is kept by the backend.
    __slots__ = ()

    def cancel(self, msg: Any | None = None) -> bool:
        coro: Any = self.get_coro()
        if inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:
            return super().cancel(msg)
        arguments = coro.cr_frame.f_locals  # of _run(self, task, ...), unstarted
        if not super().cancel(msg):
            return False
        backend, task = arguments["self"], arguments["task"]
        if self not in backend._unstarted_cancels:  # once, however often it is cancelled
            backend._unstarted_cancels.add(self)
            self.add_done_callback(functools.partial(backend._never_ran, task))
        return True


class _Entered:
    """What ``_run`` awaits first: one bare switch, taken by ``_start`` before asyncio runs it."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        # A C iterator that yields once: cheaper than a generator.
        return iter((None,))  # type: ignore[return-value]


_ENTERED = _Entered()


# A thread running an asyncio loop awaits taskkit Futures this way (its await hook).
await_on_loop = await_in_asyncio


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass  # never required: fall back to asyncio's own loop
        else:
            # Typed through an annotation: without uvloop installed, mypy sees Any here.
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def _gather_chunk(
    fn: Callable[..., Any], items: list[tuple[Any, ...]], retries: int = 0, keep_going: bool = False
) -> ChunkResult:
    """A map chunk of an async function: every call is its own asyncio task, all at once."""
    spawn = asyncio.get_running_loop().create_task
    return await run_chunk_concurrently(fn, items, spawn, retries, keep_going)


backend_class = AsyncioExecutor
