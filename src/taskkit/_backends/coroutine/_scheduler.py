"""taskkit's own cooperative scheduler: many coroutine tasks on one thread, no asyncio.

Data flow::

    other threads ──append──► inbox (deque; wakes the loop only if it sleeps) ──► _receive()
                                                        │ submitted task: admit (max_workers), start
    ready (deque) ◄── spawn(), wake-ups, due timers ────┘
       │ pick(ready) -- the one replaceable decision: which task runs next
       ▼
    step: coro.send(None) / coro.throw(exc) until the task's next switch point
       │ yields None           -> a switch point: back of the ready queue
       │ yields _Sleep         -> timer heap (when, seq, task) on the scheduler's clock
       │ yields a Task         -> parked in that task's waiter list
       │ yields a Future       -> parked; the future's done-callback wakes it from any thread
       │ returns / raises      -> done: waiters become ready; a submitted task reports
       ▼                          to its executor's ledger (succeeded / failed)
    timer heap ──due──► ready          (virtual clock: time jumps to the next timer when idle)

Every step is timed: a task that holds the thread longer than the blocking threshold
(``time.sleep`` in a coroutine, a long loop without an ``await``) is reported with a
``BlockingWarning`` naming it, because every other task waited meanwhile.  With no
threshold (``blocking_warning=None``) no step is timed.

A ``Task`` is deliberately small (``__slots__``, no lock, no condition): it is both the
scheduler's record and the handle ``spawn()`` returns, and it is only ever touched on the
scheduler's own thread.  Cross-thread work -- a submit, a future completed elsewhere, a
cancel -- reaches the loop through the inbox, so nothing here needs a lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import random
import threading
import time
import warnings
from asyncio import CancelledError
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from types import CoroutineType, FunctionType, GeneratorType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

from ..._core import _control
from ..._core._errors import TaskkitError, UsageError
from ..._core._future import Future, set_await_hook
from ..._core._timer import Deadline

if TYPE_CHECKING:
    from ..._core._ledger import Task as _Task

__all__ = [
    "BlockingWarning",
    "checkpoint",
    "sleep",
    "PickNext",
    "Scheduler",
    "Task",
    "current_scheduler",
    "fifo",
    "seeded_random",
]

T = TypeVar("T")


class _Here(threading.local):
    # The scheduler running on this thread, if any (read by sleep() and spawn()).  A class
    # default, so that threads without a scheduler read None without an AttributeError.
    scheduler: Scheduler | None = None


_here = _Here()

# Task states.  Everything >= _DONE is finished.
_RUNNABLE, _SLEEPING, _PARKED, _DONE, _FAILED = 0, 1, 2, 3, 4


_log = logging.getLogger("taskkit.coroutine")


class BlockingWarning(TaskkitError, RuntimeWarning):
    """A coroutine task held the scheduler's thread too long without awaiting.

    While it ran, no other task could: one blocking call (``time.sleep``, a blocking
    socket read, a long computation) stalls them all.  A ``RuntimeWarning``; also a
    ``TaskkitError``, like everything taskkit raises (under ``-W error`` it is raised).
    """


def current_scheduler() -> Scheduler | None:
    """Return the scheduler whose thread is calling, or None."""
    return _here.scheduler


class _Sleep:
    """What ``taskkit.sleep(seconds)`` yields to the scheduler (one small object per sleep)."""

    __slots__ = ("_yielded", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._yielded = False

    def __await__(self) -> Generator[Any, None, None]:
        if _here.scheduler is not None:
            self._yielded = False
            return cast("Generator[Any, None, None]", self)
        return _sleep_elsewhere(self.seconds)

    __iter__ = __await__  # ``yield from taskkit.sleep(s)`` in a generator task

    def __next__(self) -> _Sleep:
        # Its own iterator, so a sleep costs one small object: the first step yields
        # the request to the scheduler, the resume after the wake-up ends the await.
        if self._yielded:
            raise StopIteration
        self._yielded = True
        return self

    def __repr__(self) -> str:
        return f"taskkit.sleep({self.seconds!r})"


def _never() -> bool:
    return False


def _sleep_elsewhere(seconds: float) -> Generator[Any, None, None]:
    """``taskkit.sleep`` outside the coroutine scheduler: a controlled run, else asyncio."""
    hook = _control.hook
    if hook is not None and hook.controls_caller():
        wait = hook.await_until(_never, f"taskkit.sleep({seconds:g})", None, seconds)
        return _discard(wait)
    return asyncio.sleep(seconds).__await__()


def _discard(awaitable: Awaitable[Any]) -> Generator[Any, None, None]:
    yield from awaitable.__await__()


class _Checkpoint:
    """What ``taskkit.checkpoint()`` returns: a bare ``yield``, a switch point everywhere.

    The coroutine scheduler, asyncio's tasks and ``taskkit.testing``'s controlled runs all
    read a bare ``yield`` as "let the others run, then resume me".
    """

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield

    __iter__ = __await__

    def __repr__(self) -> str:
        return "taskkit.checkpoint()"


_CHECKPOINT = _Checkpoint()


class SwitchPoint(Protocol):
    """What ``sleep()`` and ``checkpoint()`` return: ``await`` it, or ``yield from`` it."""

    def __await__(self) -> Generator[Any, None, None]: ...
    def __iter__(self) -> Generator[Any, None, None]: ...


def sleep(seconds: float) -> SwitchPoint:
    """Suspend the calling coroutine task for ``seconds``; other tasks run meanwhile.

    ``await taskkit.sleep(s)`` in an ``async def`` task (``yield from taskkit.sleep(s)``
    in a generator task).  On the coroutine backend the time is the scheduler's clock,
    so under ``clock="virtual"`` the sleep ends at once in simulated time; in asyncio
    code it is ``asyncio.sleep``; in a ``taskkit.testing`` run it is a virtual timed wait.

    Raises:
        ValueError: ``seconds`` is negative or not a number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    if seconds == 0:
        return _CHECKPOINT
    return _Sleep(float(seconds))


