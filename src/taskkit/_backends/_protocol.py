"""What a backend provides: the one protocol every taskkit backend implements.

A backend is one module of this package ending with ``backend_class = ...``; its
class subclasses ``Executor`` (so ``isinstance(ex, taskkit.Executor)`` holds) and
supplies the operations below, and nothing else of the executor's: submit, map,
options, statistics, close/join/shutdown and the context managers are the
executor's; task states, counters, retries, deadlines and settling are the
ledger's (``_ledger.py``).  The executor gives every backend its ledger as
``self._ledger``.

Required (abstract on ``Executor``):

* ``_dispatch(task)`` -- start or queue one task.  The worker that takes it calls
  ``ledger.begin(task, worker)`` (False: cancelled meanwhile, skip it), runs
  ``task._fn(*task._args, **task._kwargs)``, then reports with
  ``ledger.succeeded(task, value)``, ``ledger.failed(task, error)`` (re-runs it if it
  has retries left) or ``ledger.report_outcome(task, value, error)``.  A task that
  can no longer run at all is settled with ``ledger.fail_now(task, error)``.
* ``_shutdown_workers(wait=..., kill=...)`` -- stop the workers once the queued
  work is done, or at once if ``kill``.

Optional (``Executor`` has the default in brackets):

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

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from .._ledger import Task
    from .._timer import Deadline

__all__ = ["Backend"]


class Backend(Protocol):
    """The operations the ledger asks of a backend (see the module docstring)."""

    backend: ClassVar[str]
    _chunk_runners: ClassVar[frozenset[Callable[..., Any]]]

    @property
    def _log(self) -> logging.Logger: ...

    def _dispatch(self, task: Task) -> None: ...

    def _shutdown_workers(self, *, wait: bool, kill: bool) -> None: ...

    def _stop_running(self, task: Task) -> bool: ...

    def _stop_overrunning(self, task: Task) -> None: ...

    def _schedule_deadline(self, task: Task, timeout: float) -> Deadline: ...

    def _now(self) -> float: ...

    def _timeout_detail(self) -> str: ...

    def _worker_count(self) -> int: ...

    def _on_own_loop(self) -> bool: ...
