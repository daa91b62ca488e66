"""The ``Executor`` base class: everything the backends share.

A backend subclasses ``Executor`` and supplies only what differs:

* ``_dispatch(task)`` -- start or queue one task (the base has already made
  its future and counted it);
* ``_shutdown_workers(wait, kill)`` -- stop the workers;
* optionally ``_stop_running(task)`` -- stop a running task (kill a process,
  cancel a coroutine), ``_worker_count()``, ``_submit_chunk(...)`` and the
  primitive factories.

The data flow every backend follows::

    submit(fn, *args) ──► _Task(fn, args, options) ──► backend._dispatch(task)
                          (the future submit returns)          │
       worker: _begin(task) → run fn ──► _succeeded(task, value)  │
                                    └──► _failed(task, exc) ──► retries left? ──► _dispatch again
    future settles ──► _settled(task): statistics, join() wakes, the call's arguments dropped

``map`` and ``amap`` (see ``_map.py``), options, statistics, close/join,
shutdown and both context managers are written once, here.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import inspect
import logging
import math
import numbers
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from typing_extensions import ParamSpec, Self

from ._calls import ChunkResult, call, run_chunk
from ._compat import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED
from ._errors import BlockingCallError, ExecutorClosed, TaskTimeout
from ._future import Future, interruptible, next_task_number
from ._map import MapMethods
from ._progress import Progress, join_with_progress, wanted

if TYPE_CHECKING:
    from ._map import MapRun, MapSpec
    from ._primitives._protocols import Event, Lock, Queue, Semaphore, Value
    from ._timer import Deadline

__all__ = ["Executor", "Statistics", "TaskOptions"]

P = ParamSpec("P")
T = TypeVar("T")


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


_NO_OPTIONS = TaskOptions()


@dataclass(frozen=True)
class Statistics:
    """A snapshot of an executor's counters, from ``ex.statistics()``.

    Calls made by ``map`` count one each, however they were chunked.  A call is
    counted as it finishes, just after its future is: a thread woken by
    ``result()`` may, rarely, look before the count has moved; after ``join()``
    every count is final.

    Attributes:
        backend: the backend's name.
        submitted: calls submitted so far.
        pending: calls submitted and not yet started.
        running: calls running now.
        done: calls that returned a value.
        failed: calls that raised (after their retries).
        cancelled: calls cancelled before they finished.
        retried: re-runs after a failure.
        timed_out: calls that overran their per-task timeout.
        workers: workers alive now (threads, processes; 1 for one event loop).
        max_workers: the most workers the executor will run at once.
    """

    backend: str
    submitted: int
    pending: int
    running: int
    done: int
    failed: int
    cancelled: int
    retried: int
    timed_out: int
    workers: int
    max_workers: int


# What a settled task's keyword arguments become (never handed to a call).
_NO_KWARGS: dict[str, Any] = {}


class _Running(threading.local):
    # The executor whose task this thread is running, if any: join() and shutdown(wait=True)
    # called there would wait for that task itself.  A class default, read cheaply.
    executor: Executor | None = None


_running = _Running()


#: How long ``shutdown(kill=True)`` waits for an event loop's thread to finish cancelling
#: its tasks.  A task blocking that thread cannot be cancelled; the thread (a daemon) is
#: then left to it, so that one Ctrl-C always ends the program.
KILL_GRACE = 1.0


def shut_down_at_exit(executors: Iterable[Executor]) -> None:
    """At interpreter exit, let submitted work finish, as threads do.

    A program ended by Ctrl-C does not wait: its work is cancelled, so that one
    Ctrl-C is enough even when a task would never end.
    """
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for executor in list(executors):
        if interrupted:
            executor.shutdown(wait=False, cancel_pending=True, kill=True)
        else:
            executor.shutdown(wait=True)


def call_as_task(executor: Executor, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``call(fn, args, kwargs)`` in a thread marked as running a task of ``executor``."""
    running = _running
    outer, running.executor = running.executor, executor
    try:
        return call(fn, args, kwargs)
    finally:
        running.executor = outer


