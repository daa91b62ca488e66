"""The ``coroutine`` backend: very many cooperative tasks on taskkit's own scheduler.

Data flow::

    submit(fn, *args) ──► _Task ──► scheduler inbox ──► loop thread: admit (max_workers)
                                                            │ ledger.begin(task); fn(*args)
        async def / generator function ──► a scheduler Task ┤ (runs until each await/yield)
        plain function ──────────────────► ran inline, once ┘
    Task finishes ──► ledger.report_outcome ──► the taskkit.Future settles (any thread may wait)

    inside a task:  ex.spawn(fn, *args) ──► a Task on the same thread, no Future, no hand-off
    map(async_fn, xs): one chunk = one hand-off; its calls run as concurrent Tasks

No asyncio is involved: a switch between tasks is a generator ``send``.  Everything
runs on one thread, so tasks need no locks between them -- and one blocking call
stalls them all, which the scheduler reports with a ``BlockingWarning``.  A wait
that could only end by another task's doing never starts on that thread: a taskkit
primitive's blocking face, ``result()`` of this executor's unfinished future, and
``join()`` or ``shutdown(wait=True)`` raise ``BlockingCallError`` there instead.
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from threading import get_ident
from types import CoroutineType, FunctionType, GeneratorType
from typing import Any, Literal, Protocol, TypeVar, final, overload

from typing_extensions import ParamSpec

from ..._core._backend import Backend, check_max_workers
from ..._core._calls import ChunkResult, run_chunk, run_chunk_concurrently
from ..._core._compat import register_atexit
from ..._core._errors import SchedulerStopped, UsageError
from ..._core._executor import KILL_GRACE, Executor, is_async_callable, shut_down_at_exit
from ..._core._ledger import Task as _Task
from ..._core._ledger import call_of, handle_of, set_handle, set_width, weight_of
from ..._core._timer import Deadline
from .._admission import Admission
from . import PickNext, Scheduler, Task, current_scheduler, fifo, seeded_random

__all__ = ["CoroutineExecutor"]

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# Code flags of a function whose call returns a coroutine or a generator.
_MAKES_CORO = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ITERABLE_COROUTINE

_live_backends: weakref.WeakSet[_CoroutineBackend] = weakref.WeakSet()


def _at_exit() -> None:
    shut_down_at_exit(backend.executor for backend in list(_live_backends))


register_atexit(_at_exit)


class Spawned(Protocol[T_co]):
    """The handle ``spawn`` returns, as a type checker sees it: ``await handle`` is a ``T``."""

    @property
    def name(self) -> str: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> T_co: ...
    def exception(self) -> BaseException | None: ...
    def cancel(self) -> bool: ...
    def __await__(self) -> Generator[Any, None, T_co]: ...


@final
class CoroutineExecutor(Executor):
    """Run ``async def`` and generator functions as cooperative tasks on one thread."""

    backend = "coroutine"

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        clock: Literal["real", "virtual"] = "real",
        order: Literal["fifo", "random"] | PickNext = "fifo",
        seed: int = 0,
        blocking_warning: float | None = 0.1,
    ) -> None:
        """Start the scheduler thread.

        Args:
            max_workers: the most submitted tasks that run at once (the others wait
                their turn); None, the default, starts every task at once.
            clock: ``"real"`` time, or ``"virtual"``: whenever no task can run,
                time jumps to the next sleeper, so sleeps end at once (for tests).
            order: which ready task runs next: ``"fifo"`` (the same order every
                run), ``"random"`` (drawn from ``random.Random(seed)``), or a
                function that removes the next task from the ready deque and returns it.
            seed: the seed for ``order="random"``.
            blocking_warning: warn (``BlockingWarning``) when a task holds the
                thread this many seconds without awaiting; None turns it off.
        """
        check_max_workers(1 if max_workers is None else max_workers)
        if clock not in ("real", "virtual"):
            raise ValueError(f"clock must be 'real' or 'virtual', got {clock!r}")
        if order == "fifo":
            pick: PickNext = fifo
        elif order == "random":
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int, got {type(seed).__name__}")
            pick = seeded_random(seed)
        elif callable(order):
            pick = order
        else:
            raise ValueError(f"order must be 'fifo', 'random' or a function, got {order!r}")
        if blocking_warning is not None and not blocking_warning > 0:
            raise ValueError(
                f"blocking_warning must be > 0 seconds or None, got {blocking_warning!r}"
            )
        backend = _CoroutineBackend(max_workers, clock, pick, blocking_warning)
        self._scheduler = backend.scheduler
        super().__init__(backend)

    # ----------------------------------------------------------- public extras

    @overload
    def spawn(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Spawned[T]: ...

    @overload
    def spawn(
        self, fn: Callable[P, Generator[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Spawned[T]: ...

    @overload
    def spawn(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Spawned[T]: ...

    def spawn(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Spawned[Any]:
        """Start ``fn(*args, **kwargs)`` as a new task beside the caller; return its handle.

        The cheap way to make many tasks: no ``Future`` and no hand-off between
        threads, so it costs about a microsecond.  Only code running in one of this
        executor's tasks may call it; ``await handle`` returns the task's result.
        From other threads use ``submit`` or ``map``.

        An ``async def`` or generator function without keyword arguments is called
        when the new task first runs, so ``await handle`` raises an error in the
        call itself (wrong arguments) as it raises the task's other errors.

        Raises:
            UsageError: called from outside this executor's tasks.
            TypeError: ``fn`` is not an ``async def`` or generator function.
        """
        scheduler = self._scheduler
        if get_ident() != scheduler.ident:
            raise UsageError(
                "spawn() can only be called from a task of this executor; "
                "from other code use submit() or map()"
            )
        if not kwargs and type(fn) is FunctionType and fn.__code__.co_flags & _MAKES_CORO:
            # An async def or generator function: its coroutine is made when the task first
            # runs (see Task), which keeps a burst of spawns light on the garbage collector.
            task = Task(fn, args)
            scheduler.ready.append(task)  # counted live when it first runs
            return task
        coro = fn(*args, **kwargs)
        if type(coro) is not CoroutineType and type(coro) is not GeneratorType:
            if not inspect.isawaitable(coro):
                raise TypeError(
                    f"spawn() needs an async def or generator function; {fn!r} returned "
                    f"{type(coro).__name__}"
                )
            coro = _await(coro)  # e.g. spawn(taskkit.sleep, 1)
        return scheduler.spawn(coro)

    def time(self) -> float:
        """The scheduler's clock in seconds (simulated time under ``clock="virtual"``)."""
        return self._scheduler.now()