def checkpoint() -> SwitchPoint:
    """Return a switch point: ``await taskkit.checkpoint()`` lets other tasks run first.

    A cooperative task that computes for a long time should await this now and then,
    so the tasks sharing its thread are not starved.  It works on the coroutine
    backend, in asyncio code and in ``taskkit.testing`` runs.
    """
    return _CHECKPOINT


# Public as taskkit.BlockingWarning, taskkit.sleep and taskkit.checkpoint, and named so
# in tracebacks and docs from the start: ``import taskkit`` imports this module only when
# one of them is first named, which the coroutine backend may do before.
BlockingWarning.__module__ = "taskkit"
sleep.__module__ = "taskkit"
checkpoint.__module__ = "taskkit"


class Task:
    """A task on the coroutine scheduler; ``spawn()`` returns one.

    ``await task`` returns what the task's coroutine returned, or raises what it
    raised.  A task is only used from coroutine tasks of the same scheduler.
    """

    # Few slots on purpose: spawning is the hot path of very many tasks, and the garbage
    # collector's cost per live task grows with its slot count.  A deferred task -- made
    # with a function and its arguments rather than a coroutine -- keeps the function in
    # _coro and the arguments in _value until its first step makes the coroutine: until
    # then it holds no coroutine, so a burst of spawned tasks leaves the collector half
    # as many objects to look at, and an error in calling the function (wrong arguments)
    # ends the task like an error its coroutine raises.  It is counted among the
    # scheduler's live tasks from that first step (see Scheduler._run_batch).
    __slots__ = ("_coro", "_parked", "_state", "_throw", "_value", "_waiters")

    # What only a submitted task has (see _OwnedTask); a spawned task reads these.
    _owner: _Task | None = None
    _detached = False

    def __init__(self, coro: Any, args: tuple[Any, ...] | None = None) -> None:
        self._coro = coro
        self._state = _RUNNABLE
        self._throw: BaseException | None = None
        self._value: Any = args  # the deferred call's arguments, until it first runs
        self._waiters: list[Task] | None = None
        self._parked: object = None

    @property
    def name(self) -> str:
        """The task's name: its executor task name, or its function's qualified name."""
        if self._owner is not None:
            return self._owner.name
        coro = self._coro  # a coroutine, or a deferred task's function: both have a name
        return "task" if coro is None else str(getattr(coro, "__qualname__", "task"))

    def done(self) -> bool:
        """Return True if the task has finished (returned, raised or was cancelled)."""
        return self._state >= _DONE

    def cancelled(self) -> bool:
        """Return True if the task ended by cancellation."""
        return self._state == _FAILED and isinstance(self._value, CancelledError)

    def result(self) -> Any:
        """Return the task's value, or raise its exception; the task must be done."""
        if self._state == _DONE:
            return self._value
        if self._state == _FAILED:
            raise self._value
        raise UsageError(f"task {self.name} has not finished; await it instead")

    def exception(self) -> BaseException | None:
        """Return the task's exception (None if it returned); the task must be done."""
        if self._state < _DONE:
            raise UsageError(f"task {self.name} has not finished; await it instead")
        return self._value if self._state == _FAILED else None

    def cancel(self) -> bool:
        """Raise ``CancelledError`` inside the task at its next ``await``; False if done."""
        if self._state >= _DONE:
            return False
        scheduler = current_scheduler()
        if scheduler is None:
            raise UsageError("a coroutine task can only be cancelled from its own scheduler")
        scheduler.cancel(self)
        return True

    def __await__(self) -> Generator[Any, None, Any]:
        if self._state == _DONE and self._value is None:
            # Done, with nothing to return: an empty iterator ends the await at once,
            # without making a generator (awaiting finished tasks is common).
            return iter(())  # type: ignore[return-value]
        return self._wait()

    __iter__ = __await__  # ``yield from task`` in a generator task

    def _wait(self) -> Generator[Any, None, Any]:
        if self._state < _DONE:
            yield self
        if self._state == _DONE:
            return self._value
        raise self._value

    def __repr__(self) -> str:
        state = ("runnable", "sleeping", "waiting", "done", "failed")[self._state]
        return f"<taskkit coroutine task {self.name} {state}>"


