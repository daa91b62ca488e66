"""The switchboard of a controlled run: who holds the baton, and the hand-over between tasks.

Exactly one thread holds the baton at any time.  A thread task at a switch point
(``switch_point``) or at a blocking operation (``block``) asks ``decide`` who runs next: the
strategy picks among the enabled tasks and the recorder records the step.  If another task is
picked, the baton goes to it (``dispatch``: a thread task's own baton, or the main baton for
coroutine tasks and the end) and the caller parks on its own baton until it is picked again.
The caller's thread, "main", waits on the main baton (``main_loop``), steps coroutine tasks
when handed one, and wakes the watchdog when a task holds the baton too long.

Every method here but ``main_loop`` runs on the thread that holds the baton.  This is the hot
path of a run: what it reads at every switch point is bound once, in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core._compat import allocate_lock
from ._task import Abort, Task, TaskState, Where, default_choice
from ._tracing import FootprintT

if TYPE_CHECKING:
    from ._runtime import Run

__all__ = ["Switchboard"]


class Switchboard:
    """Hands the baton from task to task as the strategy decides."""

    def __init__(self, run: Run, tasks: list[Task], *, watchdog: float, max_steps: int) -> None:
        self.run, self.strategy = run, run.strategy
        self.tasks = tasks  # those given to the run, then those that join it on the way
        self.steps = run.record.steps  # the recorder's: its length is the step's number
        self.record_step = run.record.step
        self.loop = run.coroutines.loop
        self.watchdog, self.max_steps = watchdog, max_steps
        self.current: Task | None = None  # the task that holds the baton (or last did)
        self.stepping: Task | None = None  # the coroutine task main is stepping
        self.main_next: Task | None = None  # the coroutine task main is handed next
        self.main_baton = allocate_lock()
        self.main_baton.acquire()
        self.ticks = 0  # decisions so far: the watchdog's sign of progress
        self.deciding = False  # the scheduler's own code runs: no switch points
        self.priming = False  # tasks are being started: each parks at its first switch point
        self.finished = False
        self.aborting = False  # the run has failed: each task is resumed only to unwind
        self.clock = 0.0  # the run's virtual clock (seconds since it started)
        self.used_timeouts = False  # a timeout expired, or a timer fired, in virtual time

    # -- on the thread of the task that holds the baton -----------------------------------

    def switch_point(self, task: Task, op: str, where: Where | None, fp: FootprintT) -> None:
        """Called by thread ``task`` (holding the baton) before its next visible operation."""
        if self.deciding or task.aborted or task.stuck:
            # traced code called by the scheduler itself (a ready() predicate ...), a task
            # unwinding after a failure (its `finally:` and `__exit__` must run), or a task the
            # watchdog gave up on: none of them is scheduled any more
            return
        if self.aborting:
            task.aborted = True
            raise Abort
        if task.is_coro and not self.threads_alive():
            return  # only coroutines: the code between two awaits runs as one step
        task.state = TaskState.RUNNABLE
        task.op, task.where, task.footprint = op, where, fp
        self._wait_turn(task)

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
            raise Abort
        task.state = TaskState.BLOCKED
        task.ready, task.what = ready, what
        task.deadline = None if timeout is None else self.clock + timeout
        task.op = f"wait: {self.run.record.describe(what, task.waiting_on)}"
        task.where, task.footprint = where, fp
        self._wait_turn(task)
        timed_out = task.timed_out
        task.state = TaskState.RUNNABLE
        task.ready, task.deadline, task.timed_out = None, None, False
        return not timed_out

    def _wait_turn(self, task: Task) -> None:
        """Let the strategy pick who runs next, and wait until it picks ``task`` again."""
        if self.priming:
            # the run is starting its tasks: this one has come to its first switch point
            self.main_baton.release()
            task.baton.acquire()
        else:
            nxt = self.decide(task)
            if nxt is not task:
                if not task.is_coro:
                    self.dispatch(nxt)
                    task.baton.acquire()
                else:
                    self._run_threads_in_step(task, nxt)
        if self.aborting:  # resumed only to unwind
            task.aborted = True
            raise Abort

    def _run_threads_in_step(self, task: Task, nxt: Task | None) -> None:
        """A coroutine task inside its step, on main: it holds the loop, as the code between
        two awaits does for real, so only thread tasks run until the strategy picks it."""
        while nxt is not None and nxt is not task and not nxt.is_coro:
            nxt.baton.release()
            if not self.wait_main():
                return  # the watchdog gave up on a thread task: the run is aborting
            nxt, self.main_next = self.main_next, None
            if self.finished:
                return

    def threads_alive(self) -> bool:
        """Return True while a thread task has not ended."""
        return any(not t.is_coro and t.state != TaskState.DONE for t in self.tasks)

    def enabled(self, task: Task) -> bool:
        """Return True if ``task`` can run now."""
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

    def decide(self, current: Task | None) -> Task | None:
        """Pick the task that runs next (None: the run is over).  Caller holds the baton."""
        self.deciding = True
        try:
            self.ticks += 1
            if self.aborting:
                return self.next_to_unwind()
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
                elif state == TaskState.BLOCKED and self.enabled(t):
                    enabled.append(t)
            if not enabled:
                enabled = self.run.outcome.stalled()
                if not enabled:
                    return self.next_to_unwind()
            if len(self.steps) >= self.max_steps:
                self.run.outcome.ran_too_long(self.max_steps)
                return self.next_to_unwind()
            if current is not None and current in enabled:
                default = current
            else:
                default = default_choice(current, enabled, len(self.tasks))
            try:
                nxt = self.strategy.choose(self.run, current, enabled, default)
            except Exception as error:  # a schedule that does not fit, a program that varies
                self.run.outcome.fail(error, None)
                return self.next_to_unwind()
            self.record_step(current, enabled, default, nxt)
            self.current = nxt
            return nxt
        finally:
            self.deciding = False

    def next_to_unwind(self) -> Task | None:
        """The next task to unwind once the run is aborting; None once none is left (and
        when the run is not aborting: it is over)."""
        if not self.aborting:
            return None
        for task in self.tasks:
            if task.state != TaskState.DONE and not task.stuck:
                self.current = task
                return task
        return None

    def dispatch(self, nxt: Task | None) -> None:
        """Hand the baton to ``nxt`` (a thread task, or main for coroutines and the end)."""
        if nxt is None:
            self.finished = True
            self.main_baton.release()
        elif nxt.is_coro:
            self.main_next = nxt
            self.main_baton.release()
        else:
            nxt.baton.release()

    # -- on main ----------------------------------------------------------------------------

    def resume(self, nxt: Task | None) -> None:
        """Main thread, holding the baton: let ``nxt`` run."""
        if nxt is not None and nxt.is_coro:
            self.run.coroutines.step_all(nxt)
        else:
            self.dispatch(nxt)

    def wait_main(self) -> bool:
        """Wait for the main baton; on a watchdog report return False."""
        last = -1
        while not self.main_baton.acquire(timeout=self.watchdog):
            if self.ticks == last and self.run.outcome.stuck():
                return False
            last = self.ticks
        return True

    def main_loop(self) -> None:
        """Main thread: wait for the baton until the run is over, stepping coroutine tasks."""
        step_all = self.run.coroutines.step_all
        while True:
            if not self.wait_main():
                self.resume(self.decide(None))
                if self.finished:
                    return
                continue
            if self.finished:
                return
            task, self.main_next = self.main_next, None
            if task is not None:
                step_all(task)
                if self.over():
                    return

    def over(self) -> bool:
        """Return True once the run has ended (another thread may have ended it)."""
        return self.finished
