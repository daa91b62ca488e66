"""What a backend provides: the one protocol every taskkit backend implements.

A backend is one module of ``_backends/`` ending with ``backend_class = ...``; its
class subclasses ``Executor`` (so ``isinstance(ex, taskkit.Executor)`` holds) and
supplies the operations below, and nothing else of the executor's: submit, map,
options, statistics, close/join/shutdown and the context managers are the
executor's; task states, counters, retries, deadlines and settling are the
ledger's (``_ledger.py``).  The executor gives every backend its ledger as
``self._ledger``.

Required (abstract on ``Backend``, which ``Executor`` subclasses):

* ``_dispatch(task)`` -- start or queue one task.  The worker that takes it calls
  ``ledger.begin(task, worker)`` (False: cancelled meanwhile, skip it), runs
  ``task._fn(*task._args, **task._kwargs)``, then reports with
  ``ledger.succeeded(task, value)``, ``ledger.failed(task, error)`` (re-runs it if it
  has retries left) or ``ledger.report_outcome(task, value, error)``.  A task that
  can no longer run at all is settled with ``ledger.fail_now(task, error)``.
* ``_shutdown_workers(wait=..., kill=...)`` -- stop the workers once the queued
  work is done, or at once if ``kill``.

Optional (``Backend`` has the default in brackets):

* ``_stop_running(task) -> bool`` -- stop a running task (kill a process, cancel
  a coroutine); True if it will stop [False: it cannot be stopped].  A backend
  that can stop its tasks sets ``task._stop_running = ledger.stop_hook`` while
  the task runs, so that ``future.cancel()`` reaches it.
* ``_stop_overrunning(task)`` -- stop a task that overran its deadline
  [``_stop_running``].
* ``_schedule_deadline(task, timeout) -> Deadline`` -- arrange for
  ``ledger.deadline_passed(task)`` after ``timeout`` [the shared deadline thread];
  ``_now()`` is the clock it times by [``time.monotonic``] and
  ``_timeout_detail()`` says what happened to an overrunning task [""].
* ``_worker_count() -> int`` -- workers alive now [0].
* ``_on_own_loop() -> bool`` -- True on the thread of the backend's own event
  loop, where waiting for its work would block it [False].
* ``_check_arguments(fn, args, kwargs)`` -- reject, at submit, arguments the
  backend cannot carry (the process and Dask backends pickle them) [nothing].
* ``_submit_chunk(fn, items, options, keep_going)`` and ``_map_per_call(fn,
  options)`` -- how ``map`` hands a chunk of calls over [one ``run_chunk`` task].
* ``_submit_here`` -- set by a backend with a ``submit`` fast path:
  ``_submit_here(fn, args, kwargs)`` returns the future of a task it started at
  once, or None for the ordinary way [None] (see ``_fastpaths``).
* ``_primitive_family`` -- which ``queue()``, ``lock()``... it makes [by name].
* class constants: ``backend`` (its name), ``_chunk_runners``, ``_chunk_target``,
  ``_fixed_window``, ``_map_run_class``.

What a backend may read and set on a task (``_ledger.Task``, also its future):
``_fn``, ``_args``, ``_kwargs``, ``_options``, ``_attempt``, ``_weight``,
``_width`` (calls it runs at once), ``_deadline``, ``_handle`` (the backend's own
handle on the running attempt), ``_stop_running``, ``_help`` (see
``Future._sleep``), ``name``, ``done()``, ``cancel()`` and
``_force_cancelled()`` (a running task the backend stopped ends as cancelled).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ._ledger import Task, TaskLedger
    from ._timer import Deadline

__all__ = ["Backend"]


class Backend(abc.ABC):
    """The operations a backend provides (see the module docstring); ``Executor`` is one."""

    #: The backend's name, as given to ``open_executor``.
    backend: ClassVar[str] = "?"
    #: The functions a map chunk runs as (their result is a ``ChunkResult``).
    _chunk_runners: ClassVar[frozenset[Callable[..., Any]]]
    #: The executor's ledger: what the backend reports to.
    _ledger: TaskLedger

    @property
    def _log(self) -> logging.Logger:
        """The backend's logger: ``taskkit.<backend>`` (see docs/observing.md)."""
        return logging.getLogger(f"taskkit.{self.backend}")

    @abc.abstractmethod
    def _dispatch(self, task: Task) -> None:
        """Run or queue ``task``; call ``ledger.begin``, then ``succeeded`` or ``failed``."""

    @abc.abstractmethod
    def _shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        """Stop the workers once the queued work is done (or at once, if ``kill``)."""

    def _stop_running(self, task: Task) -> bool:
        """Stop a running task; True if it will stop.  Default: it cannot be stopped."""
        return False

    def _stop_overrunning(self, task: Task) -> None:
        """Stop a task that overran its deadline (default: ``_stop_running``)."""
        self._stop_running(task)

    def _schedule_deadline(self, task: Task, timeout: float) -> Deadline:
        """Arrange for ``ledger.deadline_passed(task)`` after ``timeout`` seconds."""
        return self._ledger.schedule_deadline(task, timeout)

    def _now(self) -> float:
        """The clock ``_schedule_deadline`` times deadlines by."""
        return time.monotonic()

    def _timeout_detail(self) -> str:
        """What happened to a task that overran (for its ``TaskTimeout``)."""
        return ""

    def _worker_count(self) -> int:
        """Workers alive now."""
        return 0

    def _on_own_loop(self) -> bool:
        """True on the thread of the backend's own event loop (coroutine, asyncio)."""
        return False

    def _check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Reject arguments the backend cannot carry (the process backend checks pickling)."""
        return  # every argument is fine: the call runs in this process
