"""What a controlled run records: its steps, and the names and footprints they speak of.

The ``Recorder`` of a run keeps the decisions (``steps``, ``deviations``, ``preemptions``)
that the search and ``replay()`` work from, numbers the objects footprints name, finds the
source line and footprint of a hook's call, names primitives by the expression the code
reached them by (for reports), and collects the facts a report must state (``notes``) and
what the run could neither see nor repeat (``unseen``).
"""

from __future__ import annotations

import re
import threading
import types
from types import FrameType

from .._core._compat import getframe
from ._task import Step, Task, Where, where_of
from ._tracing import ANY_WRITE, SELF, TRACED, FootprintT, classify_frame

__all__ = ["Recorder"]

_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


class Recorder:
    """The record of one controlled run."""

    def __init__(self, naming: bool) -> None:
        self.steps: list[Step] = []
        self.deviations: list[tuple[int, int | None, int]] = []
        self.preemptions = 0
        # Name primitives by the expression code reaches them by (for reports): a search
        # leaves it to the one execution it reports.
        self.naming = naming
        self.names: dict[int, str] = {}  # id(primitive) -> the expression code reached it by
        # Objects in footprints are numbered in the order the run first meets them, not by
        # address: the search compares footprints of different executions (sleep sets), and
        # an execution that repeats the decisions meets the same objects in the same order.
        self.keys: dict[int, tuple[str, int]] = {}
        self.kept: list[object] = []  # keeps numbered objects alive, so no address is reused
        # What the report must say: facts about every execution (``notes``), and things the
        # run could neither see nor repeat, each of which makes a search incomplete.
        self.notes: dict[str, None] = {}
        self.unseen: dict[str, None] = {}

    def step(self, current: Task | None, enabled: list[Task], default: Task, nxt: Task) -> None:
        """Record the decision that ``nxt`` runs next (``default`` was the plain choice)."""
        steps = self.steps
        previous = current.index if current is not None else None
        preempted = current is not None and nxt is not current and current in enabled
        if preempted:
            self.preemptions += 1
        if nxt is not default:
            self.deviations.append((len(steps), previous, nxt.index))
        steps.append(
            Step(len(steps), nxt.index, nxt.op, nxt.where, nxt.footprint, preempted, previous)
        )

    def amend(self, task: Task, fp: FootprintT) -> bool:
        """``task`` was resumed for another operation than its switch point announced
        (another task changed what it is about to read): correct the footprint of its
        pending operation, and of the step that resumed it if that is the last one (True)."""
        task.footprint = fp
        if self.steps and self.steps[-1].task == task.index:
            self.steps[-1].footprint = fp
            return True
        return False

    def key(self, obj: object) -> tuple[str, int]:
        """The number of ``obj`` in footprints: the order in which the run first met it."""
        key = self.keys.get(id(obj))
        if key is None:
            key = self.keys[id(obj)] = ("o", len(self.kept))
            self.kept.append(obj)
        return key

    def forget(self) -> None:
        """Let go of the numbered objects (the run is over)."""
        self.keys.clear()
        self.kept.clear()

    def site(self, obj: object, write: bool = True) -> tuple[Where | None, FootprintT]:
        """Find where a hook was called from and the footprint of the operation on ``obj``.

        The footprint names ``obj`` only when the hook's caller is traced code: then
        whatever runs after the operation is covered by switch points of its own.  A call
        from untraced code (``Event.wait`` in the standard library) may touch anything.
        """
        frame, precise = self._traced_frame()
        where = where_of(frame) if frame is not None else None
        if self.naming and obj is not None and frame is not None and id(obj) not in self.names:
            name = _name_in(frame, obj)
            if name is not None:
                self.names[id(obj)] = name
        if precise and obj is not None:
            lock = getattr(obj, "_lock", None) if isinstance(obj, threading.Condition) else None
            if lock is not None:
                # a condition's wait gives up and takes back its lock within its own step
                return where, (frozenset({self.key(obj), self.key(lock)}), write)
            return where, (self.key(obj), write)
        return where, ANY_WRITE

    def traced_site(self) -> tuple[Where | None, bool]:
        """Return the innermost traced source line, and whether it called taskkit directly."""
        frame, precise = self._traced_frame()
        return (where_of(frame) if frame is not None else None), precise

    def _traced_frame(self) -> tuple[FrameType | None, bool]:
        frame: FrameType | None = getframe(2)
        while frame is not None and classify_frame(frame) == SELF:
            frame = frame.f_back
        if frame is None:
            return None, False
        precise = classify_frame(frame) == TRACED
        while frame is not None and classify_frame(frame) != TRACED:
            frame = frame.f_back
        return frame, precise

    def named(self, op: str, obj: object) -> str:
        """``op`` on ``obj``, by the name the code reached ``obj`` by if it is known."""
        name = self.names.get(id(obj)) if obj is not None else None
        return op if name is None else f"{op} on {name}"

    def describe(self, what: object, obj: object) -> str:
        """Describe a wait for a report: the primitive by the name the code reached it by
        (``account.lock``), as it is now, with no addresses."""
        text = str(what)
        name = self.names.get(id(obj)) if obj is not None else None
        if name is not None:
            shown = repr(obj)
            text = text.replace(shown, f"{name} {shown}") if shown in text else f"{text} ({name})"
        return _ADDRESS.sub("", text)


def _name_in(frame: FrameType, obj: object) -> str | None:
    """The expression ``frame``'s code reaches ``obj`` by: ``lock``, ``self.lock``, ``s['q']``."""
    scopes = (frame.f_locals, frame.f_globals)
    for scope in scopes:
        for name, value in scope.items():
            if value is obj:
                return name
    for scope in scopes:
        for name, value in list(scope.items()):
            if isinstance(value, dict):
                for key, item in list(value.items())[:64]:
                    if item is obj:
                        return f"{name}[{key!r}]"
            elif not isinstance(value, (type, types.ModuleType, types.FunctionType)):
                attributes = getattr(value, "__dict__", None)
                if isinstance(attributes, dict):
                    for attr, item in attributes.items():
                        if item is obj:
                            return f"{name}.{attr}"
    return None
