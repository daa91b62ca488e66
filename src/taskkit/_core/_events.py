"""Task events: what happened to each task, as it happens, for metrics and tracing.

``ex.add_listener(fn)`` makes the executor call ``fn(event)`` with a ``TaskEvent`` at
every change of a task's state.  The ledger reports each change once (its
``transition`` is ``Listeners.emit``); this module turns it into an event and hands it
out::

    ledger.transition(task, kind, worker, error)      only while someone listens
        │
        ▼ TaskEvent(kind, task name, number, backend, worker, attempt, calls, error, time)
    Listeners.emit ──► each listener, in the order they were added
                       (an exception in one is logged under ``taskkit.events``; the
                        task and the other listeners go on)

Every task that is submitted while a listener is added gets ``"submitted"`` first and
exactly one *terminal* event last: ``"succeeded"``, ``"failed"``, ``"cancelled"``,
``"timed out"`` or ``"worker crashed"``.  Between them come ``"started"`` (once per
attempt, where the backend runs the task: not for a task cancelled while it waited)
and ``"retried"`` (an attempt failed and the task runs again).  A map sends its calls in
chunks; each chunk is one task whose ``calls`` says how many calls it stands for.

Listeners are called synchronously, in whichever thread made the change (a worker
thread, the process backend's manager thread, an event loop), without taskkit's locks
held: keep them quick and never block in one.  With no listener the ledger skips all of
this after one attribute read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_type_hints

if TYPE_CHECKING:
    from ._ledger import Task


def worker_key(worker: object) -> int | str | None:
    """How events and statistics name a worker: a pid, or the name of a worker's thread."""
    if isinstance(worker, (int, str)):
        return worker
    name = getattr(getattr(worker, "thread", None), "name", None)
    return name if isinstance(name, str) else None


__all__ = ["TERMINAL", "EventKind", "Listener", "Listeners", "TaskEvent", "worker_key"]

EventKind = Literal[
    "submitted",
    "started",
    "retried",
    "succeeded",
    "failed",
    "cancelled",
    "timed out",
    "worker crashed",
]
EventKind.__module__ = "taskkit"  # type: ignore[misc]  # public as taskkit.EventKind

#: The kinds that end a task: each task gets exactly one of them, last.
TERMINAL: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "timed out", "worker crashed"}
)

_log = logging.getLogger("taskkit.events")


@dataclass(frozen=True)
class TaskEvent:
    """One change of one task's state, handed to the listeners of ``ex.add_listener``.

    Attributes:
        kind: what happened (see ``EventKind``).
        task: the task's name, as in errors: ``options(name=...)`` or ``fn#number``.
        number: the task's number, unique in this process (tasks are numbered as
            they are submitted); the key to follow one task through its events.
        backend: the executor's backend name.
        worker: where the attempt runs, for ``"started"``: a worker process's pid
            (process backend), a worker thread's name (thread backend), else ``None``.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        calls: how many calls the task stands for: 1, or a map chunk's size.
        error: the exception, for ``"failed"``, ``"timed out"``, ``"worker crashed"``
            and ``"retried"`` (the error of the attempt that will be run again).
        time: when it happened, ``time.time()`` (seconds since the epoch).
    """

    kind: EventKind
    task: str
    number: int
    backend: str
    worker: int | str | None
    attempt: int
    calls: int
    error: BaseException | None
    time: float

    @property
    def terminal(self) -> bool:
        """True for the one event that ends the task."""
        return self.kind in TERMINAL


# Public as taskkit.TaskEvent (set once decorated), its annotations resolved first, here,
# where their names are (typing.get_type_hints would look for them in taskkit).
TaskEvent.__annotations__ = get_type_hints(TaskEvent)
TaskEvent.__module__ = "taskkit"

#: What ``add_listener`` takes: a callable given each event.
Listener = Callable[[TaskEvent], object]


class Listeners:
    """The listeners of one executor, and the switch that tells its ledger to report."""

    __slots__ = ("_backend", "_facts", "_listeners", "_lock", "_on_change")

    def __init__(
        self,
        backend: str,
        on_change: Callable[[bool], None],
        facts: Callable[[Task], tuple[int, int, int]],
    ) -> None:
        self._backend = backend
        self._facts = facts  # a task's number, attempt (0 first) and weight
        self._listeners: tuple[Listener, ...] = ()  # replaced, never mutated: emit reads it bare
        self._lock = threading.Lock()
        self._on_change = on_change

    def add(self, listener: Listener) -> None:
        if not callable(listener):
            raise TypeError(f"a listener must be callable, got {listener!r}")
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self._on_change(True)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            kept = list(self._listeners)
            try:
                kept.remove(listener)
            except ValueError:
                raise ValueError(f"{listener!r} is not a listener of this executor") from None
            self._listeners = tuple(kept)
            self._on_change(bool(kept))

    def emit(
        self,
        task: Task,
        kind: EventKind,
        worker: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Hand the listeners one ``TaskEvent``: the ledger's ``transition`` (see there)."""
        listeners = self._listeners
        if not listeners:
            return
        number, attempt, calls = self._facts(task)
        event = TaskEvent(
            kind,
            task.name,
            number,
            self._backend,
            worker_key(worker),
            attempt + 1,
            calls,
            error,
            time.time(),
        )
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("listener %r failed on %s event of %s", listener, kind, event.task)
