"""The threads that run the plain tasks of controlled runs, kept from one run to the next.

Starting a thread costs about as much as a whole run of a small program, so the tasks T0,
T1 ... given to a run are run by worker threads that wait for the next run when theirs
ends.  Worker ``k`` always runs task ``Tk`` and is named ``taskkit.testing Tk``, so within
one run every task has a thread of its own, and a task sees the same thread (the same
``threading.current_thread()`` and ident) in every execution.  What a task could carry into
the next execution on its thread is reset, as a new thread would have it:

* ``threading.local`` data.  CPython keeps a thread's data of each ``threading.local`` in
  that thread's state dictionary, under a key ``thread.local.<address>``, and a thread's end
  clears it.  A worker deletes those entries when its task ends, so the task of the next
  execution finds every ``threading.local`` fresh (its ``__init__`` runs again).  Whether
  this works is checked once, on a probe; where it does not, every run starts new threads.
* context variables: each task runs in a new, empty ``contextvars.Context``.
* the thread's ``Thread`` object: its name, and any attribute code set on it.

Threads that tasks start (``Thread.start()``, a pool's workers) are new threads every time.
Idle workers end before ``os.fork()``, so a child process is not forked from a process with
threads that only wait.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from .._core._compat import allocate_lock
from . import _patches

__all__ = ["Worker", "give_back", "take"]

_allocate = allocate_lock


def _local_data_remover() -> Callable[[], None] | None:
    """Return a function that drops the calling thread's ``threading.local`` data, if it can."""
    try:
        import ctypes

        state_of = ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyThreadState_GetDict", ctypes.pythonapi))
    except (ImportError, AttributeError, OSError):  # pragma: no cover - not CPython
        return None
    cast, py_object = ctypes.cast, ctypes.py_object

    def drop() -> None:
        address = state_of()
        if not address:  # pragma: no cover - every running thread has a state
            return
        namespace: dict[Any, Any] = cast(address, py_object).value
        stale = [key for key in namespace if type(key) is str and key.startswith("thread.local.")]
        for key in stale:
            del namespace[key]

    return drop


_drop_local_data: Callable[[], None] | None = None
_reusable: bool | None = None  # None: not probed yet


def _probe() -> bool:
    """On a worker thread: can its ``threading.local`` data be dropped as a thread's end does?"""
    global _drop_local_data, _reusable
    if _reusable is None:
        drop = _local_data_remover()
        ok = False
        if drop is not None:

            class Probe(threading.local):
                def __init__(self) -> None:
                    self.fresh = True

            probe, plain = Probe(), threading.local()
            probe.fresh = False
            plain.value = 1
            try:
                drop()
                ok = probe.fresh and not hasattr(plain, "value")
            except Exception:  # pragma: no cover - an interpreter that stores them elsewhere
                ok = False
        _drop_local_data = drop if ok else None
        _reusable = ok
    return _reusable


class Worker:
    """A daemon thread that runs one task per controlled run, for run after run."""

    __slots__ = ("_go", "_job", "_saved", "idle", "index", "reusable", "thread", "tracer")

    def __init__(self, index: int) -> None:
        self.index = index
        self._go = _allocate()
        self._go.acquire()
        self.idle = _allocate()  # released when a job, and the worker's cleanup, are done
        self.idle.acquire()
        self._job: Callable[[], None] | None = None
        self.reusable = False
        self.tracer: Any = None  # the runtime's tracer for this thread, kept with it
        started = _allocate()
        started.acquire()
        self.thread = threading.Thread(
            target=self._main, args=(started,), name=f"taskkit.testing T{index}", daemon=True
        )
        _patches.start_thread(self.thread)  # the real start, also while a run patches it
        started.acquire()
        self._saved = dict(self.thread.__dict__)

    def _main(self, started: Any) -> None:
        self.reusable = _probe()
        started.release()
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            if job is None:
                return  # retired
            try:
                job()
            finally:
                self.idle.release()
            if not self.reusable:
                return  # a new thread for every run: this one ends as a task's thread did

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` on this worker's thread (it must be idle)."""
        self._job = job
        self._go.release()

    def scrub(self) -> None:
        """On the worker's thread, when its task has ended: forget its ``threading.local`` data."""
        drop = _drop_local_data
        if drop is not None and self.reusable:
            drop()

    def retire(self) -> None:
        """End an idle worker's thread."""
        self._job = None
        self._go.release()


_idle: dict[int, Worker] = {}


def take(index: int) -> Worker:
    """An idle worker for task ``Tindex`` (a new one if none is waiting)."""
    worker = _idle.pop(index, None)
    return worker if worker is not None else Worker(index)


def give_back(worker: Worker) -> None:
    """After the run: wait until ``worker`` is idle, and keep it for the next run."""
    worker.idle.acquire()
    thread = worker.thread
    if thread.__dict__ != worker._saved:  # code renamed its thread, or set attributes on it
        thread.__dict__.clear()
        thread.__dict__.update(worker._saved)
    if worker.reusable and _idle.setdefault(worker.index, worker) is worker:
        return
    worker.retire()
    worker.thread.join()


def _retire_idle() -> None:
    while _idle:
        _, worker = _idle.popitem()
        worker.retire()
        worker.thread.join()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(before=_retire_idle)
