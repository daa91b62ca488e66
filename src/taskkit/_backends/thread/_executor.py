"""The ``thread`` backend: a pool of threads, for blocking I/O.

Data flow::

    submit ──► _Task ──► SimpleQueue ──► worker threads (started lazily, up to max_workers)
                                              │ ledger.run: run fn, report to the ledger
    deadline thread: a task overran ──► its future fails with TaskTimeout now;
                                        its thread is *abandoned* and a new one started

A Python thread cannot be killed.  So a per-task ``timeout`` fails the future
on time, the stuck thread is marked abandoned (it exits when its call finally
returns, and its result is dropped) and a replacement thread is started at
once, so ``max_workers`` threads keep doing useful work.  Abandoned threads
are daemon threads: they do not keep the interpreter alive.

An ``initializer`` that raises breaks the pool, as in ``concurrent.futures``:
the queued tasks, and every task submitted later, fail at once with
``InitializerFailed`` (the process backend does the same), so nothing waits
for a thread that will never take it.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, final

from ..._core._backend import Backend, check_max_workers
from ..._core._compat import register_atexit
from ..._core._errors import InitializerFailed
from ..._core._executor import Executor
from ..._core._ledger import Task as _Task

__all__ = ["ThreadExecutor"]


class _Worker:
    __slots__ = ("abandoned", "task", "thread")

    def __init__(self) -> None:
        self.task: _Task | None = None
        self.abandoned = False
        self.thread: threading.Thread | None = None


_live_backends: weakref.WeakSet[_ThreadBackend] = weakref.WeakSet()
# Numbers the executors, so that default thread names tell pools apart.
_executor_numbers = itertools.count()


def _at_exit() -> None:
    # Like concurrent.futures: let queued and running work finish before the
    # interpreter exits (after shutdown(wait=False) too), since worker threads
    # are daemons (so that abandoned ones never block exit).
    for backend in list(_live_backends):
        # A forked child inherits the parent's executors but none of their threads.
        if backend.pid == os.getpid():
            backend.executor.shutdown(wait=True)


register_atexit(_at_exit)


@final
class ThreadExecutor(Executor):
    """Run tasks on a pool of threads.

    Its threads are named ``f"{thread_name_prefix}_{n}"`` (n = 0, 1, ...), as
    ``concurrent.futures.ThreadPoolExecutor`` names them; the default prefix
    is ``"taskkit-thread-N"``, N numbering the executors of this process.
    """

    backend = "thread"

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        thread_name_prefix: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        check_max_workers(max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {type(initializer).__name__}")
        if thread_name_prefix is None:
            thread_name_prefix = f"taskkit-thread-{next(_executor_numbers)}"
        super().__init__(_ThreadBackend(max_workers, thread_name_prefix, initializer, initargs))


class _ThreadBackend(Backend):
    """The pool of threads behind a ``ThreadExecutor``."""

    name = "thread"
    timeout_detail = (
        "a thread cannot be killed, so it was abandoned to finish on its own "
        "and a new thread took its place"
    )

    def __init__(
        self,
        max_workers: int,
        prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        super().__init__(max_workers)  # the threads start as tasks arrive
        self._initializer, self._initargs = initializer, initargs
        self._prefix = prefix
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        # One token per idle worker: C-level put/get, cheaper than a Semaphore.
        self._idle: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._workers_lock = threading.Lock()
        # A dict, not a set: workers are joined in the order they started, the same in every
        # run (a set's order follows addresses, so taskkit.testing could not repeat a run).
        self._workers: dict[_Worker, None] = {}
        self._started = 0
        self._stopping = False
        # The initializer's exception, once one failed: the pool is then broken.
        self._broken: BaseException | None = None
        self.pid = os.getpid()
        _live_backends.add(self)

    # --------------------------------------------------------------- workers

    def dispatch(self, task: _Task) -> None:
        if self._is_broken():
            self.ledger.fail_now(task, self._broken_error())
            return
        self._queue.put(task)
        if self._is_broken():
            # The pool broke between the check and the put, perhaps after the
            # failing thread drained the queue: drain it again, so this task fails too.
            self._fail_queued()
            return
        try:
            self._idle.get_nowait()
        except queue.Empty:
            pass
        else:
            return  # an idle worker will take it
        with self._workers_lock:
            if len(self._workers) < self.max_workers and not self._stopping:
                self._start_worker()

    def _start_worker(self) -> None:
        worker = _Worker()
        self._started += 1
        thread = threading.Thread(
            target=self._work,
            args=(worker,),
            name=f"{self._prefix}_{self._started - 1}",
            daemon=True,
        )
        worker.thread = thread
        self._workers[worker] = None
        thread.start()

    def _work(self, worker: _Worker) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                with self._workers_lock:
                    self._workers.pop(worker, None)
                    if self._broken is None:
                        self._broken = exc
                self._fail_queued()
                return
        get, run, idle = self._queue.get, self.ledger.run, self._idle.put
        while True:
            task = get()
            if task is None:
                self._queue.put(None)  # wake the next worker too
                with self._workers_lock:
                    self._workers.pop(worker, None)
                return
            worker.task = task
            try:
                run(task, worker)
            except BaseException as exc:
                # Already reported, unless taskkit itself failed: never lose a task.
                self.ledger.fail_now(task, exc)
            # Not kept while this thread waits for the next task: the caller may have
            # dropped the result, and expects it freed (as concurrent.futures does); nor
            # the settled task, which would keep its function alive.
            worker.task = task = None
            if worker.abandoned:
                return  # a replacement took this thread's place when it overran
            # Idle again.  The caller woken by the result cannot take the GIL before
            # this thread blocks in get(), so its next submit finds this token.
            idle(None)

    def _fail_queued(self) -> None:
        # A failing initializer makes the pool unusable, as in concurrent.futures:
        # fail what is queued (other threads may be taking tasks meanwhile: fine).
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                self.ledger.fail_now(task, self._broken_error())
            else:
                self._queue.put(None)  # shutdown's sentinel: leave it for the threads
                return

    def _is_broken(self) -> bool:
        # A method, not an inline test: another thread may set _broken between two reads.
        return self._broken is not None

    def _broken_error(self) -> InitializerFailed:
        error = InitializerFailed(self.name, repr(self._broken))
        error.__cause__ = self._broken
        return error

    def stop_overrunning(self, task: _Task) -> None:
        with self._workers_lock:
            for worker in self._workers:
                if worker.task is task:
                    worker.abandoned = True
                    self._workers.pop(worker, None)
                    if not self._stopping:
                        self._start_worker()
                    return

    def worker_count(self) -> int:
        return len(self._workers)

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        with self._workers_lock:
            self._stopping = True
            workers = list(self._workers)
        self._queue.put(None)
        if wait or kill:
            # Otherwise stay listed: as in concurrent.futures, the interpreter's exit
            # waits for work that shutdown(wait=False) left running or queued.
            _live_backends.discard(self)
        if wait and not kill:
            current = threading.current_thread()
            for worker in workers:
                if worker.thread is not None and worker.thread is not current:
                    worker.thread.join()


backend_class = ThreadExecutor
