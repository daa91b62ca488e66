"""The trace and profile functions that find the switch points of a thread task's code.

A ``Tracer`` watches one task's thread: opcode events of traced code whose operation may be
visible to another task (a global, an attribute, an item: see ``_tracing``), and calls into
untraced code or C functions.  At each it reports the operation and its footprint to the
switchboard (``Switchboard.switch_point``), which lets the strategy pick who runs next.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import _patches
from ._task import Task, where_of
from ._tracing import (
    ANY_WRITE,
    CALL_TYPE,
    CALLEE_GLOBAL,
    CONTAINERS,
    DATA_TYPES,
    ITEMS,
    ITERATE,
    ITERATE_RANGE,
    LOAD_ATTR,
    LOAD_CELL,
    LOAD_GLOBAL,
    READ_ITEM,
    STORE_ATTR,
    STORE_CELL,
    STORE_GLOBAL,
    TRACED,
    TRUTH_GLOBAL,
    TRUTH_LOCAL,
    UNTRACED,
    WRITE_ITEM,
    FootprintT,
    c_call_footprint,
    call_sites,
    call_type_footprint,
    classify_frame,
    describe_callable,
    exact_read,
    holds_no_items,
    note_rebound,
    rebound,
    visible_ops,
)

if TYPE_CHECKING:
    from ._runtime import Run

__all__ = ["Tracer", "quietly"]

_MISSING = object()


def quietly(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` with the calling thread's tracer and profiler off.

    A hook (a lock's, a checkpoint) is called by traced code, and the scheduler's own code
    it runs would otherwise make a profiler event of every call (the tracer's own switch
    points need none of this: no events fire inside a trace function).
    """
    trace = sys.gettrace()
    if trace is None:
        return fn(*args)
    profile = sys.getprofile()
    sys.settrace(None)
    sys.setprofile(None)
    try:
        return fn(*args)
    finally:
        sys.settrace(trace)
        sys.setprofile(profile)


