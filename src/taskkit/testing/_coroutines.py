"""The coroutine tasks of a controlled run: asyncio tasks on the run's own loop, stepped by main.

An ``async def`` task, and every asyncio task the code under test creates (``adopt``), runs
on ``_asyncio.ControlledLoop``.  When the strategy picks one, main steps it (``step_all``):
the coroutine runs up to its next ``await`` that suspends it, and what it awaits decides when
it is enabled again (``Pending``, an ``await_until``; otherwise the loop's ready handles).
While thread tasks are alive a step is traced like a thread task, whose switch points hand
over only to thread tasks: the coroutine holds the loop, as the code between two awaits does
for real.  ``asyncio.run()`` in a thread task runs its coroutine as one more such task.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._core._compat import getframe
from . import _asyncio
from ._asyncio import ControlledLoop, where_awaiting
from ._task import Abort, Task, TaskState, Where, where_of
from ._tracer import Tracer
from ._tracing import ANY_WRITE, TRACED, classify, classify_frame

if TYPE_CHECKING:
    from ._runtime import Run

__all__ = ["CoroutineTasks", "Pending", "Wait", "Yield"]


class Yield:
    """``await checkpoint()`` / ``aswitch`` in a coroutine task: let the scheduler choose."""

    __slots__ = ("op", "run")

    def __init__(self, run: Run, op: str) -> None:
        self.run, self.op = run, op

    def __await__(self) -> Generator[Any, Any, None]:
        task = self.run.caller()
        if task is not None:
            task.label = self.op
        yield  # a bare yield: asyncio steps the task again at once, as sleep(0) does


@dataclass(slots=True)
class Pending:
    """A coroutine task's ``await_until``: the future it sleeps on and when it may wake."""

    future: asyncio.Future[bool]
    ready: Callable[[], object]
    what: object
    deadline: float | None


class Wait:
    """``await_until`` in a coroutine task: sleep on a future the scheduler resolves."""

    __slots__ = ("ready", "run", "timeout", "what")

    def __init__(
        self, run: Run, ready: Callable[[], object], what: object, timeout: float | None
    ) -> None:
        self.run, self.ready, self.what, self.timeout = run, ready, what, timeout

    def __await__(self) -> Generator[Any, Any, bool]:
        run = self.run
        task = run.caller()
        if task is None or task.aio is None:
            raise RuntimeError("await_until() is for coroutine tasks of a controlled run")
        if self.timeout is not None and self.timeout <= 0:
            task.label = f"poll {self.what}"
            yield
            return bool(self.ready())
        future: asyncio.Future[bool] = run.coroutines.loop.create_future()
        deadline = None if self.timeout is None else run.now() + self.timeout
        task.wait = Pending(future, self.ready, self.what, deadline)
        try:
            return (yield from future.__await__())
        finally:
            task.wait = None