class _OwnedTask(Task):
    """A submitted task's scheduler task: it reports to its executor ``_Task`` when done."""

    __slots__ = ("_detached", "_owner")

    def __init__(self, coro: Any, owner: _Task) -> None:
        super().__init__(coro)
        self._owner = owner
        self._detached = False  # cancelled: its outcome no longer decides the owner's future


class PickNext(Protocol):
    """Chooses which ready task runs next: removes it from ``ready`` and returns it."""

    def __call__(self, ready: deque[Task], /) -> Task: ...


def fifo(ready: deque[Task]) -> Task:
    """The default order: first ready, first run (the same order every run)."""
    return ready.popleft()


def seeded_random(seed: int) -> PickNext:
    """Return a picker that draws the next task from ``random.Random(seed)``."""
    rng = random.Random(seed)

    def pick(ready: deque[Task]) -> Task:
        i = rng.randrange(len(ready))
        if i:
            ready[0], ready[i] = ready[i], ready[0]
        return ready.popleft()

    return pick


class _Owner(Protocol):
    """What the scheduler needs from the backend that submits work to it."""

    def start_on_scheduler(self, task: _Task) -> None: ...
    def task_finished(
        self, task: _Task, detached: bool, value: Any, error: BaseException | None
    ) -> None: ...
    def scheduler_crashed(self, error: BaseException) -> None: ...