class Tracer:
    """The per-thread trace and profile functions of one thread task."""

    def __init__(self, run: Run, task: Task) -> None:
        self.locals: dict[Any, Callable[..., Any]] = {}
        self.reuse(run, task)

    def reuse(self, run: Run, task: Task) -> None:
        """Trace ``task`` of ``run`` (the same thread's task of another execution)."""
        self.run, self.task = run, task
        # bound once: every visible operation of the task calls them
        self.switch_point = run.board.switch_point
        self.record = run.record
        if len(self.locals) > 4096:
            self.locals.clear()

    def global_trace(self, frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        local = self.locals.get(code)
        if local is None:
            if classify_frame(frame) != TRACED:
                return None
            local = self._local_for(visible_ops(code))
            self.locals[code] = local
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        return local

    def _local_for(self, table: dict[int, Any]) -> Callable[..., Any]:
        visible = self.visible

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "opcode":
                entry = table.get(frame.f_lasti)
                if entry is not None:
                    visible(frame, entry)
            return local

        return local

    def visible(self, frame: FrameType, entry: tuple[int, str, str, str | None]) -> None:
        kind, name, text, guard = entry
        fp: FootprintT
        if kind in (LOAD_GLOBAL, CALLEE_GLOBAL):
            g = frame.f_globals
            if not rebound(g, name):
                if kind == CALLEE_GLOBAL:
                    return
                value = g.get(name, _MISSING)
                if value is _MISSING:
                    value = frame.f_builtins.get(name, _MISSING)
                if type(value) not in DATA_TYPES:
                    return  # a function, class, lock or container no code rebinds
            fp = (("g", id(g), name), False)
        elif kind == STORE_GLOBAL:
            fp = (("g", id(frame.f_globals), name), True)
        elif kind == LOAD_ATTR:
            if guard is not None and guard.startswith("."):
                fp = self._attribute_read(frame, guard[1:], name)
                steps = self.record.steps
                before = len(steps)
                self.switch_point(self.task, text, where_of(frame), fp)
                if len(steps) == before + 1:
                    return  # this task went on at once: the attribute holds what it held
                # Another task may have rebound the attribute while this one waited here:
                # the read is then of what it holds now.
                now = self._attribute_read(frame, guard[1:], name)
                if now != fp:
                    self.run.amend(self.task, now)
                return
            else:
                module = frame.f_globals.get(guard) if guard is not None else None
                if isinstance(module, type(sys)):
                    if not rebound(vars(module), name):
                        return  # module.function, module.CONSTANT: nothing rebinds it
                    fp = (("g", id(vars(module)), name), False)
                else:
                    fp = (("a", name), False)
        elif kind == STORE_ATTR:
            module = frame.f_globals.get(guard) if guard is not None else None
            if isinstance(module, type(sys)):
                note_rebound(name)
                fp = (("g", id(vars(module)), name), True)
            else:
                fp = (("a", name), True)
        elif kind in (READ_ITEM, ITERATE):
            fp = (ITEMS, False)
        elif kind == ITERATE_RANGE:
            found = frame.f_globals.get("range", _MISSING)
            if found is _MISSING:
                found = frame.f_builtins.get("range", _MISSING)
            if found is range:
                return  # a range iterator, local to the frame: nothing shared
            fp = (ITEMS, False)
        elif kind == WRITE_ITEM:
            fp = (ITEMS, True)
        elif kind == LOAD_CELL:
            if type(frame.f_locals.get(name)) not in DATA_TYPES:
                return  # as for globals: a lock, a function, a container is not the access
            fp = (("c", name), False)
        elif kind == STORE_CELL:
            fp = (("c", name), True)
        elif kind in (TRUTH_LOCAL, TRUTH_GLOBAL):
            scope = frame.f_locals if kind == TRUTH_LOCAL else frame.f_globals
            if type(scope.get(name)) not in CONTAINERS:
                return
            fp = (ITEMS, False)
        elif kind == CALL_TYPE:
            value = frame.f_globals.get(name, _MISSING)
            if value is _MISSING:
                value = frame.f_builtins.get(name, _MISSING)
            found = call_type_footprint(value)
            if found is False:
                return
            fp = found  # type: ignore[assignment]
        else:  # pragma: no cover - every kind is handled above
            fp = ANY_WRITE
        self.switch_point(self.task, text, where_of(frame), fp)

    def _attribute_read(self, frame: FrameType, local: str, name: str) -> FootprintT:
        """The footprint of reading ``name`` of the object in local variable ``local``.

        When the value is in the object's ``__dict__`` (no descriptor can intervene), what
        it is decides what the read may observe: a value with no items of its own, or the
        items of that one container.  Otherwise any container's.
        """
        key = ("a", name)
        owner = frame.f_locals.get(local, _MISSING)
        namespace = getattr(owner, "__dict__", None)
        if type(namespace) is not dict or name not in namespace:
            return (key, False)
        for klass in type(owner).__mro__:
            if name in klass.__dict__:
                return (key, False)  # a class attribute or descriptor of the same name
        value = namespace[name]
        if holds_no_items(value):
            return (exact_read(key), False)
        if type(value) in CONTAINERS:
            return (frozenset({exact_read(key), ("item", self.record.key(value)[1])}), False)
        return (key, False)

    def clocks_only(self, frame: FrameType, event: str, arg: Any) -> None:
        """The profiler of a coroutine's step with no thread task alive: only what makes a
        report incomplete is watched (a real clock reached through an alias)."""
        if event == "c_call" and arg in _patches.VIRTUAL and classify_frame(frame) == TRACED:
            self.run.uncontrolled(f"called the real time.{arg.__name__}() through an alias")

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            if classify_frame(frame) != TRACED:
                return
            if arg in _patches.VIRTUAL:
                # the time module's own sleep or clock, reached through a name the run did not
                # rebind (a default argument, an attribute): it runs on real time
                self.run.uncontrolled(f"called the real time.{arg.__name__}() through an alias")
            fp = c_call_footprint(arg)
            if fp is False:
                return
            if fp[0] == ITEMS:  # type: ignore[index]
                # a method of a container: its items, not just any container's
                owner = arg.__self__
                fp = (("item", self.record.key(owner)[1]), fp[1])  # type: ignore[index]
            self.switch_point(
                self.task,
                f"call {describe_callable(arg)}",
                where_of(frame),
                fp,  # type: ignore[arg-type]
            )
        elif event == "call":
            code = frame.f_code
            if classify_frame(frame) != UNTRACED:
                return  # traced code has its own switch points; taskkit reports its own
            back = frame.f_back
            if back is None or classify_frame(back) != TRACED:
                return
            if back.f_lasti not in call_sites(back.f_code):
                return  # not an explicit call: a property, a finalizer, a weakref callback
            self.switch_point(
                self.task,
                f"call {getattr(code, 'co_qualname', code.co_name)}",
                where_of(back),
                ANY_WRITE,
            )
