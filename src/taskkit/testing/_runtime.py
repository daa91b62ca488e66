"""The controlled runtime: run tasks one at a time and let a strategy pick who runs next.

Data flow of one run::

    Run.execute()  (the caller's thread, "main")
      ├─ patches on (_patches.begin): Condition.wait, time.sleep, ... and _control.hook = run
      ├─ prime: start each thread task; it runs up to its first switch point and parks
      │         on its own baton (a raw lock), so every task's next operation is known
      └─ loop:  wait on the main baton; step coroutine tasks when handed one; watchdog

    a task at a switch point (tracer, profiler, a primitive's hook, checkpoint()):
      record its pending operation -> _decide(): enabled tasks -> strategy.choose()
      -> same task: carry on (no handoff) | a thread task: release its baton, park on mine
                                          | a coroutine: hand the main baton to main

    tasks that join on the way:
      Thread.start() by a task  -> spawn(): the thread starts, parks before run(), a task
      an asyncio task created   -> _adopt(): a coroutine task (async def tasks are asyncio
                                   tasks on _asyncio.ControlledLoop, stepped by main)
      asyncio.run() in a task   -> run_coroutine(): the coroutine is adopted, the caller waits

Exactly one thread holds "the baton" at any time, so task code never runs in parallel and
every decision is recorded in ``Run.steps``.  What a run cannot see or repeat (os.urandom, a
loop of a task's own ...) is recorded in ``Run.unseen``; a search that met any is incomplete.
A failure (a task's exception, a deadlock, a watchdog report) puts the run in *abort* mode:
each remaining task is resumed in turn and raises ``_Abort`` at its switch point, so it
unwinds without running on.  Threads and tasks the code started and left waiting when every
task given has ended are unwound the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import logging
import re
import sys
import threading
import traceback
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from .._core import _control
from .._core._compat import allocate_lock, current_frames, getframe
from .._core._errors import Deadlock, UsageError
from . import _asyncio, _patches, _workers
from ._asyncio import ControlledLoop, where_awaiting
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
    SELF,
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
    classify,
    classify_frame,
    describe_callable,
    exact_read,
    holds_no_items,
    note_rebound,
    rebound,
    visible_ops,
)

__all__ = ["Run", "Step", "Strategy", "TaskState", "default_choice"]

_get_ident = threading.get_ident
_MISSING = object()

Where = tuple[str, int, str]  # filename, line, function


class _Abort(BaseException):
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
        self.wait: _Pending | None = None  # what a coroutine task awaits through await_until
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


class _Yield:
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
class _Pending:
    """A coroutine task's ``await_until``: the future it sleeps on and when it may wake."""

    future: asyncio.Future[bool]
    ready: Callable[[], object]
    what: object
    deadline: float | None


class _Wait:
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
        future: asyncio.Future[bool] = run.loop.create_future()
        deadline = None if self.timeout is None else run.clock + self.timeout
        task.wait = _Pending(future, self.ready, self.what, deadline)
        try:
            return (yield from future.__await__())
        finally:
            task.wait = None


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
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


def _where(frame: FrameType) -> Where:
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