class _CoroutineBackend(Backend):
    """The scheduler thread behind a ``CoroutineExecutor``."""

    name = "coroutine"
    timeout_detail = "it was cancelled at its next await"

    def __init__(
        self,
        max_workers: int | None,
        clock: Literal["real", "virtual"],
        pick: PickNext,
        blocking_warning: float | None,
    ) -> None:
        super().__init__(1 if max_workers is None else max_workers)
        self._threshold = blocking_warning
        self._admission = Admission(max_workers, self._start)
        self._crashed: BaseException | None = None
        self.scheduler = Scheduler(
            self, clock=clock, pick=pick, blocking_threshold=blocking_warning
        )
        _live_backends.add(self)

    def dispatch(self, task: _Task) -> None:
        if self._crashed is not None:
            error = SchedulerStopped("the coroutine scheduler stopped after an error")
            raise error from self._crashed
        self.scheduler.send(task)

    def scheduler_crashed(self, error: BaseException) -> None:
        """Scheduler thread, dying: fail every unfinished task rather than leave it hanging."""
        self._crashed = error
        ledger = self.ledger
        with ledger.lock:
            futures = list(ledger.live.values())
        for future in futures:
            failure = SchedulerStopped(f"the coroutine scheduler stopped after an error: {error!r}")
            failure.__cause__ = error
            ledger.fail_now(future, failure)

    def start_on_scheduler(self, task: _Task) -> None:
        """Loop thread: start a submitted task, or queue it while max_workers run."""
        self._admission.admit(task)

    def _start(self, task: _Task) -> None:
        ledger = self.ledger
        if not ledger.begin(task):
            return  # cancelled while it waited
        self._admission.running += 1
        fn, args, kwargs = call_of(task)
        start = time.perf_counter()
        try:
            if fn is run_chunk and _runs_as_task(args[0]):
                # Its calls run at once (only without a max_workers limit).
                coro: Any = _run_chunk_concurrently(*args)
                set_width(task, weight_of(task))
            else:
                coro = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(task, None, exc)
            return
        is_gen = type(coro) is GeneratorType and _is_generator_function(fn)
        if type(coro) is CoroutineType or is_gen:
            ct = self.scheduler.spawn(coro, task)
        else:
            # A plain function ran inline, on the scheduler's thread.
            elapsed = time.perf_counter() - start
            if self._threshold is not None and elapsed > self._threshold:
                self.scheduler.report_blocking(task.name, None, elapsed)
            self._report(task, coro, None)
            return
        set_handle(task, ct)
        ledger.stoppable(task)

    def task_finished(
        self, task: _Task, detached: bool, value: Any, error: BaseException | None
    ) -> None:
        """Loop thread: a submitted task's coroutine ended."""
        if detached:
            self._admission.release()  # cancelled or timed out: its future was settled already
        else:
            self._report(task, value, error)

    def _report(self, task: _Task, value: Any, error: BaseException | None) -> None:
        self.ledger.report_outcome(task, value, error)
        self._admission.release()

    def stop_running(self, task: _Task) -> bool:
        """Any thread: cancel a running task at its next await."""
        ct = handle_of(task)
        if ct is None:
            return False
        scheduler = self.scheduler
        if scheduler.on_loop():
            scheduler.cancel(ct)
        else:
            scheduler.send(functools.partial(scheduler.cancel, ct))
        return True

    def schedule_deadline(self, task: _Task, timeout: float) -> Deadline:
        # ledger.begin runs on the loop thread, so the scheduler's own timer heap is safe here,
        # and a virtual clock times the deadline in simulated time.
        scheduler = self.scheduler
        return scheduler.call_at(
            scheduler.now() + timeout, lambda: self.ledger.deadline_passed(task)
        )

    def worker_count(self) -> int:
        return 1 if self.scheduler.alive else 0

    def map_per_call(self, fn: Callable[..., Any]) -> bool:
        # A chunk of an async function runs its calls at once: under a max_workers
        # limit, each call is a task of its own, so that the limit counts calls.
        return self._admission.limit is not None and _runs_as_task(fn)

    def on_own_loop(self) -> bool:
        return self.scheduler.on_loop()

    def now(self) -> float:
        return self.scheduler.now()

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        _live_backends.discard(self)
        self.scheduler.stop(kill=kill)
        if wait:
            self.scheduler.join(KILL_GRACE if kill else None)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _is_generator_function(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.isgeneratorfunction(fn)


def _runs_as_task(fn: Callable[..., Any]) -> bool:
    return is_async_callable(fn) or _is_generator_function(fn)


async def _run_chunk_concurrently(
    fn: Callable[..., Any], items: list[tuple[Any, ...]], retries: int = 0, keep_going: bool = False
) -> ChunkResult:
    """A map chunk of an async function: every call is its own task on this scheduler."""
    scheduler = current_scheduler()
    assert scheduler is not None
    return await run_chunk_concurrently(fn, items, scheduler.spawn, retries, keep_going)


backend_class = CoroutineExecutor
