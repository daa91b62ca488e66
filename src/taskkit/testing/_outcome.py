"""How a controlled run ends: its failure, abort mode, deadlocks, the watchdog, virtual time.

The switchboard asks ``Outcome.stalled`` when no task is enabled.  Then virtual time passes to
the first asyncio timer or wait timeout; if there is none, the run is over (no task waits), or
only threads the code started and left waiting remain (they unwind), or it is a deadlock.
A failure (a task's exception, a deadlock, a watchdog report, a schedule that does not fit)
is recorded once, and puts the run in abort mode: each remaining task is resumed in turn and
raises ``Abort`` at its switch point, so it unwinds without running on.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

from .._core._compat import current_frames
from .._core._errors import Deadlock, UsageError
from ._task import Task, TaskState, short

if TYPE_CHECKING:
    from ._runtime import Run

__all__ = ["Outcome"]


class Outcome:
    """The failure of one controlled run, and the decisions of a run that cannot go on."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.failure: BaseException | None = None
        self.failed_task: Task | None = None
        self.quieted: tuple[logging.Logger, bool] | None = None  # see abort

    def fail(self, error: BaseException, task: Task | None) -> None:
        """Record the run's first failure and switch to abort mode."""
        if self.failure is None:
            self.failure = error
            self.failed_task = task
        self.abort()

    def abort(self) -> None:
        """Unwind every task.  A pool's worker logs the exception that unwinds it ("Exception
        in worker"): that is the run's doing, not the code's, so the pool's logger is quiet."""
        board = self.run.board
        if not board.aborting:
            board.aborting = True
            quiet = logging.getLogger("concurrent.futures")
            self.quieted = (quiet, quiet.disabled)
            quiet.disabled = True

    def restore_logging(self) -> None:
        """The run is over: the pool's logger speaks again as it did (see ``abort``)."""
        if self.quieted is not None:
            self.quieted[0].disabled = self.quieted[1]

    def stalled(self) -> list[Task]:
        """No task is enabled: return those that are once virtual time has passed to the first
        timer or timeout; none if the run is over, or must unwind (``abort``, a deadlock)."""
        board = self.run.board
        tasks, loop = board.tasks, board.loop
        enabled: list[Task] = []
        while not enabled:
            blocked = [t for t in tasks if t.state == TaskState.BLOCKED]
            if not blocked:
                return []
            if not any(t.top for t in blocked):
                # What is left are tasks and threads the code started and left waiting (a
                # pool's idle workers): the run is over, and they unwind as in a failure.
                self.abort()
                return []
            timed = [t for t in blocked if t.deadline is not None]
            timer = loop.next_timer()
            first = min(timed, key=lambda t: (t.deadline, t.index)) if timed else None
            if timer is not None and (first is None or timer <= (first.deadline or 0.0)):
                # an asyncio timer (sleep, wait_for, timeout) fires in virtual time
                board.clock = max(board.clock, timer)
                board.used_timeouts = True
                loop.fire_timers()
                enabled = [t for t in tasks if board.enabled(t)]
                continue
            if first is None:
                self.fail(self.deadlock(), None)
                return []
            board.clock = max(board.clock, first.deadline or 0.0)
            first.timed_out = True
            board.used_timeouts = True
            enabled = [first]
        return enabled

    def deadlock(self) -> Deadlock:
        """The deadlock of the blocked tasks, each with what it waits for."""
        run = self.run
        board = run.board
        waiting = {}
        for task in board.tasks:
            if task.state == TaskState.BLOCKED:
                at = f" at {short(task.where)}" if task.where else ""
                waiting[task.name] = f"{run.record.describe(task.what, task.waiting_on)}{at}"
        lines = [f"  {name} waits for {what}" for name, what in waiting.items()]
        done = [t.name for t in board.tasks if t.state == TaskState.DONE]
        if done:
            lines.append(f"  finished: {', '.join(done)}")
        if board.stepping is not None:
            lines.append(
                f"  {board.stepping.name} made a blocking call in async code, which holds the "
                "event loop: no other async task runs until it returns (await the async form)"
            )
        return Deadlock("no task can proceed:\n" + "\n".join(lines), waiting)

    def ran_too_long(self, max_steps: int) -> None:
        """The run reached ``max_steps`` switch points: fail it."""
        self.fail(
            UsageError(
                f"the run did not finish within {max_steps} switch points; a task may "
                "be spinning while it waits for another (add checkpoint() to the loop, or "
                "wait on a lock, event or condition)"
            ),
            None,
        )

    def stuck(self) -> bool:
        """The watchdog: the task holding the baton has not reached a switch point in time."""
        board = self.run.board
        task = board.current
        if task is None or task.thread is None or task.state == TaskState.DONE or task.stuck:
            return False
        frame = current_frames().get(task.thread.ident or -1)
        stack = "".join(traceback.format_stack(frame, limit=4)) if frame is not None else ""
        task.stuck = True
        self.fail(
            Deadlock(
                f"task {task.name} has not reached a switch point for {board.watchdog:g} s: it "
                "is blocked in a call the scheduler does not control (a lock created before "
                "taskkit.testing was imported, a socket, a subprocess, ...). Its stack:\n" + stack,
                {task.name: "an uncontrolled blocking call"},
            ),
            task,
        )
        return True