class _Tracer:
    """The per-thread trace and profile functions of one thread task."""

    def __init__(self, run: Run, task: Task) -> None:
        self.run = run
        self.task = task
        self.locals: dict[Any, Callable[..., Any]] = {}

    def reuse(self, run: Run, task: Task) -> None:
        """Trace ``task`` of ``run`` (the same thread's task of another execution)."""
        self.run, self.task = run, task
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
                steps = self.run.steps
                before = len(steps)
                self.run.switch_point(self.task, text, _where(frame), fp)
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
        self.run.switch_point(self.task, text, _where(frame), fp)

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
            return (frozenset({exact_read(key), ("item", self.run._key(value)[1])}), False)
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
                fp = (("item", self.run._key(owner)[1]), fp[1])  # type: ignore[index]
            self.run.switch_point(
                self.task,
                f"call {describe_callable(arg)}",
                _where(frame),
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
            self.run.switch_point(
                self.task,
                f"call {getattr(code, 'co_qualname', code.co_name)}",
                _where(back),
                ANY_WRITE,
            )


class Run:
    """One controlled execution of ``tasks``; installed as ``taskkit._core._control.hook``."""

    def __init__(
        self,
        tasks: Sequence[Callable[..., Any]],
        args: Sequence[object],
        strategy: Strategy,
        *,
        watchdog: float = 2.0,
        max_steps: int = 100_000,
        naming: bool = True,
    ) -> None:
        if not tasks:
            raise ValueError("a controlled run needs at least one task")
        self.tasks = [Task(i, fn) for i, fn in enumerate(tasks)]
        self.args = tuple(args)
        self.strategy = strategy
        self.watchdog = watchdog
        self.max_steps = max_steps
        # Name primitives by the expression code reaches them by (for reports): a search
        # leaves it to the one execution it reports.
        self.naming = naming
        self.steps: list[Step] = []
        self.deviations: list[tuple[int, int | None, int]] = []
        self.preemptions = 0
        self.clock = 0.0
        self.used_timeouts = False
        self.failure: BaseException | None = None
        self.failed_task: Task | None = None
        self.aborting = False
        self.finished = False
        self.priming = False
        self.current: Task | None = None
        self.stepping: Task | None = None
        self.main_next: Task | None = None
        self.main_baton = allocate_lock()
        self.main_baton.acquire()
        self.main_ident = _get_ident()
        self.by_ident: dict[int, Task] = {}
        self.ticks = 0
        self.deciding = False
        self.held: dict[Any, None] = {}  # controllable locks that tasks hold
        # async def tasks run as asyncio tasks on the controlled loop (see _asyncio)
        self.loop: ControlledLoop = _asyncio.loop()
        self.creating = False  # the run itself is creating a task's asyncio.Task
        self.light: _Tracer | None = None  # a coroutine's step watched for clocks only
        # threads the tasks start become tasks too (Thread.start, patched)
        self.spawned: dict[threading.Thread, Task] = {}
        self.passthrough = False  # a task runs threading's own start(): not controlled
        self.thread_order = 0  # threads made by tasks so far (see _patches._thread_hash)
        self.names: dict[int, str] = {}  # id(primitive) -> the expression code reached it by
        # Objects in footprints are numbered in the order the run first meets them, not by
        # address: the search compares footprints of different executions (sleep sets), and
        # an execution that repeats the decisions meets the same objects in the same order.
        self.keys: dict[int, tuple[str, int]] = {}
        self.kept: list[object] = []  # keeps numbered objects alive, so no address is reused
        self.quieted: tuple[logging.Logger, bool] | None = None  # see _abort
        # What the report must say: facts about every execution (``notes``), and things the
        # run could neither see nor repeat, each of which makes a search incomplete.
        self.notes: dict[str, None] = {}
        self.unseen: dict[str, None] = {}

    # -- the hook protocol (taskkit._core._control.Hook) ---------------------------------------

    def controls_caller(self) -> bool:
        if self.passthrough:
            return False
        ident = _get_ident()
        if ident in self.by_ident:
            return True
        return ident == self.main_ident and self.stepping is not None

    def caller(self) -> Task | None:
        """Return the task that is calling, or None for threads outside the run."""
        task = self.by_ident.get(_get_ident())
        if task is not None:
            return task
        if _get_ident() == self.main_ident:
            return self.stepping
        return None

    def switch(self, op: str, obj: object) -> None:
        _quietly(self._switch, op, obj, True)

    def observe(self, op: str, obj: object) -> None:
        _quietly(self._switch, op, obj, False)

    def _switch(self, op: str, obj: object, write: bool) -> None:
        task = self.caller()
        if task is None:
            return
        where, fp = self._site(obj, write)
        self.switch_point(task, self._named(op, obj), where, fp)

    def _named(self, op: str, obj: object) -> str:
        name = self.names.get(id(obj)) if obj is not None else None
        return op if name is None else f"{op} on {name}"

    def wait_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> bool:
        return bool(_quietly(self._wait_until, ready, what, obj, timeout))

    def _wait_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> bool:
        task = self.caller()
        if task is None:
            raise UsageError("wait_until() was called by a thread that is not a task of the run")
        where, fp = self._site(obj)
        if timeout is not None and timeout <= 0:
            self.switch_point(task, f"poll {self.describe(what, obj)}", where, fp)
            return bool(ready())
        task.waiting_on = obj
        return self.block(task, ready, what, timeout, where, fp)

    def aswitch(self, op: str, obj: object) -> _Yield:
        return _Yield(self, op)

    def await_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> _Wait:
        return _Wait(self, ready, what, timeout)

    def uncontrolled(self, what: str) -> None:
        """Record that a task did something the run cannot see or repeat (once per kind)."""
        task = self.caller()
        who = f"{task.name} " if task is not None else ""
        self.unseen[f"{who}{what}"] = None

    def now(self) -> float:
        """Return the run's virtual clock (seconds since it started)."""
        return self.clock

    # -- switch points of thread tasks --------------------------------------------------

    def _site(self, obj: object, write: bool = True) -> tuple[Where | None, FootprintT]:
        """Find where a hook was called from and the footprint of the operation on ``obj``.

        The footprint names ``obj`` only when the hook's caller is traced code: then
        whatever runs after the operation is covered by switch points of its own.  A call
        from untraced code (``Event.wait`` in the standard library) may touch anything.
        """
        frame, precise = self._traced_frame()
        where = _where(frame) if frame is not None else None
        if self.naming and obj is not None and frame is not None and id(obj) not in self.names:
            name = _name_in(frame, obj)
            if name is not None:
                self.names[id(obj)] = name
        if precise and obj is not None:
            lock = getattr(obj, "_lock", None) if isinstance(obj, threading.Condition) else None
            if lock is not None:
                # a condition's wait gives up and takes back its lock within its own step
                return where, (frozenset({self._key(obj), self._key(lock)}), write)
            return where, (self._key(obj), write)
        return where, ANY_WRITE

    def amend(self, task: Task, fp: FootprintT) -> None:
        """``task`` was resumed for another operation than its switch point announced
        (another task changed what it is about to read): correct the step's footprint."""
        task.footprint = fp
        if self.steps and self.steps[-1].task == task.index:
            self.steps[-1].footprint = fp
            amend = getattr(self.strategy, "amend", None)
            if amend is not None:
                amend(self, task.index, fp)

    def _key(self, obj: object) -> tuple[str, int]:
        key = self.keys.get(id(obj))
        if key is None:
            key = self.keys[id(obj)] = ("o", len(self.kept))
            self.kept.append(obj)
        return key

    def site(self) -> tuple[Where | None, bool]:
        """Return the innermost traced source line, and whether it called taskkit directly."""
        frame, precise = self._traced_frame()
        return (_where(frame) if frame is not None else None), precise

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

    def describe(self, what: object, obj: object) -> str:
        """Describe a wait for a report: the primitive by the name the code reached it by
        (``account.lock``), as it is now, with no addresses."""
        text = str(what)
        name = self.names.get(id(obj)) if obj is not None else None
        if name is not None:
            shown = repr(obj)
            text = text.replace(shown, f"{name} {shown}") if shown in text else f"{text} ({name})"
        return _ADDRESS.sub("", text)

    def switch_point(self, task: Task, op: str, where: Where | None, fp: FootprintT) -> None:
        """Called by thread ``task`` (holding the baton) before its next visible operation."""
        if self.deciding or task.aborted or task.stuck:
            # traced code called by the scheduler itself (a ready() predicate ...), a task
            # unwinding after a failure (its `finally:` and `__exit__` must run), or a task the
            # watchdog gave up on: none of them is scheduled any more
            return
        if self.aborting:
            task.aborted = True
            raise _Abort
        if task.is_coro and not self._threads_alive():
            return  # only coroutines: the code between two awaits runs as one step
        task.state = TaskState.RUNNABLE
        task.op, task.where, task.footprint = op, where, fp
        if self.priming:
            self._park_primed(task)
        else:
            self._hand_over(task)
        if self.is_aborting():  # resumed only to unwind
            task.aborted = True
            raise _Abort

    def block(
        self,
        task: Task,
        ready: Callable[[], object],
        what: object,
        timeout: float | None,
        where: Where | None,
        fp: FootprintT,
    ) -> bool:
        """Park thread ``task`` until ``ready()`` holds; False if the virtual timeout expired."""
        if task.stuck:
            return bool(ready())  # no longer scheduled: the run is over
        if self.aborting:
            task.aborted = True
            raise _Abort
        task.state = TaskState.BLOCKED
        task.ready, task.what = ready, what
        task.deadline = None if timeout is None else self.clock + timeout
        task.op = f"wait: {self.describe(what, task.waiting_on)}"
        task.where, task.footprint = where, fp
        if self.priming:
            self._park_primed(task)
        else:
            self._hand_over(task)
        if self.is_aborting():  # resumed only to unwind
            task.aborted = True
            raise _Abort
        timed_out = task.timed_out
        task.state = TaskState.RUNNABLE
        task.ready, task.deadline, task.timed_out = None, None, False
        return not timed_out

    def _hand_over(self, task: Task) -> None:
        """Let the strategy pick who runs next, and wait until it picks ``task`` again."""
        nxt = self._decide(task)
        if nxt is task:
            return
        if not task.is_coro:
            self._dispatch(nxt)
            task.baton.acquire()
            return
        # A coroutine task inside its step, on main: it holds the loop, as the code between
        # two awaits does for real, so only thread tasks run until the strategy picks it.
        while nxt is not None and nxt is not task and not nxt.is_coro:
            nxt.baton.release()
            if not self._wait_main():
                return  # the watchdog gave up on a thread task: the run is aborting
            nxt, self.main_next = self.main_next, None
            if self.finished:
                return

    def _threads_alive(self) -> bool:
        return any(not t.is_coro and t.state != TaskState.DONE for t in self.tasks)

    def _park_primed(self, task: Task) -> None:
        self.main_baton.release()
        task.baton.acquire()

    # -- decisions -------------------------------------------------------------------------

    def _enabled(self, task: Task) -> bool:
        if task.is_coro and self.stepping is not None and task is not self.stepping:
            return False  # another coroutine holds the loop (a thread task runs meanwhile)
        if task.state == TaskState.RUNNABLE:
            return True
        if task.state == TaskState.BLOCKED and task.ready is not None:
            try:
                return bool(task.ready())
            except Exception:
                return True  # let the task itself run into the error
        return False

    def _decide(self, current: Task | None) -> Task | None:
        """Pick the task that runs next (None: the run is over).  Caller holds the baton."""
        self.deciding = True
        try:
            return self._decide_now(current)
        finally:
            self.deciding = False

    def _decide_now(self, current: Task | None) -> Task | None:
        self.ticks += 1
        if self.aborting:
            return self._next_to_unwind()
        # callbacks a thread task left for the loop (a future it settled for an async task)
        if self.loop.plain_ready:
            self.loop.housekeep()
        stepping = self.stepping
        enabled = []
        for t in self.tasks:
            state = t.state
            if state == TaskState.RUNNABLE:
                if stepping is None or t is stepping or not t.is_coro:
                    enabled.append(t)
            elif state == TaskState.BLOCKED and self._enabled(t):
                enabled.append(t)
        while not enabled:
            blocked = [t for t in self.tasks if t.state == TaskState.BLOCKED]
            if not blocked:
                return None
            if not any(t.top for t in blocked):
                # What is left are tasks and threads the code started and left waiting (a
                # pool's idle workers): the run is over, and they unwind as in a failure.
                self._abort()
                return self._next_to_unwind()
            timed = [t for t in blocked if t.deadline is not None]
            timer = self.loop.next_timer()
            first = min(timed, key=lambda t: (t.deadline, t.index)) if timed else None
            if timer is not None and (first is None or timer <= (first.deadline or 0.0)):
                # an asyncio timer (sleep, wait_for, timeout) fires in virtual time
                self.clock = max(self.clock, timer)
                self.used_timeouts = True
                self.loop.fire_timers()
                enabled = [t for t in self.tasks if self._enabled(t)]
                continue
            if first is None:
                self.fail(self._deadlock(blocked), None)
                return self._next_to_unwind()
            self.clock = max(self.clock, first.deadline or 0.0)
            first.timed_out = True
            self.used_timeouts = True
            enabled = [first]
        if len(self.steps) >= self.max_steps:
            self.fail(
                UsageError(
                    f"the run did not finish within {self.max_steps} switch points; a task may "
                    "be spinning while it waits for another (add checkpoint() to the loop, or "
                    "wait on a lock, event or condition)"
                ),
                None,
            )
            return self._next_to_unwind()
        if current is not None and current in enabled:
            default = current
        else:
            default = default_choice(current, enabled, len(self.tasks))
        try:
            nxt = self.strategy.choose(self, current, enabled, default)
        except Exception as error:  # a schedule that does not fit, a program that varies
            self.fail(error, None)
            return self._next_to_unwind()
        preempted = current is not None and nxt is not current and current in enabled
        if preempted:
            self.preemptions += 1
        if nxt is not default:
            self.deviations.append(
                (len(self.steps), current.index if current is not None else None, nxt.index)
            )
        self.steps.append(
            Step(
                len(self.steps),
                nxt.index,
                nxt.op,
                nxt.where,
                nxt.footprint,
                preempted,
                current.index if current is not None else None,
            )
        )
        self.current = nxt
        return nxt

    def _next_to_unwind(self) -> Task | None:
        for task in self.tasks:
            if task.state != TaskState.DONE and not task.stuck:
                self.current = task
                return task
        return None

    def _deadlock(self, blocked: list[Task]) -> Deadlock:
        waiting = {}
        for task in self.tasks:
            if task.state == TaskState.BLOCKED:
                at = f" at {_short(task.where)}" if task.where else ""
                waiting[task.name] = f"{self.describe(task.what, task.waiting_on)}{at}"
        lines = [f"  {name} waits for {what}" for name, what in waiting.items()]
        done = [t.name for t in self.tasks if t.state == TaskState.DONE]
        if done:
            lines.append(f"  finished: {', '.join(done)}")
        if self.stepping is not None:
            lines.append(
                f"  {self.stepping.name} made a blocking call in async code, which holds the "
                "event loop: no other async task runs until it returns (await the async form)"
            )
        return Deadlock("no task can proceed:\n" + "\n".join(lines), waiting)

    def fail(self, error: BaseException, task: Task | None) -> None:
        """Record the run's first failure and switch to abort mode."""
        if self.failure is None:
            self.failure = error
            self.failed_task = task
        self._abort()

    def _abort(self) -> None:
        """Unwind every task.  A pool's worker logs the exception that unwinds it ("Exception
        in worker"): that is the run's doing, not the code's, so the pool's logger is quiet."""
        if not self.aborting:
            self.aborting = True
            quiet = logging.getLogger("concurrent.futures")
            self.quieted = (quiet, quiet.disabled)
            quiet.disabled = True

    def _dispatch(self, nxt: Task | None) -> None:
        """Hand the baton to ``nxt`` (a thread task, or main for coroutines and the end)."""
        if nxt is None:
            self.finished = True
            self.main_baton.release()
        elif nxt.is_coro:
            self.main_next = nxt
            self.main_baton.release()
        else:
            nxt.baton.release()

    # -- running ---------------------------------------------------------------------------

    def execute(self) -> BaseException | None:
        """Run every task to its end under control; return the failure, if any."""
        if _control.hook is not None:
            raise UsageError("controlled runs do not nest")
        _patches.begin(self)
        _control.hook = self
        # The cycle collector runs weakref callbacks and finalizers at moments that differ
        # from run to run; a systematic search needs every run to repeat exactly.
        collecting = gc.isenabled()
        gc.disable()
        self.loop.reset(self.now, self._adopt)
        self.loop.on_own_callback = self._loop_callback
        try:
            self._prime()
            self._resume(self._decide(None))
            if not self.finished:
                self._main_loop()
        finally:
            self._close_coroutines()
            if self.quieted is not None:
                self.quieted[0].disabled = self.quieted[1]
            _control.hook = None
            _patches.end(self)
            if collecting:
                gc.enable()
        _patches.release_leftovers(self.held)
        self.keys.clear()
        self.kept.clear()
        for task in self.tasks:
            if task.stuck:
                continue  # its thread is blocked for good: never reused, never joined
            if task.worker is not None:
                _workers.give_back(task.worker)
            elif task.thread is not None:
                task.thread.join()
        return self.failure

    def _wait_main(self) -> bool:
        """Wait for the main baton; on a watchdog report return False."""
        last = -1
        while not self.main_baton.acquire(timeout=self.watchdog):
            if self.ticks == last and self._stuck():
                return False
            last = self.ticks
        return True

    def _prime(self) -> None:
        self.priming = True
        try:
            for task in list(self.tasks):  # threads they start on the way join later
                if task.is_coro:
                    continue
                worker = task.worker = _workers.take(task.index)
                task.thread = worker.thread
                self.current = task
                worker.run(functools.partial(self._thread_main, task))
                if not self._wait_main():
                    break
        finally:
            self.priming = False

    def _main_loop(self) -> None:
        while True:
            if not self._wait_main():
                self._resume(self._decide(None))
                if self.finished:
                    return
                continue
            if self.finished:
                return
            task, self.main_next = self.main_next, None
            if task is not None:
                self._step_coroutines(task)
                if self.over():
                    return

    def is_aborting(self) -> bool:
        """Return True once the run has failed (read again after a wait)."""
        return self.aborting

    def over(self) -> bool:
        """Return True once the run has ended (another thread may have ended it)."""
        return self.finished

    def _stuck(self) -> bool:
        """The watchdog: the task holding the baton has not reached a switch point in time."""
        task = self.current
        if task is None or task.thread is None or task.state == TaskState.DONE or task.stuck:
            return False
        frame = current_frames().get(task.thread.ident or -1)
        stack = "".join(traceback.format_stack(frame, limit=4)) if frame is not None else ""
        task.stuck = True
        self.fail(
            Deadlock(
                f"task {task.name} has not reached a switch point for {self.watchdog:g} s: it is "
                "blocked in a call the scheduler does not control (a lock created before "
                "taskkit.testing was imported, a socket, a subprocess, ...). Its stack:\n" + stack,
                {task.name: "an uncontrolled blocking call"},
            ),
            task,
        )
        return True

    def _resume(self, nxt: Task | None) -> None:
        """Main thread, holding the baton: let ``nxt`` run."""
        if nxt is not None and nxt.is_coro:
            self._step_coroutines(nxt)
        else:
            self._dispatch(nxt)

    def _thread_main(self, task: Task) -> None:
        """On a worker's thread: run task ``task`` as a new thread would."""
        self.by_ident[_get_ident()] = task
        worker = task.worker
        assert worker is not None
        tracer = worker.tracer
        if tracer is None:
            tracer = worker.tracer = _Tracer(self, task)
        else:
            tracer.reuse(self, task)
        # a new thread starts with an empty context
        contextvars.Context().run(self._run_thread_task, task, self.args, tracer)

    def _run_thread_task(
        self, task: Task, args: tuple[object, ...], tracer: _Tracer | None = None
    ) -> None:
        if tracer is None:
            tracer = _Tracer(self, task)
        sys.settrace(tracer.global_trace)
        sys.setprofile(tracer.profile)
        try:
            result = task.fn(*args)
            if inspect.isawaitable(result):
                _reject_awaitable(task, result)
        except _Abort:
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
            self.fail(task.error, task)
        if task.stuck:
            return
        if self.priming:
            self.main_baton.release()
            return
        self._dispatch(self._decide(task))

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """``asyncio.run(coro)`` in a plain task: run ``coro`` as an asyncio task of the run.

        The calling task waits for it as for any other task, so what the coroutine does
        between its awaits is interleaved with every task, as the search requires.
        """
        if not inspect.iscoroutine(coro):
            raise ValueError(f"a coroutine was expected, got {coro!r}")
        aio = self.loop.create_task(coro)
        self.wait_until(aio.done, "asyncio.run()", aio, None)
        return aio.result()

    # -- threads the tasks start ------------------------------------------------------------

    def spawn(self, thread: threading.Thread) -> None:
        """Start ``thread`` as a task of this run: ``Thread.start()`` called by a task.

        The thread starts for real (so ``threading`` knows it), but parks before its
        ``run()``, as a task whose first step the strategy schedules like any other.
        """
        task = Task(len(self.tasks), thread.run)
        task.top, task.thread, task.footprint = False, thread, None
        self.tasks.append(task)
        self.spawned[thread] = task
        parked = allocate_lock()
        parked.acquire()

        def run() -> None:
            self.by_ident[_get_ident()] = task
            parked.release()
            task.baton.acquire()  # until the strategy first picks this task
            if self.aborting:
                task.state = TaskState.DONE
                self._dispatch(self._decide(task))
                return
            self._run_thread_task(task, ())

        thread.run = run  # type: ignore[method-assign]
        if self.light is not None:
            self._trace_fully(self.light)
        self.passthrough = True
        try:
            _patches.start_thread(thread)
            parked.acquire()
        finally:
            self.passthrough = False

    def _trace_fully(self, tracer: _Tracer) -> None:
        """A coroutine's step started a thread: trace the rest of the step, the frames it
        is in included, as a step beside thread tasks is."""
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

    def _step_coroutines(self, task: Task | None) -> None:
        """Main thread: run coroutine tasks until a thread task or the end is chosen."""
        while task is not None:
            if self.aborting:
                self._close_coroutines()
            else:
                self.stepping = task
                try:
                    self._step(task)
                finally:
                    self.stepping = None
                self._after_step(task)
            nxt = self._decide(task)
            if nxt is None:
                self.finished = True
                return
            if not nxt.is_coro:
                nxt.baton.release()
                return
            task = nxt

    def _step(self, task: Task) -> None:
        """Run one step of coroutine ``task``: up to its next ``await`` that suspends it."""
        loop = self.loop
        if task.aio is None:
            coro = task.fn(*self.args)
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
        # watched, until the step starts a thread (see spawn).
        tracer = _Tracer(self, task)
        previous = sys.gettrace(), sys.getprofile()
        if self._threads_alive():
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
            if error is not None and task.top and not isinstance(error, _Abort):
                task.error = error
                self.fail(error, task)
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
            self.unseen[
                "a callback of the code's own (loop.call_soon, add_done_callback) ran in "
                "asyncio's order, not in every order against the tasks"
            ] = None

    def _adopt(self, aio: asyncio.Task[Any]) -> None:
        """A task the code under test created (create_task, gather ...) joins the run."""
        if self.creating:
            return
        task = Task(len(self.tasks), aio.get_coro, aio)
        task.state, task.ready = TaskState.BLOCKED, functools.partial(self.loop.has_step, aio)
        task.what = "its start"
        self.tasks.append(task)

    def _close_coroutines(self) -> None:
        """Unwind every coroutine task of a failed or finished run."""
        for task in self.tasks:
            if not task.is_coro or task.state == TaskState.DONE:
                continue
            task.state = TaskState.DONE
            coro = task.aio.get_coro() if task.aio is not None else None
            if coro is not None:
                try:
                    coro.close()
                except BaseException:
                    pass
        if self.loop is not None:
            self.loop.reset(self.now, self._adopt)


_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


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


def _reject_awaitable(task: Task, result: object) -> None:
    close = getattr(result, "close", None)
    if inspect.iscoroutine(result) and close is not None:
        close()  # never awaited: closed, so Python does not warn about it later
    name = getattr(task.fn, "__qualname__", repr(task.fn))
    raise TypeError(
        f"task {task.name} ({name}) is a plain function that returned {result!r} without "
        "awaiting it; pass the async def function itself (or an async def wrapper) as the task"
    )


def _coro_where(coro: Any) -> Where | None:
    """Return the innermost traced source line a coroutine is suspended at."""
    found: Where | None = None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and classify_frame(frame) == TRACED:
            found = _where(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found


def _short(where: Where | None) -> str:
    if where is None:
        return "?"
    filename, line, _ = where
    return f"{filename.rsplit('/', 1)[-1]}:{line}"


class _Done:
    """An awaitable that is already complete (checkpoint() outside a coroutine task)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()


def checkpoint(label: str = "checkpoint") -> Any:
    """Mark a switch point: in a controlled run, other tasks may run here.

    Call it plainly in ordinary functions (``checkpoint()``) and await it in ``async def``
    tasks (``await checkpoint()``).  Outside a controlled run it does nothing.
    """
    h = _control.hook
    if h is None or not isinstance(h, Run):
        return _DONE
    task = h.caller()
    if task is None:
        return _DONE
    if task.is_coro:
        return _Yield(h, label)
    _quietly(_checkpoint, h, task, label)
    return _DONE


def _checkpoint(h: Run, task: Task, label: str) -> None:
    where, precise = h.site()
    # A checkpoint in traced code touches nothing itself: what follows has switch points.
    h.switch_point(task, label, where, None if precise else ANY_WRITE)
