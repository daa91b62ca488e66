"""The task ledger: every task's state, the executor's counters, retries and deadlines.

An ``Executor`` holds one ``TaskLedger`` (its ``_ledger``).  The executor's public
face makes tasks and hands them here; the backend runs them and reports back here;
the ledger settles futures, re-runs failed attempts, times deadlines and counts::

    Executor.submit ──► ledger.submit: Task, live[task] ──► backend.dispatch(task)
                                                 │ a worker takes it
                     ledger.begin(task, worker) ◄┘ (False: cancelled meanwhile, skip it)
                     ledger.succeeded(task, value) / ledger.failed(task, error)
                         failed, retries left ──► transition(RETRIED) ──► backend.dispatch again
                     deadline passed ──► ledger.deadline_passed(task) ──► backend.stop_overrunning
    the future settles (any path: result, error, cancel) ──► ledger.settled(future):
        counters, join() woken, the call's arguments dropped

Every change of a task's state passes through ``TaskLedger.transition``: submitted,
started (on which worker), succeeded, failed, retried, cancelled, timed out, and
its worker crashed.  It hands each change to the executor's task-event listeners
(``ex.add_listener``, ``_events.py``), and costs one attribute read while there are none.

What the ledger asks of the backend is the protocol in ``_backend.py``; what a backend
may read and set on a task are the accessors and ledger methods listed there (a task's
attributes are private, as the task is the future the user holds).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, get_type_hints

from ._calls import call
from ._compat import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, RUNNING, RLock
from ._errors import BlockingCallError, ExecutorClosed, TaskTimeout, WorkerCrashed
from ._events import EventKind, Listeners, worker_key
from ._future import (
    Future,
    finish,
    force_cancelled,
    interruptible,
    is_running,
    next_task_number,
    outcome,
    run_done_callbacks,
    set_help,
    set_stop,
    settle,
    settled,
    start,
)

if TYPE_CHECKING:
    from ._backend import Backend
    from ._timer import Deadline

__all__ = [
    "CANCELLED_EVENT",
    "FAILED",
    "RETRIED",
    "STARTED",
    "SUBMITTED",
    "SUCCEEDED",
    "TIMED_OUT",
    "WORKER_CRASHED",
    "LoopTasks",
    "TaskLedger",
    "TaskOptions",
    "attempt_of",
    "call_of",
    "handle_of",
    "set_handle",
    "set_width",
    "timeout_of",
    "weight_of",
]


@dataclass(frozen=True)
class TaskOptions:
    """Per-task options, set with ``ex.options(timeout=..., retries=..., name=...)``.

    Attributes:
        timeout: seconds a task may run before it fails with ``TaskTimeout``.
        retries: how many more times a failing task is run before its error is kept.
        name: a name for the task, shown in errors and statistics.
    """

    timeout: float | None = None
    retries: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        timeout: Any = self.timeout  # checked here, whatever the caller passed
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
                raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
            seconds = float(timeout)
            if seconds == math.inf:
                object.__setattr__(self, "timeout", None)  # no deadline, as for None
            elif not 0 < seconds <= threading.TIMEOUT_MAX:  # nan fails both comparisons
                raise ValueError(
                    f"timeout must be a positive number of seconds, at most "
                    f"{threading.TIMEOUT_MAX:.0f} (or inf or None for no deadline), "
                    f"got {timeout!r}"
                )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {self.retries!r}")


# Public as taskkit.TaskOptions (set once decorated), its annotations resolved first, here,
# where their names are (typing.get_type_hints would look for them in taskkit).
TaskOptions.__annotations__ = get_type_hints(TaskOptions)
TaskOptions.__module__ = "taskkit"

NO_OPTIONS = TaskOptions()

# What a settled task's keyword arguments become (never handed to a call).
NO_KWARGS: dict[str, Any] = {}

# The transitions ``TaskLedger.transition`` is told of.
SUBMITTED: Final[EventKind] = "submitted"
STARTED: Final[EventKind] = "started"
SUCCEEDED: Final[EventKind] = "succeeded"
FAILED: Final[EventKind] = "failed"
RETRIED: Final[EventKind] = "retried"
CANCELLED_EVENT: Final[EventKind] = "cancelled"
TIMED_OUT: Final[EventKind] = "timed out"
WORKER_CRASHED: Final[EventKind] = "worker crashed"


class Task(Future[Any]):
    """One submitted call (or one chunk of a map): the future ``submit`` returns, and the
    ledger's record of it.

    The task *is* its future, as an asyncio ``Task`` is an asyncio ``Future``: one
    object per submit rather than two.  Its attributes are private, so the user's
    ``taskkit.Future`` shows nothing new.  What a backend may read and set is listed
    in ``_backend.py``.  The call's arguments are dropped when the future
    settles with the call's outcome (or before the call ran), so a future kept after
    its result does not keep them alive.
    """

    # What most tasks keep, as class defaults: set on the few tasks that differ.
    _options: TaskOptions = NO_OPTIONS
    _args: tuple[Any, ...] = ()
    _kwargs: dict[str, Any] = NO_KWARGS
    _weight = 1
    # Calls it runs at once while it runs: a map chunk runs its calls one by one,
    # unless a backend runs them all at once (then it sets this to the chunk's weight).
    _width = 1
    _attempt = 0
    _started = False
    _deadline: Deadline | None = None
    # The worker the running attempt was begun on (a pid, a backend's worker object).
    _worker: object = None
    # The backend's handle on the running attempt (an asyncio task, ...), if it keeps one.
    _handle: Any = None

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        weight: int,
        on_settled: Callable[[Future[Any]], None],
    ) -> None:
        Future.__init__(self)
        self._on_settled = on_settled  # the ledger's bookkeeping, once the future settles
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._number = next_task_number()  # names are numbered in submission order
        if options is not NO_OPTIONS:
            self._options = options
            self._name = options.name
        if weight != 1:
            self._weight = weight

    def _sleep(self, timeout: float | None) -> None:
        # Only an unfinished future gets here, so a finished one's result() pays nothing.
        if timeout is None or timeout > 0:
            ledger = getattr(self._on_settled, "__self__", None)  # None once settled
            if isinstance(ledger, TaskLedger) and ledger.backend.on_own_loop():
                raise BlockingCallError(
                    f"result() of the unfinished {self.name} on the thread of its "
                    f"{ledger.backend.name} executor's event loop would block that loop, "
                    "and with it the task it waits for; `await` the future instead"
                )
        Future._sleep(self, timeout)


# What a backend reads of a task (see ``_backend.py``): C getters, without a frame of
# their own, so that the hot paths pay nothing for not reading the attributes.
#: ``call_of(task)``: the call the task makes, ``(fn, args, kwargs)``.
call_of: Callable[[Task], tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = attrgetter(
    "_fn", "_args", "_kwargs"
)
#: ``handle_of(task)``: what the backend keeps for the running attempt (see ``set_handle``).
handle_of: Callable[[Task], Any] = attrgetter("_handle")
#: ``weight_of(task)``: how many calls the task stands for (1, or a map chunk's size).
weight_of: Callable[[Task], int] = attrgetter("_weight")
#: ``attempt_of(task)``: 0 for the first attempt, 1 for the first retry, ...
attempt_of: Callable[[Task], int] = attrgetter("_attempt")
#: ``timeout_of(task)``: the seconds each attempt may run, or None.
timeout_of: Callable[[Task], float | None] = attrgetter("_options.timeout")
# What an event tells of its task: its number, attempt and weight (``_events.py``).
_event_facts: Callable[[Task], tuple[int, int, int]] = attrgetter("_number", "_attempt", "_weight")


def set_handle(task: Task, handle: Any) -> None:
    """Keep the backend's ``handle`` on the running attempt (an asyncio task, the pickled
    call...) on ``task`` until it settles; ``handle_of(task)`` reads it."""
    task._handle = handle


def set_width(task: Task, calls: int) -> None:
    """How many calls ``task`` runs at once while it runs (``statistics().running``): 1
    by default; a backend that runs a map chunk's calls all at once sets its weight, and
    0 once the attempt's outcome is in but not yet settled."""
    task._width = calls