class CoroutineTasks:
    """The coroutine tasks of a run and the loop they run on."""

    def __init__(self, run: Run) -> None:
        self.run = run
        # async def tasks run as asyncio tasks on the controlled loop (see _asyncio)
        self.loop: ControlledLoop = _asyncio.loop()
        self.creating = False  # the run itself is creating a task's asyncio.Task
        self.light: Tracer | None = None  # a coroutine's step watched for clocks only

    def begin(self) -> None:
        """Make the loop the run's: its clock, and the asyncio tasks created on it."""
        self.loop.reset(self.run.now, self.adopt)
        self.loop.on_own_callback = self._loop_callback

    def step_all(self, task: Task | None) -> None:
        """Main thread: run coroutine tasks until a thread task or the end is chosen."""
        board = self.run.board
        while task is not None:
            if board.aborting:
                self.close()
            else:
                board.stepping = task
                try:
                    self._step(task)
                finally:
                    board.stepping = None
                self._after_step(task)
            nxt = board.decide(task)
            if nxt is None:
                board.finished = True
                return
            if not nxt.is_coro:
                nxt.baton.release()
                return
            task = nxt

    def _step(self, task: Task) -> None:
        """Run one step of coroutine ``task``: up to its next ``await`` that suspends it."""
        loop = self.loop
        if task.aio is None:
            coro = task.fn(*self.run.args)
            self.creating = True
            try:
                task.aio = loop.create_task(coro)
            finally:
                self.creating = False
        elif task.wait is not None and not task.wait.future.done():
            task.wait.future.set_result(not task.timed_out)
        task.timed_out, task.deadline = False, None
        # Traced like a thread task: while thread tasks are alive, they may run between the
        # coroutine's own accesses (its switch points hand over only to thread tasks).  With
        # none alive those switch points do nothing, so only calls of the real clocks are
        # watched, until the step starts a thread (see trace_rest_of_step).
        tracer = Tracer(self.run, task)
        previous = sys.gettrace(), sys.getprofile()
        if self.run.board.threads_alive():
            sys.settrace(tracer.global_trace)
            sys.setprofile(tracer.profile)
        else:
            self.light = tracer
            sys.setprofile(tracer.clocks_only)
        try:
            loop.step(task.aio)
        finally:
            self.light = None
            sys.setprofile(previous[1])
            sys.settrace(previous[0])

    def _after_step(self, task: Task) -> None:
        """Record what coroutine ``task`` does next, or how it ended."""
        aio = task.aio
        assert aio is not None
        task.where, task.footprint = _coro_where(aio.get_coro()), ANY_WRITE
        if aio.done():
            task.state = TaskState.DONE
            error = None if aio.cancelled() else aio.exception()
            if error is not None and task.top and not isinstance(error, Abort):
                task.error = error
                self.run.outcome.fail(error, task)
            return
        task.state = TaskState.BLOCKED
        wait, label, task.label = task.wait, task.label, None
        if wait is not None and not wait.future.done():
            task.ready, task.what, task.deadline = wait.ready, wait.what, wait.deadline
            task.op = f"wait: {wait.what}"
            return
        # waits on an asyncio future, or yielded: enabled once asyncio made it a ready handle
        awaiting = where_awaiting(aio)
        task.ready = functools.partial(self.loop.has_step, aio)
        task.what = f"asyncio: {awaiting}"
        task.op = label or f"await {awaiting}"

    def trace_rest_of_step(self) -> None:
        """A coroutine's step watched for clocks only started a thread: trace the rest of the
        step, the frames it is in included, as a step beside thread tasks is."""
        tracer = self.light
        if tracer is None:
            return
        self.light = None
        frame: FrameType | None = getframe(1)
        while frame is not None:
            if classify_frame(frame) == TRACED:
                local = tracer.global_trace(frame, "call", None)
                if local is not None:
                    frame.f_trace = local
            frame = frame.f_back
        sys.settrace(tracer.global_trace)
        sys.setprofile(tracer.profile)

    def _loop_callback(self, callback: object) -> None:
        """A plain callback runs at once, in asyncio's order: fine for asyncio's bookkeeping,
        but the order of one of the code's own against the tasks is not searched."""
        fn: Any = callback
        while isinstance(fn, functools.partial):
            fn = fn.func
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None:
            own = classify(code.co_filename) == TRACED
        else:  # a builtin: a future's own method is bookkeeping, list.append is not
            own = not isinstance(getattr(fn, "__self__", None), asyncio.Future)
        if own:
            self.run.record.unseen[
                "a callback of the code's own (loop.call_soon, add_done_callback) ran in "
                "asyncio's order, not in every order against the tasks"
            ] = None

    def adopt(self, aio: asyncio.Task[Any]) -> None:
        """A task the code under test created (create_task, gather ...) joins the run."""
        if self.creating:
            return
        tasks = self.run.board.tasks
        task = Task(len(tasks), aio.get_coro, aio)
        task.state, task.ready = TaskState.BLOCKED, functools.partial(self.loop.has_step, aio)
        task.what = "its start"
        tasks.append(task)

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """``asyncio.run(coro)`` in a plain task: run ``coro`` as an asyncio task of the run.

        The calling task waits for it as for any other task, so what the coroutine does
        between its awaits is interleaved with every task, as the search requires.
        """
        if not inspect.iscoroutine(coro):
            raise ValueError(f"a coroutine was expected, got {coro!r}")
        aio = self.loop.create_task(coro)
        self.run.wait_until(aio.done, "asyncio.run()", aio, None)
        return aio.result()

    def close(self) -> None:
        """Unwind every coroutine task of a failed or finished run."""
        for task in self.run.board.tasks:
            if not task.is_coro or task.state == TaskState.DONE:
                continue
            task.state = TaskState.DONE
            coro = task.aio.get_coro() if task.aio is not None else None
            if coro is not None:
                try:
                    coro.close()
                except BaseException:
                    pass
        self.loop.reset(self.run.now, self.adopt)


def _coro_where(coro: Any) -> Where | None:
    """Return the innermost traced source line a coroutine is suspended at."""
    found: Where | None = None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and classify_frame(frame) == TRACED:
            found = where_of(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found
