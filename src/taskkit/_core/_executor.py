"""``Executor``: the public face every taskkit backend shares.

The executor is three parts, composed::

    Executor (this module): submit, options, map/amap (``_map.py``), close/join/shutdown,
    │                       the context managers, statistics, queue()/lock()... (``_factory.py``)
    ├── TaskLedger (``_ledger.py``): task states, counters, retries, deadlines, settling
    └── the backend object (``_backends/<name>/_executor.py``): the protocol of ``_backend.py``

The data flow every backend follows::

    submit(fn, *args) ──► ledger.submit: Task(fn, args, options), live ──► backend.dispatch(task)
                          (the future submit returns)                            │
       worker: ledger.begin(task) → run fn ──► ledger.succeeded(task, value) ◄───┘
                                        └──► ledger.failed(task, exc) ──► retry? ──► dispatch
    future settles ──► ledger.settled(task): statistics, join() wakes, the arguments dropped

Each backend's public class (``taskkit.ThreadExecutor``...) subclasses ``Executor``: it
builds its backend object and hands it to ``Executor.__init__``, which keeps it as
``self._backend`` and its ledger as ``self._ledger``.  The backend touches tasks and
counters only through the ledger.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints, overload

from typing_extensions import ParamSpec, Self

from ._errors import BlockingCallError
from ._events import Listener
from ._factory import PrimitiveFactory
from ._future import Future
from ._ledger import NO_OPTIONS as _NO_OPTIONS
from ._ledger import TaskOptions
from ._ledger import running as _running
from ._map import ExecutorMapHooks, MapMethods, MapSpec
from ._progress import Progress, join_with_progress, wanted

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = [
    "KILL_GRACE",
    "Executor",
    "Statistics",
    "TaskOptions",
    "is_async_callable",
    "shut_down_at_exit",
]

P = ParamSpec("P")
T = TypeVar("T")


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
        running_on: which task each busy worker runs now, by the worker's pid (process
            backend) or thread name (thread backend): ``{4711: "fetch#3"}``.  Empty
            where tasks share one thread (asyncio, coroutine, serial) or a cluster (dask).
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
    running_on: Mapping[int | str, str] = field(default_factory=dict)


# Public as taskkit.Statistics (set once decorated), its annotations resolved first, here,
# where their names are (typing.get_type_hints would look for them in taskkit).
Statistics.__annotations__ = get_type_hints(Statistics)
Statistics.__module__ = "taskkit"


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


class Executor(ExecutorMapHooks, PrimitiveFactory, concurrent.futures.Executor):
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

    def __init__(self, backend: Backend) -> None:
        PrimitiveFactory.__init__(self, backend.primitive_family)
        backend.executor = self
        self._backend = backend
        self._ledger = backend.ledger
        self._max_workers = backend.max_workers
        self._shut_down = False  # shutdown() was called: no new primitives either
        self._submit_here = backend.submit_here  # a backend's fast path, if any
        # ``_submit(fn, args, kwargs, options, weight=1)``: what submit and map hand a task
        # to, with its options; the ledger's own method, so no frame of the executor's.
        self._submit = self._ledger.submit

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
        here = self._submit_here
        if here is not None:
            future = here(fn, args, kwargs)
            if future is not None:
                return future
        return self._ledger.submit(fn, args, kwargs, _NO_OPTIONS)

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

    def _map_per_call(self, fn: Callable[..., Any], options: TaskOptions) -> bool:
        return options.timeout is not None or self._backend.map_per_call(fn)

    def _map(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], spec: MapSpec
    ) -> Iterator[Any]:
        inline = self._backend.map_inline(fn, iterables, spec)
        return super()._map(fn, iterables, spec) if inline is None else inline

    # -------------------------------------------------------------- lifetime

    def _refuse_to_wait(self, what: str) -> None:
        """Raise ``BlockingCallError`` if waiting for this executor's work here could never end.

        That is on the thread of its own event loop, which the work needs, or inside one
        of its own tasks, which would wait for itself.
        """
        if self._backend.on_own_loop():
            where = (
                f"on the {self.backend} executor's own event loop would block the tasks "
                "it waits for"
            )
            instead = "use `async with` (or await the futures) instead"
        elif _running.ledger is self._ledger:
            where = "inside one of the executor's own tasks would wait for that task itself"
            instead = "call it from the code that opened the executor"
        else:
            return
        raise BlockingCallError(f"{what} {where}; {instead}")

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``shutdown()`` was called."""
        return self._ledger.closed

    @property
    def max_workers(self) -> int:
        """The most calls this executor runs at once, through ``submit``, ``map`` and ``amap``.

        The asyncio and coroutine backends opened without ``max_workers`` set no limit
        (and say 1 here).
        """
        return self._max_workers

    def close(self) -> None:
        """Accept no new work; what was submitted still runs (the ``Pool.close()`` idiom)."""
        with self._ledger.lock:
            self._ledger.closed = True

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
        if self._ledger.live and timeout != 0:
            self._refuse_to_wait("join()")
        return self._ledger.wait_idle(timeout)

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
        ledger = self._ledger
        if wait and not kill and ledger.live:
            self._refuse_to_wait("shutdown(wait=True)")
        with ledger.lock:
            ledger.closed = self._shut_down = True
            if kill:
                ledger.killed = True
            live = list(ledger.live.values())
        if cancel_pending and not kill:
            self._backend.cancel_queued()
        if cancel_pending or kill:
            ledger.cancel(live, running=kill)
        if wait and not kill:
            self.join()
        self._backend.shutdown_workers(wait=wait, kill=kill)
        self._free_primitives(close=wait or kill)

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
            # is cancelled (process tasks are killed), and the exception goes on at once,
            # once the cancelled tasks on this loop ran their ``finally`` blocks.
            cancelled = self._backend.to_await_after_kill()
            self.shutdown(wait=True, cancel_pending=True, kill=True)
            if cancelled:
                await asyncio.wait(cancelled)
            return
        # Wait for the submitted work without blocking the caller's event loop.
        self.close()
        # The oldest unfinished task: by the time it is done, most others are too.
        while (oldest := self._ledger.oldest()) is not None:
            await asyncio.wait([asyncio.wrap_future(oldest)])
        self.shutdown(wait=True)

    # ------------------------------------------------------------ statistics

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` with a ``TaskEvent`` at every change of a task's state.

        Events come synchronously, from whichever thread made the change, in order for
        each task: ``"submitted"`` first, ``"started"`` per attempt, ``"retried"``, and
        exactly one terminal event (``"succeeded"``, ``"failed"``, ``"cancelled"``,
        ``"timed out"``, ``"worker crashed"``) last.  A listener added while tasks run
        sees the rest of their events.  An exception in a listener is logged under
        ``taskkit.events`` and ignored.  Keep listeners quick: they run on taskkit's
        threads.  With no listener, events cost nothing.
        """
        self._ledger.listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ``ValueError`` if it was not added."""
        self._ledger.listeners.remove(listener)

    def statistics(self) -> Statistics:
        """Return a snapshot of the executor's counters."""
        ledger = self._ledger
        return Statistics(
            self.backend,
            *ledger.counts(),
            self._backend.worker_count(),
            self._max_workers,
            ledger.running_on(),
        )

    def __repr__(self) -> str:
        state = "closed" if self._ledger.closed else "open"
        return f"<taskkit {self.backend} executor, {state}, max_workers={self._max_workers}>"


Executor.__module__ = "taskkit"  # public as taskkit.Executor


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
