"""The tasks of a controlled run, and the record of one decision (see ``_runtime``).

A ``Task`` is one callable under control: a plain function on a thread, or a coroutine on
the run's event loop.  Every part of the runtime reads and updates its fields: the
switchboard its state and baton, the thread and coroutine parts how it starts and ends,
the recorder what it does next (``op``, ``where``, ``footprint``).  A ``Step`` is one
decision of the strategy, as the search and the reports see it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from .._core._compat import allocate_lock
from ._tracing import ANY_WRITE, FootprintT

if TYPE_CHECKING:
    import threading

    from . import _workers
    from ._coroutines import Pending
    from ._runtime import Run

__all__ = ["Abort", "Step", "Strategy", "Task", "TaskState", "Where", "default_choice"]

Where = tuple[str, int, str]  # filename, line, function


class Abort(BaseException):
    """Raised inside a task to unwind it when the run has failed elsewhere."""


class TaskState:
    RUNNABLE = 0
    BLOCKED = 1
    DONE = 2


@dataclass(slots=True)
class Step:
    """One decision: ``task`` runs next and performs ``op`` at ``where``."""

    index: int
    task: int
    op: str
    where: Where | None
    footprint: FootprintT
    preempted: bool  # the previous task could have continued
    previous: int | None


class Strategy(Protocol):
    """Decides which enabled task runs at each switch point."""

    def choose(self, run: Run, current: Task | None, enabled: list[Task], default: Task) -> Task:
        """Return one of ``enabled``; ``default`` is what a run without preemptions would pick."""


class Task:
    """One callable under control: a plain function on a thread, or a coroutine."""

    __slots__ = (
        "aborted",
        "aio",
        "baton",
        "deadline",
        "error",
        "fn",
        "footprint",
        "index",
        "is_coro",
        "label",
        "name",
        "op",
        "ready",
        "started",
        "state",
        "stuck",
        "thread",
        "timed_out",
        "top",
        "wait",
        "waiting_on",
        "what",
        "where",
        "worker",
    )

    def __init__(
        self, index: int, fn: Callable[..., Any], aio: asyncio.Task[Any] | None = None
    ) -> None:
        self.index = index
        self.name = f"T{index}"
        self.fn = fn
        self.is_coro = aio is not None or inspect.iscoroutinefunction(fn)
        self.top = aio is None  # one of the callables given, not a task the code created
        self.aio = aio  # the asyncio.Task of a coroutine task, once started
        self.wait: Pending | None = None  # what a coroutine task awaits through await_until
        self.label: str | None = None  # the op of a coroutine task's next step, if it said
        self.waiting_on: object = None  # the primitive a blocked thread task waits for
        self.thread: threading.Thread | None = None
        self.worker: _workers.Worker | None = None  # the thread of a task given to the run
        self.baton = allocate_lock()
        self.baton.acquire()
        self.state = TaskState.RUNNABLE
        self.ready: Callable[[], object] | None = None
        self.what: object = ""
        self.deadline: float | None = None
        self.timed_out = False
        self.op = "start"
        self.where: Where | None = None
        self.footprint: FootprintT = ANY_WRITE if self.is_coro else None
        self.error: BaseException | None = None
        self.stuck = False
        self.started = False
        self.aborted = False  # told to unwind: cleanup code runs on without switch points

    def __repr__(self) -> str:
        return f"<task {self.name} {getattr(self.fn, '__qualname__', self.fn)}>"


def default_choice(current: Task | None, enabled: list[Task], ntasks: int) -> Task:
    """Keep running ``current`` if it can; otherwise the next enabled task in round-robin order."""
    if current is not None and current in enabled:
        return current
    start = current.index + 1 if current is not None else 0
    return min(enabled, key=lambda t: (t.index - start) % ntasks)


def where_of(frame: FrameType) -> Where:
    """The source line ``frame`` is at."""
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def short(where: Where | None) -> str:
    """``file.py:line`` of ``where``, for a message."""
    if where is None:
        return "?"
    filename, line, _ = where
    return f"{filename.rsplit('/', 1)[-1]}:{line}"
