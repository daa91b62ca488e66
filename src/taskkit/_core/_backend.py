"""What a backend provides: the one protocol every taskkit backend implements.

A backend is one subpackage of ``_backends/``; its ``_executor`` module holds two
classes.  Its *backend object* subclasses ``Backend`` (below) and does the work: it
runs tasks and reports back to the ledger.  Its public class (``ThreadExecutor``...)
subclasses ``Executor``, so ``isinstance(ex, taskkit.Executor)`` holds; it checks the
options, builds the backend object and hands it to ``Executor.__init__``, and holds
only the public API that differs between backends (``spawn``, ``loop``, ``client``...)
and ``map``'s tuning (``_map.py``).  Everything else is the executor's (submit, map,
options, statistics, close/join/shutdown, the context managers, listeners) or the
ledger's (``_ledger.py``: task states, counters, retries, deadlines, settling)::

    ThreadExecutor(Executor) ──holds──► _ThreadBackend(Backend) ◄──calls── TaskLedger
                            └──holds──► TaskLedger ◄──reports to──────────┘

``Backend.__init__`` makes the ledger (``self.ledger``); ``Executor.__init__`` sets
``self.executor``.  The ledger and the executor call the backend by the public names
below, as anyio calls its ``AsyncBackend``.

Required (abstract):

* ``dispatch(task)`` -- start or queue one task.  The worker that takes it calls
  ``ledger.begin(task, worker)`` (False: cancelled meanwhile, skip it), runs the call
  (``ledger.run(task, worker)`` does both in the calling thread; else
  ``call_of(task)``), then reports with ``ledger.succeeded(task, value)``,
  ``ledger.failed(task, error)`` (re-runs it if it has retries left) or
  ``ledger.report_outcome(task, value, error)``.  A task that can no longer run at all
  is settled with ``ledger.fail_now(task, error)``.
* ``shutdown_workers(wait=..., kill=...)`` -- stop the workers once the queued work is
  done, or at once if ``kill``.

Optional (the default in brackets):

* ``stop_running(task) -> bool`` -- stop a running task (kill a process, cancel a
  coroutine); True if it will stop [False: it cannot be stopped].  A backend that can
  stop its tasks calls ``ledger.stoppable(task)`` as one starts, so that
  ``future.cancel()`` reaches it.
* ``stop_overrunning(task)`` -- stop a task that overran its deadline [``stop_running``].
* ``schedule_deadline(task, timeout) -> Deadline`` -- arrange for
  ``ledger.deadline_passed(task)`` after ``timeout`` [the shared deadline thread].  A
  backend whose tasks may wait after ``begin`` (a worker starting up, a cluster's
  queue) begins them with ``timed=False`` and calls ``ledger.arm_deadline(task)`` once
  the call really starts.  ``now()`` is the clock deadlines are timed by
  [``time.monotonic``]; ``timeout_detail`` says what happened to an overrunning task [""].
* ``worker_count() -> int`` -- workers alive now [0].
* ``on_own_loop() -> bool`` -- True on the thread of the backend's own event loop,
  where waiting for its work would block it [False].
* ``check_arguments(fn, args, kwargs)`` -- reject, at submit, arguments the backend
  cannot carry (the process and Dask backends pickle them) [nothing; a backend that
  overrides it is called for each submit].
* ``submit_here`` -- set by a backend with a ``submit`` fast path:
  ``submit_here(fn, args, kwargs)`` returns the future of a task it started at once,
  or None for the ordinary way [None] (see ``_fastpaths``; the asyncio backend's makes
  and settles its tasks with ``_ledger.LoopTasks``).
* ``map_per_call(fn) -> bool`` -- True where a chunk of ``fn`` would run its calls all
  at once, so that under ``max_workers`` each call must be a task of its own [False];
  ``map_inline(fn, iterables, spec)`` -- an iterator that runs a whole ``map`` its own
  way, or None for chunks of tasks [None].
* ``cancel_queued()`` -- cancel the tasks no worker has started, for
  ``shutdown(cancel_pending=True)``, where the backend hands every task on at once [nothing].
* ``to_await_after_kill() -> list`` -- the asyncio tasks that ``async with`` left by an
  exception awaits after it cancelled them (their ``finally`` blocks) [none].
* class constants: ``name``, ``chunk_runners`` (the functions a map chunk runs as: its
  outcome counts each call), ``primitive_family`` (which ``queue()``, ``lock()``... the
  executor makes [by name]), ``timeout_detail``.

What a backend may read and set on a task (``_ledger.Task``, also the user's future,
so its attributes stay private): ``call_of(task)`` (``fn, args, kwargs``),
``weight_of``, ``attempt_of``, ``timeout_of``, ``handle_of``/``set_handle`` (the
backend's own handle on the running attempt, dropped when the task settles),
``set_width`` (calls it runs at once), all in ``_ledger``; ``name``, ``done()``,
``cancel()``; and, from ``_future``, ``settled``/``is_running`` (its state without the
lock) and ``set_help`` (see ``Future._sleep``).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ._calls import run_chunk
from ._ledger import TaskLedger

if TYPE_CHECKING:
    import asyncio

    from ._executor import Executor
    from ._future import Future
    from ._ledger import Task
    from ._map import MapSpec
    from ._timer import Deadline

__all__ = ["Backend", "check_max_workers"]

#: A backend's ``submit`` fast path: the future of a task it started, or None.
SubmitHere = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], "Future[Any] | None"]


def check_max_workers(max_workers: int) -> int:
    """``max_workers``, checked: a whole number above 0."""
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, got {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
    return max_workers


class Backend(abc.ABC):
    """The operations a backend provides (see the module docstring)."""

    #: The backend's name, as given to ``open_executor``.
    name: ClassVar[str] = "?"
    #: The functions a map chunk runs as (their result is a ``ChunkResult``).
    chunk_runners: ClassVar[frozenset[Callable[..., Any]]] = frozenset({run_chunk})
    #: Which family ``queue()``, ``lock()``... draw from; ``None``: chosen by ``name``.
    primitive_family: ClassVar[str | None] = None
    #: What happened to a task that overran (for its ``TaskTimeout``).
    timeout_detail: ClassVar[str] = ""
    #: True where the backend overrides ``check_arguments`` (set for each subclass).
    checks_arguments: ClassVar[bool] = False
    #: The ``submit`` fast path, where a backend has one.
    submit_here: SubmitHere | None = None
    #: The public executor that holds this backend (set by ``Executor.__init__``).
    executor: Executor

    def __init__(self, max_workers: int) -> None:
        #: The most workers (or tasks at once) the backend runs.
        self.max_workers = check_max_workers(max_workers)
        #: What the backend reports to.
        self.ledger = TaskLedger(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.checks_arguments = cls.check_arguments is not Backend.check_arguments

    @property
    def log(self) -> logging.Logger:
        """The backend's logger: ``taskkit.<backend>`` (see docs/observing.md)."""
        return logging.getLogger(f"taskkit.{self.name}")

    @abc.abstractmethod
    def dispatch(self, task: Task) -> None:
        """Run or queue ``task``; call ``ledger.begin``, then ``succeeded`` or ``failed``."""

    @abc.abstractmethod
    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        """Stop the workers once the queued work is done (or at once, if ``kill``)."""

    def stop_running(self, task: Task) -> bool:
        """Stop a running task; True if it will stop.  Default: it cannot be stopped."""
        return False

    def stop_overrunning(self, task: Task) -> None:
        """Stop a task that overran its deadline (default: ``stop_running``)."""
        self.stop_running(task)

    def schedule_deadline(self, task: Task, timeout: float) -> Deadline:
        """Arrange for ``ledger.deadline_passed(task)`` after ``timeout`` seconds."""
        return self.ledger.schedule_deadline(task, timeout)

    def now(self) -> float:
        """The clock ``schedule_deadline`` times deadlines by."""
        return time.monotonic()

    def worker_count(self) -> int:
        """Workers alive now."""
        return 0

    def on_own_loop(self) -> bool:
        """True on the thread of the backend's own event loop (coroutine, asyncio)."""
        return False

    def check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Reject arguments the backend cannot carry (the process backend checks pickling)."""
        return  # every argument is fine: the call runs in this process

    def map_per_call(self, fn: Callable[..., Any]) -> bool:
        """True if a chunk of ``fn`` would run its calls at once, beyond ``max_workers``."""
        return False

    def map_inline(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], spec: MapSpec
    ) -> Iterator[Any] | None:
        """The iterator of a ``map`` the backend runs its own way, or None (chunks of tasks)."""
        return None

    def cancel_queued(self) -> None:
        """Cancel what no worker has started, where every task was handed on at once."""
        return  # by default the executor sees what has not started, and cancels it

    def to_await_after_kill(self) -> list[asyncio.Future[Any]]:
        """The asyncio tasks ``async with`` left by an exception awaits once it killed them."""
        return []