class _Task(Future[Any]):
    """One submitted call (or one chunk of a map): the future ``submit`` returns, and the
    executor's bookkeeping for it.

    The task *is* its future, as an asyncio ``Task`` is an asyncio ``Future``: one
    object per submit rather than two.  Its attributes are private, so the user's
    ``taskkit.Future`` shows nothing new.  The call's arguments are dropped when the
    future settles with the call's outcome (or before the call ran), so a future kept
    after its result does not keep them alive.
    """

    # What most tasks keep, as class defaults: set on the few tasks that differ.
    _options: TaskOptions = _NO_OPTIONS
    _args: tuple[Any, ...] = ()
    _kwargs: dict[str, Any] = _NO_KWARGS
    _weight = 1
    # Calls it runs at once while it runs: a map chunk runs its calls one by one,
    # unless a backend runs them all at once (then it sets this to the chunk's weight).
    _width = 1
    _attempt = 0
    _started = False
    _deadline: Deadline | None = None
    # The backend's handle on the running attempt (an asyncio task, ...), if it keeps one.
    _handle: Any = None

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        weight: int,
    ) -> None:
        Future.__init__(self)
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._number = next_task_number()  # names are numbered in submission order
        if options is not _NO_OPTIONS:
            self._options = options
            self._name = options.name
        if weight != 1:
            self._weight = weight

    def _sleep(self, timeout: float | None) -> None:
        # Only an unfinished future gets here, so a finished one's result() pays nothing.
        if timeout is None or timeout > 0:
            executor = getattr(self._on_settled, "__self__", None)  # None once settled
            if executor is not None and executor._on_own_loop():
                raise BlockingCallError(
                    f"result() of the unfinished {self.name} on the thread of its "
                    f"{executor.backend} executor's event loop would block that loop, and "
                    "with it the task it waits for; `await` the future instead"
                )
        Future._sleep(self, timeout)