class Scheduler:
    """One thread running coroutine and generator tasks cooperatively.

    Args:
        owner: the coroutine backend that submits work (told when its tasks finish).
        clock: ``"real"`` (``time.monotonic``) or ``"virtual"`` (time jumps to
            the next sleeper whenever no task is ready).
        pick: the decision of which ready task runs next (default ``fifo``).
        blocking_threshold: seconds one step may take before a ``BlockingWarning``;
            None turns the check off.
        name: the thread's name.
    """

    def __init__(
        self,
        owner: _Owner,
        *,
        clock: Literal["real", "virtual"] = "real",
        pick: PickNext | None = None,
        blocking_threshold: float | None = 0.1,
        name: str = "taskkit-coroutine",
    ) -> None:
        self._owner = owner
        self.virtual = clock == "virtual"
        self._virtual_now = 0.0
        #: The one replaceable decision: which ready task runs next (None: FIFO, fast path).
        self.pick: PickNext | None = None if pick is fifo else pick
        self._threshold = _NO_THRESHOLD if blocking_threshold is None else blocking_threshold
        self.ready: deque[Task] = deque()
        self._timers: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        # The inbox: other threads append, the loop pops.  The loop is woken (a release
        # of _wakeup) only when it said it is about to sleep, so a burst of submits costs
        # one wake-up, not one per item.
        self._inbox: deque[Any] = deque()
        self._sleeping = False
        self._wakeup = threading.Lock()
        self._wakeup.acquire()
        self._live = 0  # tasks created and not finished
        self._on_futures: set[Task] = set()  # parked on a Future (found again only by kill)
        self._stopping = False
        self.ident: int | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- the clock

    def now(self) -> float:
        """The scheduler's time in seconds (virtual time, or ``time.monotonic()``)."""
        return self._virtual_now if self.virtual else time.monotonic()

    def call_at(self, when: float, callback: Callable[[], object]) -> Deadline:
        """Run ``callback()`` on the scheduler thread at scheduler time ``when``.

        Only call this on the scheduler thread.
        """
        deadline = Deadline(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), deadline))
        return deadline

    # ----------------------------------------------------- cross-thread entry

    def on_loop(self) -> bool:
        """True when called on the scheduler's own thread."""
        return threading.get_ident() == self.ident

    def send(self, item: Any) -> None:
        """Hand ``item`` to the loop: an executor task to start, or a zero-arg callable."""
        self._inbox.append(item)
        if self._sleeping:
            self._sleeping = False
            try:
                self._wakeup.release()
            except RuntimeError:
                pass  # another thread woke it first

    def stop(self, *, kill: bool) -> None:
        """Let the loop end once every task finished (after cancelling them all, if ``kill``)."""
        self.send(_KILL if kill else _STOP)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop thread to end."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the loop thread runs."""
        return self._thread.is_alive()

    # --------------------------------------------------- on the loop thread

    def spawn(self, coro: Any, owner: _Task | None = None) -> Task:
        """Make ``coro`` (a coroutine or generator) a new ready task (loop thread only)."""
        task = Task(coro) if owner is None else _OwnedTask(coro, owner)
        self.ready.append(task)
        self._live += 1
        return task

    def cancel(self, task: Task) -> None:
        """Raise ``CancelledError`` in ``task`` at its next switch point (loop thread only)."""
        if task._state >= _DONE:
            return
        if type(task) is _OwnedTask:
            task._detached = True  # its outcome no longer decides the executor's future
        task._throw = CancelledError()
        if task._state != _RUNNABLE:  # sleeping or parked: wake it to receive the error
            self._on_futures.discard(task)
            task._state, task._parked = _RUNNABLE, None
            self.ready.append(task)

    def _wake(self, task: Task, token: object) -> None:
        self._on_futures.discard(task)
        if task._parked is token:
            task._state, task._parked = _RUNNABLE, None
            self.ready.append(task)

    def _future_done(self, task: Task, future: object) -> None:
        # A done-callback: runs on whichever thread finished the future.
        if threading.get_ident() == self.ident:
            self._wake(task, future)
        else:
            self.send(lambda: self._wake(task, future))

    def _run(self) -> None:
        self.ident = threading.get_ident()
        _here.scheduler = self
        set_await_hook(_await_future)
        try:
            self._loop()
        except BaseException as exc:
            # A bug in the scheduler or in a picking function: fail the work rather than
            # hang it (the error reaches every waiter through its future).
            for task in self._all_tasks():
                try:
                    if type(task._coro) is not FunctionType:  # deferred: nothing to close
                        task._coro.close()
                except BaseException:
                    pass
            self._owner.scheduler_crashed(exc)
        finally:
            set_await_hook(None)
            _here.scheduler = None

    def _loop(self) -> None:
        ready, timers, inbox = self.ready, self._timers, self._inbox
        receive, take = self._receive, inbox.popleft
        while True:
            while inbox:
                receive(take())
            if timers:
                self._fire_timers()
            if ready:
                self._run_batch()
                continue
            if self._stopping and self._live == 0:
                return
            while timers and _stale(timers[0]):
                heapq.heappop(timers)  # so neither clock waits for a timer that is void
            if timers and self.virtual:
                # Nothing can run now: jump to the next sleeper's wake-up time.
                self._virtual_now = max(self._virtual_now, timers[0][0])
                continue
            # Say we are going to sleep, then look once more: an item appended before
            # the flag was set would otherwise wait for the next one.
            self._sleeping = True
            if inbox:
                self._sleeping = False
                continue
            timeout = -1.0 if not timers else max(0.0, timers[0][0] - time.monotonic())
            self._wakeup.acquire(timeout=timeout)
            self._sleeping = False

    def _receive(self, item: Any) -> None:
        if item is _STOP or item is _KILL:
            self._stopping = True
            if item is _KILL:
                for task in self._all_tasks():
                    self.cancel(task)
        elif callable(item):
            item()
        else:
            self._owner.start_on_scheduler(item)

    def _all_tasks(self) -> list[Task]:
        """Every live task: ready, sleeping, waiting on a future, or waiting on those."""
        found = list(self.ready)
        found += [entry[2] for entry in self._timers if isinstance(entry[2], Task)]
        found += self._on_futures
        i = 0
        while i < len(found):
            found += found[i]._waiters or ()
            i += 1
        return [task for task in found if task._state < _DONE]

    def _fire_timers(self) -> None:
        timers, ready = self._timers, self.ready
        now = self.now()
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            target = entry[2]
            if isinstance(target, Task):
                if target._parked is entry:
                    target._state, target._parked = _RUNNABLE, None
                    ready.append(target)
            elif not target.cancelled:
                target.cancelled = True
                target.callback()

    def _run_batch(self) -> None:
        """Step each task that is ready now; tasks made ready meanwhile wait for the next batch."""
        # Kept light: with few tasks a batch is a single step, so this runs per switch.
        ready, pick, threshold, perf = self.ready, self.pick, self._threshold, time.perf_counter
        # _live is settled once, at the end: deferred tasks counted in as they first run,
        # tasks that returned inline counted out (a deferred task is on the ready queue
        # until then, so the loop cannot see _live as zero too early).
        started = finished = 0
        # One clock reading per step: a step is timed from the end of the one before
        # (the scheduler's own bookkeeping in between is part of no task's budget).
        # Without a blocking threshold nothing is timed.
        timed = threshold != _NO_THRESHOLD
        last = perf() if timed else 0.0
        try:
            for _ in range(len(ready)):
                task = ready.popleft() if pick is None else pick(ready)
                try:
                    coro = task._coro
                    if type(coro) is FunctionType:  # a deferred task's first step
                        started += 1
                        # (its arguments stay in _value, as in the coroutine, until it ends)
                        coro = task._coro = coro(*task._value)
                    error = task._throw
                    if error is None:
                        request = coro.send(None)
                    else:
                        task._throw = None
                        request = coro.throw(error)
                except StopIteration as stop:
                    request, value, error = _ENDED, stop.value, None
                except BaseException as exc:
                    request, value, error = _ENDED, None, exc
                if timed:
                    now = perf()
                    if now - last > threshold:
                        self.report_blocking(task.name, coro, now - last)
                    last = now
                if request is _ENDED:
                    if error is None and task._waiters is None and type(task) is Task:
                        # The common case, inline: a task nobody waits for yet returned.
                        task._coro, task._state, task._value = None, _DONE, value
                        finished += 1
                    else:
                        self._finish(task, value, error)
                elif request is None or task._throw is not None:
                    ready.append(task)
                elif type(request) is _Sleep:
                    entry = (self.now() + request.seconds, next(self._seq), task)
                    task._state, task._parked = _SLEEPING, entry
                    heapq.heappush(self._timers, entry)
                else:
                    self._park(task, request)
        finally:
            if started != finished:
                self._live += started - finished

    def _park(self, task: Task, request: object) -> None:
        if isinstance(request, Task):
            if request._state >= _DONE:
                self.ready.append(task)
            else:
                task._state, task._parked = _PARKED, request
                if request._waiters is None:
                    request._waiters = [task]
                else:
                    request._waiters.append(task)
        elif isinstance(request, concurrent.futures.Future):
            task._state, task._parked = _PARKED, request
            self._on_futures.add(task)
            request.add_done_callback(lambda future: self._future_done(task, future))
        elif type(task._coro) is GeneratorType:
            self.ready.append(task)  # whatever else a generator yields is a switch point
        else:
            task._throw = _foreign_await(task, request)
            self.ready.append(task)

    def _finish(self, task: Task, value: Any, error: BaseException | None) -> None:
        task._coro = None
        if error is None:
            task._state, task._value = _DONE, value
        else:
            if type(error) is RuntimeError and error.args == ("no running event loop",):
                error = _foreign_loop(task, error)
            task._state, task._value = _FAILED, error
        waiters = task._waiters
        if waiters is not None:
            task._waiters = None
            ready = self.ready
            for waiter in waiters:
                if waiter._parked is task:
                    waiter._state, waiter._parked = _RUNNABLE, None
                    ready.append(waiter)
        self._live -= 1
        if task._owner is not None:
            self._owner.task_finished(task._owner, task._detached, value, error)

    def report_blocking(self, name: str, coro: Any, seconds: float) -> None:
        """Warn that task ``name`` (at ``coro``, if still running) held the thread ``seconds``."""
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        filename = code.co_filename if code is not None else "<coroutine>"
        lineno = frame.f_lineno if frame is not None else (code.co_firstlineno if code else 0)
        message = (
            f"coroutine task {name} held the scheduler for {seconds:.3f} s without "
            "awaiting, so every other task waited; await taskkit.sleep() instead of "
            "time.sleep(), and run blocking calls on a thread executor"
        )
        _log.warning("%s (%s:%d)", message, filename, lineno)
        try:
            warnings.warn_explicit(message, BlockingWarning, filename, lineno)
        except Exception:
            pass  # warnings turned into errors must not stop the scheduler


