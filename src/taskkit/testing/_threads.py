"""The thread tasks of a controlled run: how each starts, runs traced, and ends.

The plain callables given to the run each run on a reused worker thread (``_workers``) that
``start`` primes: it runs up to its first switch point and parks on its own baton, so every
task's next operation is known before the first decision.  A thread that a task starts
(``Thread.start()``, patched) joins the run through ``spawn``: it starts for real, but parks
before its ``run()`` until the strategy first picks it.  Either way the task runs with a
``Tracer`` as its trace and profile functions, and when it ends it hands the baton on.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
import threading
from typing import TYPE_CHECKING

from .._core._compat import allocate_lock
from . import _patches, _workers
from ._task import Abort, Task, TaskState
from ._tracer import Tracer

if TYPE_CHECKING:
    from ._runtime import Run

__all__ = ["ThreadTasks"]

_get_ident = threading.get_ident


class ThreadTasks:
    """The threads of a run's plain tasks, given or started by the code under test."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.by_ident: dict[int, Task] = {}  # the thread's ident -> the task it runs
        # threads the tasks start become tasks too (Thread.start, patched)
        self.spawned: dict[threading.Thread, Task] = {}
        self.passthrough = False  # a task runs threading's own start(): not controlled
        self.thread_order = 0  # threads made by tasks so far (see _patches._thread_hash)

    def start(self) -> None:
        """Start each plain task given to the run, up to its first switch point."""
        board = self.run.board
        board.priming = True
        try:
            for task in list(board.tasks):  # threads they start on the way join later
                if task.is_coro:
                    continue
                worker = task.worker = _workers.take(task.index)
                task.thread = worker.thread
                board.current = task
                worker.run(functools.partial(self._thread_main, task))
                if not board.wait_main():
                    break  # the watchdog gave up on it before its first switch point
        finally:
            board.priming = False
        for task in board.tasks:
            if not task.is_coro and task.thread is None:
                task.state = TaskState.DONE  # never started: it has nothing to unwind

    def _thread_main(self, task: Task) -> None:
        """On a worker's thread: run task ``task`` as a new thread would."""
        self.by_ident[_get_ident()] = task
        worker = task.worker
        assert worker is not None
        tracer = worker.tracer
        if tracer is None:
            tracer = worker.tracer = Tracer(self.run, task)
        else:
            tracer.reuse(self.run, task)
        # a new thread starts with an empty context
        contextvars.Context().run(self._run, task, self.run.args, tracer)

    def _run(self, task: Task, args: tuple[object, ...], tracer: Tracer | None = None) -> None:
        """Run thread task ``task`` to its end, traced, then hand the baton on."""
        run = self.run  # a task the watchdog gave up on may end after the run
        if tracer is None:
            tracer = Tracer(run, task)
        sys.settrace(tracer.global_trace)
        sys.setprofile(tracer.profile)
        try:
            result = task.fn(*args)
            if inspect.isawaitable(result):
                _reject_awaitable(task, result)
        except Abort:
            pass
        except BaseException as error:
            task.error = error
        finally:
            sys.setprofile(None)
            sys.settrace(None)
        if task.worker is not None:
            # its thread's threading.local data goes, as at a thread's end (what that runs,
            # finalizers, has no switch points)
            task.aborted = True
            task.worker.scrub()
        task.state = TaskState.DONE
        if task.error is not None:
            run.outcome.fail(task.error, task)
        if task.stuck:
            return
        board = run.board
        if board.priming:
            board.main_baton.release()
            return
        board.dispatch(board.decide(task))

    def spawn(self, thread: threading.Thread) -> None:
        """Start ``thread`` as a task of this run: ``Thread.start()`` called by a task.

        The thread starts for real (so ``threading`` knows it), but parks before its
        ``run()``, as a task whose first step the strategy schedules like any other.
        """
        board = self.run.board
        task = Task(len(board.tasks), thread.run)
        task.top, task.thread, task.footprint = False, thread, None
        board.tasks.append(task)
        self.spawned[thread] = task
        parked = allocate_lock()
        parked.acquire()

        def run() -> None:
            self.by_ident[_get_ident()] = task
            parked.release()
            task.baton.acquire()  # until the strategy first picks this task
            if board.aborting:
                task.state = TaskState.DONE
                board.dispatch(board.decide(task))
                return
            self._run(task, ())

        thread.run = run  # type: ignore[method-assign]
        self.run.coroutines.trace_rest_of_step()
        self.passthrough = True
        try:
            _patches.start_thread(thread)
            parked.acquire()
        finally:
            self.passthrough = False

    def release(self) -> None:
        """The run is over: give its workers back, and join the threads the code started."""
        for task in self.run.board.tasks:
            if task.stuck:
                continue  # its thread is blocked for good: never reused, never joined
            if task.worker is not None:
                _workers.give_back(task.worker)
            elif task.thread is not None:
                task.thread.join()


def _reject_awaitable(task: Task, result: object) -> None:
    close = getattr(result, "close", None)
    if inspect.iscoroutine(result) and close is not None:
        close()  # never awaited: closed, so Python does not warn about it later
    name = getattr(task.fn, "__qualname__", repr(task.fn))
    raise TypeError(
        f"task {task.name} ({name}) is a plain function that returned {result!r} without "
        "awaiting it; pass the async def function itself (or an async def wrapper) as the task"
    )