class _Running(threading.local):
    # The ledger whose task this thread is running, if any: join() and shutdown(wait=True)
    # called there would wait for that task itself.  A class default, read cheaply.
    ledger: Any = None


running = _Running()


def call_as_task(ledger: TaskLedger, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``call(fn, args, kwargs)`` in a thread marked as running a task of ``ledger``."""
    state = running
    outer, state.ledger = state.ledger, ledger
    try:
        return call(fn, args, kwargs)
    finally:
        state.ledger = outer


class TaskLedger:
    """The states of one executor's tasks, and its counters.

    One lock guards the counters and the table of live tasks; ``wait_idle`` waits
    on it.  The ``loop_*`` counts are changed without the lock, only ever by the
    thread of the backend's event loop (see ``LoopTasks``).

    ``transition(task, event, worker=None, error=None)`` is the one seam every change of
    a task's state passes through, once per change: ``event`` is one of ``SUBMITTED``,
    ``STARTED`` (``worker`` is the backend's worker, where it has one), ``SUCCEEDED``,
    ``FAILED``, ``RETRIED``, ``CANCELLED_EVENT``, ``TIMED_OUT`` and ``WORKER_CRASHED``
    (``error`` is the exception of a failure, and of the attempt a retry follows).  It is
    called without the ledger's lock, from whichever thread made the change, and hands a
    ``TaskEvent`` to the executor's listeners (``Listeners.emit``, ``_events.py``).  Every
    call site reads ``observed`` first, and calls it only while that is True (as
    ``logging`` asks ``isEnabledFor`` first): ``add_listener`` sets it, and the hot paths
    pay one attribute read meanwhile.
    """

    def __init__(self, backend: Backend) -> None:
        #: The backend the ledger hands tasks to, re-dispatches retries to and asks to stop tasks.
        self.backend = backend
        self.lock = threading.Lock()
        self._all_done = threading.Condition(self.lock)
        self._joining = 0  # threads waiting in wait_idle(): only then is _all_done notified
        self._reporting = 0  # settled tasks whose terminal event is being handed out
        self.live: dict[Future[Any], Task] = {}
        #: Set by ``close()`` and ``shutdown()``: ``submit`` accepts no new task.
        self.closed = False
        self.n_submitted = self.n_done = self.n_failed = 0
        self.n_cancelled = self.n_retried = self.n_timed_out = 0
        self.loop_submitted = self.loop_done = 0
        #: [done, failed, re-runs] of calls a backend made inline, without tasks, per
        #: thread (the serial backend's map): only that thread changes its list.
        self.inline_tallies: dict[int, list[int]] = {}
        self._chunk_runners = backend.chunk_runners  # a map chunk's outcome counts its calls
        #: True while something listens to ``transition`` (see the class docstring).
        self.observed = False
        #: The executor's task-event listeners (``ex.add_listener``); they set ``observed``.
        self.listeners = Listeners(backend.name, self._observe, _event_facts)
        self.transition: Callable[..., None] = self.listeners.emit
        #: Set by ``shutdown(kill=True)``: no failed attempt is re-run after it.
        self.killed = False
        # Bound once, not once per task.
        self.settle_hook = self.settled
        self.stop_hook = self.stop_future

    def _observe(self, observed: bool) -> None:
        self.observed = observed

    # ------------------------------------------------------ from the executor

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        weight: int = 1,
    ) -> Task:
        """Make the task of ``fn(*args, **kwargs)``, count it, and hand it to the backend."""
        if not callable(fn):
            raise TypeError(f"expected a callable, got {type(fn).__name__}: {fn!r}")
        backend = self.backend
        if backend.checks_arguments:
            backend.check_arguments(fn, args, kwargs)
        task = Task(fn, args, kwargs, options, weight, self.settle_hook)
        with self.lock:
            if self.closed:
                raise ExecutorClosed(
                    f"cannot submit {task.name}: the {backend.name} executor is closed"
                )
            self.n_submitted += weight
            self.live[task] = task
        if self.observed:
            self.transition(task, SUBMITTED)
        try:
            backend.dispatch(task)
        except BaseException as exc:
            settle(task, None, exc)
            raise
        return task

    # ---------------------------------------------------- from the backend

    def begin(self, task: Task, worker: object = None, *, timed: bool = True) -> bool:
        """Mark ``task`` running on ``worker``; False if it was cancelled and must be skipped.

        Its deadline (if it has a timeout) starts now, for this attempt; with ``timed``
        False it starts later, at ``arm_deadline(task)`` (a worker still starting up, a
        task still queued on a cluster).
        """
        if task._started:  # a retry: the deadline applies to each attempt
            if task.done():
                return False
        else:
            if not start(task):
                return False
            # No lock on this hot path: statistics() counts running tasks in live.
            task._started = True
        if worker is not None:
            task._worker = worker
        if self.observed:
            self.transition(task, STARTED, worker)
        timeout = task._options.timeout
        if timeout is not None:
            task._deadline = self.backend.schedule_deadline(task, timeout) if timed else None
        return True

    def arm_deadline(self, task: Task) -> None:
        """Start the deadline of a task begun with ``timed=False``, unless it has one.

        Reads the task's state without its lock, so a backend may call it under its own.
        """
        timeout = task._options.timeout
        if timeout is None or task._deadline is not None or settled(task):
            return
        task._deadline = self.backend.schedule_deadline(task, timeout)

    def cancel(self, tasks: list[Task], *, running: bool) -> None:
        """Cancel the ``tasks`` that have not started; with ``running``, stop the others
        too, where the backend can (for ``shutdown``)."""
        for task in tasks:
            if not task._started:
                task.cancel()
        if running:
            for task in tasks:
                if task._started and not task.done() and self.backend.stop_running(task):
                    self.stopped(task)

    def stoppable(self, task: Task, stoppable: bool = True) -> None:
        """While ``stoppable``, ``future.cancel()`` of the running ``task`` asks
        ``backend.stop_running(task)`` to stop it (else it cannot be cancelled once running)."""
        set_stop(task, self.stop_hook if stoppable else None)

    def run(self, task: Task, worker: object = None) -> None:
        """Run ``task`` in the calling thread and report how it ended (serial and thread)."""
        if not self.begin(task, worker):
            return
        try:
            value = call_as_task(self, task._fn, task._args, task._kwargs)
        except BaseException as exc:
            self.failed(task, exc)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C and SystemExit still reach the caller
        else:
            self.succeeded(task, value)

    def schedule_deadline(self, task: Task, timeout: float) -> Deadline:
        """The default deadline: ``deadline_passed(task)`` on the shared deadline thread."""
        from ._timer import call_later

        return call_later(timeout, lambda: self.deadline_passed(task))

    def succeeded(self, task: Task, value: Any) -> None:
        """Report that ``task`` returned ``value``."""
        if task._deadline is not None:
            task._deadline.cancel()
        settle(task, value, None)

    def fail_now(self, task: Task, error: BaseException) -> bool:
        """Settle ``task`` with ``error`` at once, without a retry (unless already settled)."""
        return settle(task, None, error)

    def stopped(self, task: Task) -> bool:
        """A running ``task`` was stopped (by the backend, or outside taskkit): it ends
        as cancelled.  False if it had already finished."""
        return force_cancelled(task)

    def report_outcome(self, task: Task, value: Any, error: BaseException | None) -> None:
        """Report ``task``'s outcome: ``succeeded`` if ``error`` is None, else ``failed``.

        For the backends that run tasks on an event loop's thread (coroutine, asyncio):
        a task that never awaited held that thread past its deadline, so the loop's timer
        could not fire to cancel it; it still overran, and fails with ``TaskTimeout``.
        """
        deadline, timeout = task._deadline, task._options.timeout
        if deadline is not None and timeout is not None and not deadline.cancelled:
            late = self.backend.now() - deadline.when
            if late >= 0:
                deadline.cancel()
                error = self.overran(
                    task,
                    timeout,
                    f"it held the event loop's thread for {timeout + late:.3f} s without "
                    "awaiting, so it could not be cancelled at its deadline and ran on to its "
                    "end (await taskkit.sleep() or asyncio.sleep() in long loops, or run "
                    "blocking work on a thread executor)",
                )
        if error is None:
            self.succeeded(task, value)
        else:
            self.failed(task, error)

    def failed(self, task: Task, exc: BaseException) -> None:
        """Report that ``task`` raised ``exc``; re-run it if it has retries left."""
        if task._deadline is not None:
            task._deadline.cancel()
        if (
            isinstance(exc, Exception)
            and task._attempt < task._options.retries
            and not task.done()
            and not self.killed
        ):
            task._attempt += 1
            with self.lock:
                self.n_retried += 1
            if self.observed:
                self.transition(task, RETRIED, error=exc)
            log = self.backend.log
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s: attempt %d of %d failed (%s: %s); running it again",
                    task.name,
                    task._attempt,
                    task._options.retries + 1,
                    type(exc).__name__,
                    exc,
                )
            try:
                self.backend.dispatch(task)
            except BaseException as dispatch_error:
                settle(task, None, dispatch_error)
            return
        if isinstance(exc, TaskTimeout):
            with self.lock:
                self.n_timed_out += task._weight
        settle(task, None, exc)

    def deadline_passed(self, task: Task) -> None:
        """Called (on the deadline's thread) when a task overran its timeout."""
        if task.done():
            return
        backend = self.backend
        error = self.overran(task, task._options.timeout, backend.timeout_detail)
        backend.stop_overrunning(task)
        self.failed(task, error)

    def overran(self, task: Task, timeout: float | None, detail: str) -> TaskTimeout:
        """Log that ``task`` overran its deadline, and return the error it fails with."""
        self.backend.log.warning(
            "%s overran its %g s deadline%s", task.name, timeout, f": {detail}" if detail else ""
        )
        return TaskTimeout(task.name, timeout, detail)

    def stop_future(self, future: Future[Any]) -> bool:
        """``future.cancel()`` of a running task made ``stoppable``: ``stop_hook``."""
        task = self.live.get(future)
        return task is not None and self.backend.stop_running(task)

    # --------------------------------------------------------- settling

    def settled(self, future: Future[Any]) -> None:
        """Called once when a task's future finishes, fails or is cancelled."""
        with self.lock:
            task = self.live.pop(future, None)
            if task is None:
                return
            # The future is final here: read its state without taking its lock again.
            state, result, error = outcome(future)
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                self.n_cancelled += task._weight
                event = CANCELLED_EVENT
            elif error is not None:
                self.n_failed += task._weight
                event = (
                    TIMED_OUT
                    if isinstance(error, TaskTimeout)
                    else WORKER_CRASHED
                    if isinstance(error, WorkerCrashed)
                    else FAILED
                )
            elif task._fn in self._chunk_runners:
                # A map chunk counts each of its calls: what ended, how, and what never started.
                results, failures, retried, _ = result
                self.n_done += len(results) - len(failures)
                self.n_failed += len(failures)
                self.n_cancelled += task._weight - len(results)
                self.n_retried += retried
                event = SUCCEEDED
            else:
                self.n_done += task._weight
                event = SUCCEEDED
            reporting = self.observed
            if reporting:
                self._reporting += 1  # join() waits until the listeners have heard of it
            elif self._joining and not self.live:
                self._all_done.notify_all()
        if reporting:
            try:
                self.transition(task, event, error=error)
            finally:
                with self.lock:
                    self._reporting -= 1
                    if self._joining and not self.live and not self._reporting:
                        self._all_done.notify_all()
        if task._deadline is not None:
            task._deadline.cancel()
        # What the backend kept for the attempt (its handle, its help in result()) is
        # not kept past the task's end: a future kept after its result frees it.
        if task._handle is not None:
            task._handle = None
            set_help(task, None)  # set only with a handle (the process backend's)
        # Drop the call's arguments once no attempt can still read them, so that a future
        # kept after its result does not keep them alive: when the task never started, or
        # its attempt reported how it ended.  A running task cancelled or timed out by
        # someone else keeps them (its worker may be between starting and reading them).
        if not task._started or (state == FINISHED and not isinstance(error, TaskTimeout)):
            task._args, task._kwargs = (), NO_KWARGS

    # ---------------------------------------------------------- waiting

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no task is live; True unless ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_done:
            self._joining += 1
            try:
                while self.live or self._reporting:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._all_done.wait(interruptible(remaining))
            finally:
                self._joining -= 1
        return True

    def oldest(self) -> Future[Any] | None:
        """The oldest live task, if any."""
        with self.lock:
            return next(iter(self.live), None)

    def running_on(self) -> dict[int | str, str]:
        """Which task each busy worker runs: a pid, or a worker thread's name, to a task name."""
        with self.lock:
            tasks = list(self.live.values())
        busy: dict[int | str, str] = {}
        for task in tasks:
            if is_running(task) and (key := worker_key(task._worker)) is not None:
                busy[key] = task.name
        return busy

    def counts(self) -> tuple[int, int, int, int, int, int, int, int]:
        """(submitted, pending, running, done, failed, cancelled, retried, timed_out)."""
        with self.lock:
            # A copy first: a backend's loop thread may add or remove tasks meanwhile.
            running_now = sum(task._width for task in list(self.live.values()) if task._started)
            submitted = self.n_submitted + self.loop_submitted
            done = self.n_done + self.loop_done
            finished = done + self.n_failed + self.n_cancelled
            pending = max(0, submitted - running_now - finished)
            failed, retried = self.n_failed, self.n_retried
            for inline in list(self.inline_tallies.values()):
                submitted += inline[0] + inline[1]
                done, failed, retried = done + inline[0], failed + inline[1], retried + inline[2]
            return (
                submitted,
                pending,
                running_now,
                done,
                failed,
                self.n_cancelled,
                retried,
                self.n_timed_out,
            )


class LoopTasks:
    """Tasks started and settled on the thread that owns a ledger's ``loop_*`` counts:
    the ``asyncio_inline_submit`` fast path (see ``_fastpaths``).

    No other thread has seen such a task when it starts, so it is made running at once
    and counted without the ledger's lock; one that returns a value is settled and
    counted there too (``succeeded``).  It has no deadline, no retries and no place
    under ``max_workers``.

    The tasks are of one class, made per ledger: what they share is kept once, on the
    class rather than on each task: they have started, they have the ledger's hooks (a
    running one can be stopped), and one lock serves them all.  Each holds it for a few
    lines at a time, while a lock of its own would be one more object per task for the
    garbage collector to walk.  What each of them sets is held in slots, so that most of
    them never make the values of an instance dictionary: one allocation less per task,
    and less for the collector to walk while a burst of submits keeps them all alive.
    """

    __slots__ = ("ledger", "set_handle", "task_class")

    def __init__(self, ledger: TaskLedger) -> None:
        self.ledger = ledger
        #: The class of the tasks ``start`` makes.
        self.task_class: type[Task] = type(
            "_Task",
            (Task,),
            {
                "__module__": __name__,
                "__slots__": ("_fn", "_handle", "_number", "_state", "_result"),  # set by start
                "_condition": RLock(),
                "_started": True,
                "_on_settled": ledger.settle_hook,
                "_stop_running": ledger.stop_hook,
            },
        )
        #: ``set_handle(task, handle)`` for these tasks: their slot's own setter, a C call.
        self.set_handle: Callable[[Task, Any], None] = vars(self.task_class)["_handle"].__set__

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        """``submit`` of a task that runs at once: the caller gives it its handle
        (``set_handle``) at once, and reports a value with ``succeeded``."""
        ledger = self.ledger
        if ledger.closed:
            raise ExecutorClosed(
                f"cannot submit {fn.__qualname__}: the {ledger.backend.name} executor is closed"
            )
        # Made without __init__, in the slots of the class made above.
        task_class = self.task_class
        task = task_class.__new__(task_class)
        task._state = RUNNING
        task._result = None
        task._fn = fn
        task._number = next_task_number()
        if args:
            task._args = args
        if kwargs:
            task._kwargs = kwargs
        ledger.live[task] = task
        ledger.loop_submitted += 1
        if ledger.observed:
            ledger.transition(task, SUBMITTED)
            ledger.transition(task, STARTED)
        return task

    def succeeded(self, task: Task, value: Any) -> None:
        """The ledger's ``succeeded``, and its bookkeeping, without its lock."""
        if not finish(task, value, None):
            return  # settled by another path meanwhile (a kill): that path counted it
        ledger = self.ledger
        live = ledger.live
        if ledger.observed:  # reported before join() can see the task gone
            ledger.transition(task, SUCCEEDED)
        del live[task]
        ledger.loop_done += 1
        if ledger._joining and not live:
            with ledger.lock:
                ledger._all_done.notify_all()
        if task._args:
            task._args = ()
        if task._kwargs:
            task._kwargs = NO_KWARGS
        run_done_callbacks(task)