def _stale(entry: tuple[float, int, Any]) -> bool:
    """True for a timer entry that will do nothing: a woken task's, a cancelled deadline's."""
    target = entry[2]
    if isinstance(target, Task):
        return target._parked is not entry
    return bool(target.cancelled)


_STOP = object()
_KILL = object()
_NO_THRESHOLD = float("inf")  # blocking_warning=None: no step is timed
_ENDED = object()  # what a step "yielded" when the task returned or raised


def _await_future(future: Future[Any]) -> Generator[Any, None, Any]:
    """The await hook on a scheduler thread: park the task until ``future`` is done."""
    if not future.done():
        yield future
    return future.result()


_USE_ASYNCIO = (
    "; the coroutine backend runs taskkit's own scheduler, not an asyncio event loop: "
    "await taskkit.sleep(), taskkit.checkpoint() and taskkit Futures there, or run "
    'asyncio code on open_executor("asyncio")'
)


def _foreign_await(task: Task, request: object) -> UsageError:
    return UsageError(
        f"coroutine task {task.name} awaited {request!r}, which belongs to another "
        f"event loop{_USE_ASYNCIO}"
    )


def _foreign_loop(task: Task, error: RuntimeError) -> UsageError:
    new = UsageError(
        f"coroutine task {task.name} used asyncio (no running event loop){_USE_ASYNCIO}"
    )
    new.__cause__ = error
    new.__traceback__ = error.__traceback__
    return new


def is_task_object(value: object) -> bool:
    """True for what the scheduler runs as a task: a coroutine or a generator."""
    return type(value) is CoroutineType or type(value) is GeneratorType
