"""The controlled runtime: run tasks one at a time and let a strategy pick who runs next.

A ``Run`` is one controlled execution.  It is what the primitives talk to (it is installed as
``taskkit._core._control.hook`` while it executes), and it is made of parts, each in its own
module of this package::

    Run                     _runtime      the hook protocol (switch, wait_until, ...), execute()
     ├─ board: Switchboard  _switchboard  who holds the baton; switch points, blocking waits,
     │                                    decisions, the hand-over; main's loop
     ├─ threads: ThreadTasks _threads     thread tasks: started (given, or Thread.start() by a
     │                                    task), traced by a Tracer (_tracer), ended
     ├─ coroutines: CoroutineTasks        async tasks on _asyncio.ControlledLoop, stepped by
     │                       _coroutines  main; adopted asyncio tasks; asyncio.run() in a task
     ├─ record: Recorder     _recorder    steps, footprints and the objects they number, names
     │                                    of primitives, notes and what the run cannot see
     └─ outcome: Outcome     _outcome     failure and abort mode, deadlocks, the watchdog,
                                          virtual time when no task can run
    Task, Step, Strategy     _task        what every part reads and updates

Data flow of one run::

    Run.execute()  (the caller's thread, "main")
      ├─ patches on (_patches.begin): Condition.wait, time.sleep, ... and _control.hook = run
      ├─ threads.start(): start each thread task; it runs up to its first switch point and
      │         parks on its own baton (a raw lock), so every task's next operation is known
      └─ board.main_loop(): wait on the main baton; coroutines.step_all() when handed a
                coroutine task; the watchdog (outcome.stuck) when a task holds the baton long

    a task at a switch point (Tracer, a primitive's hook through Run.switch, checkpoint()):
      board.switch_point(): its pending operation -> board.decide(): enabled tasks (none:
      outcome.stalled) -> strategy.choose() -> record.step()
      -> same task: carry on (no handoff) | a thread task: release its baton, park on mine
                                          | a coroutine: hand the main baton to main

    tasks that join on the way:
      Thread.start() by a task  -> threads.spawn(): the thread starts, parks before run(), a task
      an asyncio task created   -> coroutines.adopt(): a coroutine task (async def tasks are
                                   asyncio tasks on _asyncio.ControlledLoop, stepped by main)
      asyncio.run() in a task   -> coroutines.run_coroutine(): adopted, the caller waits

Exactly one thread holds "the baton" at any time, so task code never runs in parallel and
every decision is recorded in ``Run.steps``.  What a run cannot see or repeat (os.urandom, a
loop of a task's own ...) is recorded in ``Run.unseen``; a search that met any is incomplete.
A failure (a task's exception, a deadlock, a watchdog report) puts the run in *abort* mode:
each remaining task is resumed in turn and raises ``Abort`` at its switch point, so it
unwinds without running on.  Threads and tasks the code started and left waiting when every
task given has ended are unwound the same way.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

from .._core import _control
from .._core._errors import UsageError
from . import _patches
from ._coroutines import CoroutineTasks, Wait, Yield
from ._outcome import Outcome
from ._recorder import Recorder
from ._switchboard import Switchboard
from ._task import Step, Strategy, Task, TaskState, default_choice
from ._threads import ThreadTasks
from ._tracer import quietly
from ._tracing import ANY_WRITE, FootprintT

__all__ = ["Run", "Step", "Strategy", "Task", "TaskState", "checkpoint", "default_choice"]

_get_ident = threading.get_ident


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
        self.args = tuple(args)
        self.strategy = strategy
        self.main_ident = _get_ident()
        self.held: dict[Any, None] = {}  # controllable locks that tasks hold
        self.record = Recorder(naming)
        self.coroutines = CoroutineTasks(self)
        self.outcome = Outcome(self)
        self.threads = ThreadTasks(self)
        self.board = Switchboard(
            self,
            [Task(i, fn) for i, fn in enumerate(tasks)],
            watchdog=watchdog,
            max_steps=max_steps,
        )
        # The parts' own list and dict, read at every decision or hook call: the tasks of the
        # run (given first, then those that joined), its steps, and which thread runs which.
        self.tasks = self.board.tasks
        self.steps = self.record.steps
        self.by_ident = self.threads.by_ident

    # -- what the search and the reports read ----------------------------------------------

    @property
    def deviations(self) -> list[tuple[int, int | None, int]]:
        """``(step, previous task, chosen task)`` of each decision that was not the default."""
        return self.record.deviations

    @property
    def preemptions(self) -> int:
        """Decisions that switched away from a task that could have continued."""
        return self.record.preemptions

    @property
    def notes(self) -> dict[str, None]:
        """Facts about every execution that a report states."""
        return self.record.notes

    @property
    def unseen(self) -> dict[str, None]:
        """What the run could neither see nor repeat (a search that met any is incomplete)."""
        return self.record.unseen

    @property
    def failure(self) -> BaseException | None:
        """The run's first failure, if any."""
        return self.outcome.failure

    @property
    def failed_task(self) -> Task | None:
        """The task whose exception is ``failure`` (None for a deadlock, a bad schedule)."""
        return self.outcome.failed_task

    @property
    def used_timeouts(self) -> bool:
        """True if a timeout expired or a timer fired (in virtual time) in this run."""
        return self.board.used_timeouts

    # -- the hook protocol (taskkit._core._control.Hook) ---------------------------------------

    def controls_caller(self) -> bool:
        if self.threads.passthrough:
            return False
        ident = _get_ident()
        if ident in self.by_ident:
            return True
        return ident == self.main_ident and self.board.stepping is not None

    def caller(self) -> Task | None:
        """Return the task that is calling, or None for threads outside the run."""
        task = self.by_ident.get(_get_ident())
        if task is not None:
            return task
        if _get_ident() == self.main_ident:
            return self.board.stepping
        return None

    def switch(self, op: str, obj: object) -> None:
        quietly(self._switch, op, obj, True)

    def observe(self, op: str, obj: object) -> None:
        quietly(self._switch, op, obj, False)

    def _switch(self, op: str, obj: object, write: bool) -> None:
        task = self.caller()
        if task is None:
            return
        record = self.record
        where, fp = record.site(obj, write)
        self.board.switch_point(task, record.named(op, obj), where, fp)

    def wait_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> bool:
        return bool(quietly(self._wait_until, ready, what, obj, timeout))

    def _wait_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> bool:
        task = self.caller()
        if task is None:
            raise UsageError("wait_until() was called by a thread that is not a task of the run")
        record = self.record
        where, fp = record.site(obj)
        if timeout is not None and timeout <= 0:
            self.board.switch_point(task, f"poll {record.describe(what, obj)}", where, fp)
            return bool(ready())
        task.waiting_on = obj
        return self.board.block(task, ready, what, timeout, where, fp)

    def aswitch(self, op: str, obj: object) -> Yield:
        return Yield(self, op)

    def await_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> Wait:
        return Wait(self, ready, what, timeout)

    def uncontrolled(self, what: str) -> None:
        """Record that a task did something the run cannot see or repeat (once per kind)."""
        task = self.caller()
        who = f"{task.name} " if task is not None else ""
        self.record.unseen[f"{who}{what}"] = None

    def now(self) -> float:
        """Return the run's virtual clock (seconds since it started)."""
        return self.board.clock

    def amend(self, task: Task, fp: FootprintT) -> None:
        """``task`` was resumed for another operation than its switch point announced
        (another task changed what it is about to read): correct the record, and tell the
        strategy if the last step changed."""
        if self.record.amend(task, fp):
            amend = getattr(self.strategy, "amend", None)
            if amend is not None:
                amend(self, task.index, fp)

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
        board = self.board
        self.coroutines.begin()
        try:
            self.threads.start()
            board.resume(board.decide(None))
            if not board.finished:
                board.main_loop()
        finally:
            self.coroutines.close()
            self.outcome.restore_logging()
            _control.hook = None
            _patches.end(self)
            if collecting:
                gc.enable()
        _patches.release_leftovers(self.held)
        self.record.forget()
        self.threads.release()
        # The parts no longer need the run: their references back to it go, so that it is
        # freed as soon as its caller lets go of it, not by the cycle collector (which
        # would cost a search of thousands of executions dearly).
        del self.board.run, self.outcome.run, self.threads.run, self.coroutines.run
        return self.outcome.failure


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
        return Yield(h, label)
    quietly(_checkpoint, h, task, label)
    return _DONE


def _checkpoint(h: Run, task: Task, label: str) -> None:
    where, precise = h.record.traced_site()
    # A checkpoint in traced code touches nothing itself: what follows has switch points.
    h.board.switch_point(task, label, where, None if precise else ANY_WRITE)