class Executor(MapMethods, concurrent.futures.Executor, abc.ABC):
    """Run callables concurrently; the one interface every taskkit backend provides.

    Use ``taskkit.open_executor(...)`` to get one.  An ``Executor`` is a
    ``concurrent.futures.Executor``, so code that takes one keeps working.

    Leaving ``with ex:`` waits for the submitted work, also when the block raised,
    as ``concurrent.futures`` does.  Leaving ``async with ex:`` normally awaits the
    work without blocking the event loop; left by an exception, it cancels what is
    still pending or running (process tasks are killed; a thread that cannot be
    stopped runs on, its future cancelled) and the exception goes on at once, as
    ``asyncio.TaskGroup`` does.  Either block left by ``KeyboardInterrupt`` cancels
    and kills at once, and so does a Ctrl-C while ``with`` waits: one is enough.
    """

    #: The backend's name, as given to ``open_executor``.
    backend: ClassVar[str] = "?"

    @property
    def _log(self) -> logging.Logger:
        """The backend's logger: ``taskkit.<backend>`` (see docs/observing.md)."""
        return logging.getLogger(f"taskkit.{self.backend}")

    #: ``map``'s default window (items in flight) for this backend, or 0 for ``_default_window()``.
    _fixed_window: ClassVar[int] = 0
    #: How long one automatically sized map chunk should take, in seconds.
    _chunk_target: ClassVar[float] = 0.002
    _checks_arguments: ClassVar[bool] = False
    #: The ``MapRun`` subclass ``map`` uses, where a backend has its own (None: ``MapRun``).
    _map_run_class: ClassVar[type[MapRun] | None] = None
    #: The functions a map chunk runs as (their result is a ``ChunkResult``).
    _chunk_runners: ClassVar[frozenset[Callable[..., Any]]] = frozenset({run_chunk})
    #: Which family ``queue()``, ``lock()``... draw from; ``None``: chosen by ``backend``.
    _primitive_family: ClassVar[str | None] = None

    def __init__(self, *, max_workers: int) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, got {type(max_workers).__name__}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        self._max_workers = max_workers
        self._closed = False
        self._shut_down = False  # shutdown() was called: no new primitives either
        self._killed = False
        # One lock guards the counters and the live table; join() waits on it.
        self._state_lock = threading.Lock()
        self._all_done = threading.Condition(self._state_lock)
        self._joining = 0  # threads waiting in join(): only then is _all_done notified
        self._n_submitted = self._n_done = self._n_failed = 0
        self._n_cancelled = self._n_retried = self._n_timed_out = 0
        # Counted without the lock, only ever by the thread of the backend's event loop.
        self._n_loop_submitted = self._n_loop_done = 0
        self._live: dict[Future[Any], _Task] = {}
        # Bound once, not once per task.
        self._settle_hook = self._settled
        self._stop_hook = self._stop_future
        # Primitives made by queue(), lock()...: shutdown() closes them and frees their
        # OS resources.  Weak: one the program dropped is freed by its own finalizer.
        self._primitives: weakref.WeakSet[Any] = weakref.WeakSet()

    # ------------------------------------------------------------------ submit

    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; ``submit(fn, *args).result()`` returns ``fn(*args)``.

        Args:
            fn: any callable; an ``async def`` function is awaited on backends
                that run coroutines and run to completion elsewhere.
            *args: positional arguments for ``fn``.
            **kwargs: keyword arguments for ``fn`` (executor options go to
                ``ex.options(...)``, never here).

        Returns:
            A ``taskkit.Future`` for the call's result.

        Raises:
            ExecutorClosed: after ``close()`` or ``shutdown()``.
            TypeError: ``fn`` is not callable.
        """
        return self._submit(fn, args, kwargs, _NO_OPTIONS)

    def options(
        self,
        *,
        timeout: float | None = None,
        retries: int = 0,
        name: str | None = None,
    ) -> _Configured:
        """Return a view of this executor whose ``submit``, ``map``, ``amap`` apply these options.

        ``ex.options(timeout=5, retries=2).submit(fn, x)`` runs ``fn(x)`` with a
        5-second deadline per attempt and up to two re-runs if it fails.

        Args:
            timeout: seconds each attempt may run; an overrun fails the future
                with ``TaskTimeout`` (process tasks are killed; a thread cannot be
                killed, so it is abandoned and replaced).
            retries: re-runs of a failing task (exceptions, crashes and timeouts;
                not cancellation).
            name: the task's name in errors and statistics.
        """
        return _Configured(self, TaskOptions(timeout=timeout, retries=retries, name=name))

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskOptions,
        weight: int = 1,
    ) -> Future[Any]:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {type(fn).__name__}: {fn!r}")
        if self._checks_arguments:
            self._check_arguments(fn, args, kwargs)
        task = _Task(fn, args, kwargs, options, weight)
        task._on_settled = self._settle_hook
        with self._state_lock:
            if self._closed:
                raise ExecutorClosed(
                    f"cannot submit {task.name}: the {self.backend} executor is closed"
                )
            self._n_submitted += weight
            self._live[task] = task
        try:
            self._dispatch(task)
        except BaseException as exc:
            task._try_set_exception(exc)
            raise
        return task

    def _run_inline(self, task: _Task) -> None:
        """Run ``task`` in the calling thread and report how it ended (serial and thread)."""
        if not self._begin(task):
            return
        try:
            value = call_as_task(self, task._fn, task._args, task._kwargs)
        except BaseException as exc:
            self._failed(task, exc)
            if not isinstance(exc, Exception):
                raise  # Ctrl-C and SystemExit still reach the caller
        else:
            self._succeeded(task, value)

    def _check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Reject arguments the backend cannot carry (the process backend checks pickling)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Call _check_arguments on submit only where a backend overrides it.
        cls._checks_arguments = cls._check_arguments is not Executor._check_arguments

    # ------------------------------------------------- what backends call back

    def _begin(self, task: _Task) -> bool:
        """Mark ``task`` running; False if it was cancelled and must be skipped."""
        if task._started:  # a retry: the deadline applies to each attempt
            if task.done():
                return False
        else:
            if not task._start():
                return False
            # No lock on this hot path: statistics() counts running tasks in _live.
            task._started = True
        if task._options.timeout is not None:
            task._deadline = self._schedule_deadline(task, task._options.timeout)
        return True

    def _schedule_deadline(self, task: _Task, timeout: float) -> Deadline:
        """Arrange for ``_deadline_passed(task)`` after ``timeout`` seconds.

        The default uses the shared deadline thread; a backend with its own
        clock (the coroutine scheduler's virtual time) overrides this.
        """
        from ._timer import call_later

        return call_later(timeout, lambda: self._deadline_passed(task))

    def _succeeded(self, task: _Task, value: Any) -> None:
        """Report that ``task`` returned ``value``."""
        if task._deadline is not None:
            task._deadline.cancel()
        task._complete(value, None)

    def _report_outcome(self, task: _Task, value: Any, error: BaseException | None) -> None:
        """Report ``task``'s outcome: ``_succeeded`` if ``error`` is None, else ``_failed``.

        For the backends that run tasks on an event loop's thread (coroutine, asyncio):
        a task that never awaited held that thread past its deadline, so the loop's timer
        could not fire to cancel it; it still overran, and fails with ``TaskTimeout``.
        """
        deadline, timeout = task._deadline, task._options.timeout
        if deadline is not None and timeout is not None and not deadline.cancelled:
            late = self._now() - deadline.when
            if late >= 0:
                deadline.cancel()
                error = self._overran(
                    task,
                    timeout,
                    f"it held the event loop's thread for {timeout + late:.3f} s without "
                    "awaiting, so it could not be cancelled at its deadline and ran on to its "
                    "end (await taskkit.sleep() or asyncio.sleep() in long loops, or run "
                    "blocking work on a thread executor)",
                )
        if error is None:
            self._succeeded(task, value)
        else:
            self._failed(task, error)

    def _failed(self, task: _Task, exc: BaseException) -> None:
        """Report that ``task`` raised ``exc``; re-run it if it has retries left."""
        if task._deadline is not None:
            task._deadline.cancel()
        if (
            isinstance(exc, Exception)
            and task._attempt < task._options.retries
            and not task.done()
            and not self._killed
        ):
            task._attempt += 1
            with self._state_lock:
                self._n_retried += 1
            log = self._log
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
                self._dispatch(task)
            except BaseException as dispatch_error:
                task._try_set_exception(dispatch_error)
            return
        if isinstance(exc, TaskTimeout):
            with self._state_lock:
                self._n_timed_out += task._weight
        task._try_set_exception(exc)

    def _deadline_passed(self, task: _Task) -> None:
        """Called on the deadline thread when a task overran its timeout."""
        if task.done():
            return
        timeout = task._options.timeout
        error = self._overran(task, timeout, self._timeout_detail())
        self._stop_overrunning(task)
        self._failed(task, error)

    def _overran(self, task: _Task, timeout: float | None, detail: str) -> TaskTimeout:
        """Log that ``task`` overran its deadline, and return the error it fails with."""
        self._log.warning(
            "%s overran its %g s deadline%s", task.name, timeout, f": {detail}" if detail else ""
        )
        return TaskTimeout(task.name, timeout, detail)

    def _stop_overrunning(self, task: _Task) -> None:
        """Stop a task that overran its deadline (default: nothing can be stopped)."""
        self._stop_running(task)

    def _timeout_detail(self) -> str:
        return ""

    def _now(self) -> float:
        """The clock ``_schedule_deadline`` times deadlines by."""
        return time.monotonic()

    def _settled(self, future: Future[Any]) -> None:
        """Called once when a task's future finishes, fails or is cancelled."""
        with self._state_lock:
            task = self._live.pop(future, None)
            if task is None:
                return
            # The future is final here: read its state without taking its lock again.
            if future._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                self._n_cancelled += task._weight
            elif future._exception is not None:
                self._n_failed += task._weight
            elif task._fn in self._chunk_runners:
                self._count_chunk(task, future)
            else:
                self._n_done += task._weight
            if self._joining and not self._live:
                self._all_done.notify_all()
        if task._deadline is not None:
            task._deadline.cancel()
        # Drop the call's arguments once no attempt can still read them, so that a future
        # kept after its result does not keep them alive: when the task never started, or
        # its attempt reported how it ended.  A running task cancelled or timed out by
        # someone else keeps them (its worker may be between starting and reading them).
        if not task._started or (
            future._state == FINISHED and not isinstance(future._exception, TaskTimeout)
        ):
            task._args, task._kwargs = (), _NO_KWARGS

    def _settled_with_value(self, task: _Task) -> None:
        """``_settled``, without the lock, for a task that finished with a value on the
        thread that owns the ``_n_loop_*`` counts (a backend's event-loop thread)."""
        live = self._live
        del live[task]
        self._n_loop_done += 1
        if self._joining and not live:
            with self._state_lock:
                self._all_done.notify_all()
        if task._args:
            task._args = ()
        if task._kwargs:
            task._kwargs = _NO_KWARGS

    def _count_chunk(self, task: _Task, future: Future[Any]) -> None:
        # A map chunk counts each of its calls: what ended, how, and what never started.
        results, failures, retried, _ = future._result  # a finished chunk
        self._n_done += len(results) - len(failures)
        self._n_failed += len(failures)
        self._n_cancelled += task._weight - len(results)
        self._n_retried += retried

    # ----------------------------------------------------------- backend hooks

    @abc.abstractmethod
    def _dispatch(self, task: _Task) -> None:
        """Run or queue ``task``; call ``_begin``, then ``_succeeded`` or ``_failed``."""

    @abc.abstractmethod
    def _shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        """Stop the workers once the queued work is done (or at once, if ``kill``)."""

    def _stop_running(self, task: _Task) -> bool:
        """Stop a running task; True if it will stop.  Default: it cannot be stopped."""
        return False

    def _stop_future(self, future: Future[Any]) -> bool:
        """``future.cancel()`` of a running task: a backend that can stop its tasks sets
        ``task._stop_running = self._stop_hook`` while the task runs."""
        task = self._live.get(future)
        return task is not None and self._stop_running(task)

    def _worker_count(self) -> int:
        return 0

    def _on_own_loop(self) -> bool:
        """True on the thread of the executor's own event loop (coroutine, asyncio)."""
        return False

    def _refuse_to_wait(self, what: str) -> None:
        """Raise ``BlockingCallError`` if waiting for this executor's work here could never end.

        That is on the thread of its own event loop, which the work needs, or inside one
        of its own tasks, which would wait for itself.
        """
        if self._on_own_loop():
            where = (
                f"on the {self.backend} executor's own event loop would block the tasks "
                "it waits for"
            )
            instead = "use `async with` (or await the futures) instead"
        elif _running.executor is self:
            where = "inside one of the executor's own tasks would wait for that task itself"
            instead = "call it from the code that opened the executor"
        else:
            return
        raise BlockingCallError(f"{what} {where}; {instead}")

    def _default_window(self) -> int:
        return self._fixed_window or max(16 * self._max_workers, 4096)

    def _submit_chunk(
        self,
        fn: Callable[..., Any],
        items: list[tuple[Any, ...]],
        options: TaskOptions,
        keep_going: bool,
    ) -> Future[ChunkResult]:
        """Submit one map chunk: ``fn(*item)`` for each item, with ``options`` per call.

        ``options`` name the chunk (for its errors) and keep ``retries``: a failing
        call is re-run alone by the chunk's runner, and a chunk lost as a whole (its
        worker crashed) is run again.
        """
        args = (
            (fn, items)
            if not (options.retries or keep_going)
            else (fn, items, options.retries, keep_going)
        )
        return self._submit(run_chunk, args, {}, options, weight=len(items))

    def _map_per_call(self, fn: Callable[..., Any], options: TaskOptions) -> bool:
        """True if ``map`` must submit each call as a task of its own, not in chunks.

        A per-call deadline is a task's deadline; a backend whose chunk of ``fn``
        would run its calls all at once also says True where ``max_workers`` is set.
        """
        return options.timeout is not None

    # ------------------------------------------------------------------- map

    def _map_target(self) -> tuple[Executor, TaskOptions]:
        return self, _NO_OPTIONS

    def _map(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], spec: MapSpec
    ) -> Iterator[Any]:
        """The iterator ``map`` returns (a backend may run a map its own way)."""
        from ._map import MapRun

        return (self._map_run_class or MapRun)(self, fn, iterables, spec).iter()

    # -------------------------------------------------------------- lifetime

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``shutdown()`` was called."""
        return self._closed

    @property
    def max_workers(self) -> int:
        """The most calls this executor runs at once, through ``submit``, ``map`` and ``amap``.

        The asyncio and coroutine backends opened without ``max_workers`` set no limit
        (and say 1 here).
        """
        return self._max_workers

    def close(self) -> None:
        """Accept no new work; what was submitted still runs (the ``Pool.close()`` idiom)."""
        with self._state_lock:
            self._closed = True

    def join(self, timeout: float | None = None, *, progress: Progress = False) -> bool:
        """Wait until every submitted task has finished; True unless ``timeout`` passed first.

        ``progress`` shows a bar over the tasks unfinished at the call (needs
        ``pip install "taskkit[progress]"``): ``True``, a label, a dict of ``tqdm``
        options, or a bar of your own.  Tasks submitted while it waits join its total.

        Raises:
            BlockingCallError: work is unfinished and the caller is the thread of the
                executor's own event loop, or one of its tasks: the wait could never end.
        """
        if wanted(progress):
            return join_with_progress(self, timeout, progress)
        if self._live and timeout != 0:
            self._refuse_to_wait("join()")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._all_done:
            self._joining += 1
            try:
                while self._live:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._all_done.wait(interruptible(remaining))
            finally:
                self._joining -= 1
        return True

    def shutdown(
        self,
        wait: bool = True,
        *,
        cancel_pending: bool = False,
        kill: bool = False,
        cancel_futures: bool | None = None,
    ) -> None:
        """Close the executor and release its workers.

        Args:
            wait: wait for the remaining work and the workers to finish.
            cancel_pending: cancel tasks that have not started.
            kill: also stop running tasks now (process workers are killed; their
                futures are cancelled).  The executor is then closed, not broken.
            cancel_futures: the ``concurrent.futures`` name for ``cancel_pending``.

        Raises:
            BlockingCallError: ``wait`` (without ``kill``) where the wait could never end,
                as ``join()`` raises.
        """
        if cancel_futures is not None:
            cancel_pending = cancel_pending or cancel_futures
        if wait and not kill and self._live:
            self._refuse_to_wait("shutdown(wait=True)")
        with self._state_lock:
            self._closed = self._shut_down = True
            if kill:
                self._killed = True
            live = list(self._live.values())
        if cancel_pending or kill:
            for task in live:
                if not task._started:
                    task.cancel()
        if kill:
            for task in live:
                if task._started and not task.done() and self._stop_running(task):
                    task._force_cancelled()
        if wait and not kill:
            self.join()
        self._shutdown_workers(wait=wait, kill=kill)
        for primitive in list(self._primitives):
            # Unlink shared memory and semaphores by name (mappings stay valid); close
            # queues once no task can use them, so a get() on a drained one cannot hang.
            primitive._shutdown(close=wait or kill)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or issubclass(exc_type, Exception):
            try:
                self.shutdown(wait=True)
            except BaseException as interrupt:
                if not isinstance(interrupt, Exception):
                    # Ctrl-C while waiting for the work: one Ctrl-C stops it all, as
                    # leaving the block by Ctrl-C does.
                    self.shutdown(wait=True, cancel_pending=True, kill=True)
                raise
        else:
            # Ctrl-C or SystemExit: stop now rather than wait for the work.
            self.shutdown(wait=True, cancel_pending=True, kill=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # Left by an exception, as an asyncio.TaskGroup is: what still runs or waits
            # is cancelled (process tasks are killed), and the exception goes on at once.
            self.shutdown(wait=True, cancel_pending=True, kill=True)
            return
        await self._await_idle()
        self.shutdown(wait=True)

    async def _await_idle(self) -> None:
        """Wait for the submitted work without blocking the caller's event loop."""
        self.close()
        while True:
            # The oldest unfinished task: by the time it is done, most others are too.
            with self._state_lock:
                oldest = next(iter(self._live), None)
            if oldest is None:
                return
            await asyncio.wait([asyncio.wrap_future(oldest)])

    # ------------------------------------------------------------ primitives

    def queue(self, maxsize: int = 0) -> Queue[Any]:
        """Return a FIFO queue this executor's tasks and its caller can share.

        ``q.put(x)`` in one task and ``q.get()`` in another returns ``x``; pass the
        queue to tasks as an ordinary argument (process tasks too).  ``maxsize > 0``
        bounds it: ``put`` then waits for room.  See ``docs/primitives.md``.
        Annotate it to type its items: ``q: taskkit.Queue[int] = ex.queue()``.
        """
        return self._primitive("queue", maxsize)  # type: ignore[no-any-return]

    def lock(self) -> Lock:
        """Return a lock this executor's tasks share (``with lock:``, ``async with lock:``).

        A process executor's lock held by a worker that dies is taken over by the
        next acquirer, whose ``previous_holder_died`` is then True.
        """
        return self._primitive("lock")  # type: ignore[no-any-return]

    def event(self) -> Event:
        """Return an event (a flag tasks wait for) this executor's tasks share."""
        return self._primitive("event")  # type: ignore[no-any-return]

    def semaphore(self, n: int = 1) -> Semaphore:
        """Return a semaphore with ``n`` free units this executor's tasks share."""
        return self._primitive("semaphore", n)  # type: ignore[no-any-return]

    def value(self, initial: T) -> Value[T]:
        """Return a shared value holding ``initial``, with an atomic ``update(fn)``.

        Its type follows ``initial``: ``ex.value(0)`` is a ``Value[int]``; annotate
        for more (``v: taskkit.Value[int | None] = ex.value(None)``).
        """
        return self._primitive("value", initial)  # type: ignore[no-any-return]

    def _primitive(self, kind: str, *args: Any) -> Any:
        from ._primitives import create, family_of

        self._refuse_after_shutdown(kind)
        family = self._primitive_family or family_of(self.backend)
        primitive = create(family, kind, *args)
        self._primitives.add(primitive)
        try:
            self._refuse_after_shutdown(kind)  # shutdown() ran meanwhile, without this one
        except ExecutorClosed:
            primitive._shutdown(close=True)
            raise
        return primitive

    def _refuse_after_shutdown(self, kind: str) -> None:
        # After shutdown() nothing would free a new primitive's OS resources (shared
        # memory, for processes), and no task of this executor can use it.  close()
        # still allows one: the submitted work runs on and may be handed it.
        if self._shut_down:
            raise ExecutorClosed(f"cannot make a {kind}: the {self.backend} executor is shut down")

    # ------------------------------------------------------------ statistics

    def statistics(self) -> Statistics:
        """Return a snapshot of the executor's counters."""
        with self._state_lock:
            # A copy first: a backend's loop thread may add or remove tasks meanwhile.
            running = sum(task._width for task in list(self._live.values()) if task._started)
            submitted = self._n_submitted + self._n_loop_submitted
            done = self._n_done + self._n_loop_done
            finished = done + self._n_failed + self._n_cancelled
            return Statistics(
                backend=self.backend,
                submitted=submitted,
                pending=max(0, submitted - running - finished),
                running=running,
                done=done,
                failed=self._n_failed,
                cancelled=self._n_cancelled,
                retried=self._n_retried,
                timed_out=self._n_timed_out,
                workers=self._worker_count(),
                max_workers=self._max_workers,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<taskkit {self.backend} executor, {state}, max_workers={self._max_workers}>"


class _Configured(MapMethods):
    """``ex.options(...)``: the executor's ``submit``, ``map`` and ``amap``, with task options."""

    __slots__ = ("_executor", "_options")

    def __init__(self, executor: Executor, options: TaskOptions) -> None:
        self._executor, self._options = executor, options

    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Future[Any]:
        """Like ``Executor.submit``, with these options."""
        return self._executor._submit(fn, args, kwargs, self._options)

    def _map_target(self) -> tuple[Executor, TaskOptions]:
        return self._executor, self._options

    def options(
        self, *, timeout: float | None = None, retries: int | None = None, name: str | None = None
    ) -> _Configured:
        """Return a view with some options replaced."""
        current = self._options
        return _Configured(
            self._executor,
            TaskOptions(
                timeout=current.timeout if timeout is None else timeout,
                retries=current.retries if retries is None else retries,
                name=current.name if name is None else name,
            ),
        )

    def __repr__(self) -> str:
        return f"<{self._executor!r} with {self._options}>"


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True if calling ``fn`` returns a coroutine (``async def``, or a partial of one)."""
    if type(fn) is FunctionType and not fn.__dict__:
        # The common case, without inspect's unwrapping: a plain function's code
        # says whether it is a coroutine function (a function with attributes
        # may be marked as one, so it takes the general path).
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )
