"""Where decisions come from: Hypothesis, systematic search, or a recorded schedule.

* ``interleavings()`` draws a *sparse* schedule: a few "at the k-th preemption point,
  preempt for another task" entries (at most ``max_preemptions``), and an order of the tasks
  for the free choices where a task blocks or ends.  Hypothesis shrinks it by deleting
  entries and lowering steps, so a failure ends with the fewest preemptions it can find.
* ``explore()`` is a stateless search, iteratively bounded (every order with no
  preemption, then one, as CHESS does), and then with dynamic partial-order reduction
  (Flanagan and Godefroid, POPL 2005) and sleep sets: it runs the program again and again,
  and only tries another order at a step where two tasks' operations conflict.  With no
  preemption bound it covers every distinct interleaving of the switch points
  (``report.complete``).
* ``replay()`` follows a schedule string exactly, and refuses one that does not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .._core._errors import UsageError
from ._invariant import invariant_failure
from ._report import (
    add_note,
    describe,
    describe_report,
    format_schedule,
    parse_schedule,
    summarize_counterexample,
    summarize_report,
)
from ._runtime import Run, Task
from ._tracing import FootprintT, conflicts

__all__ = [
    "Counterexample",
    "Report",
    "Scheduler",
    "explore",
    "interleavings",
    "replay",
]


class _Lazy:
    """Formats a run only if Hypothesis prints it (for the final, failing example)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __repr__(self) -> str:
        return describe(self.run)


class _Sparse:
    """A strategy that follows a few forced switches and otherwise keeps the current task.

    With ``by_offset`` (drawn by Hypothesis) there are two kinds of decisions.  A
    *preemption* point is one where the current task could go on and another could run
    instead.  ``entries`` maps the n-th such point to the n-th other task in round-robin
    order, and ``conflicts`` does the same counting only the points where the current task's
    next operation conflicts with the next operation of a task that could run instead (the
    points where a preemption can change what a task reads or who gets a lock); every other
    point keeps the current task.  A *free* point is one where the current task blocked or
    ended and several others can run: ``rank`` orders the tasks (as a priority scheduler
    does) and the first of them that can run goes on, or the next in round-robin order when
    none can.  A free choice is no preemption, so ``max_preemptions`` bounds only the
    entries.  Without ``by_offset`` (``replay``) entries are absolute steps and task numbers.
    """

    def __init__(
        self,
        entries: dict[int, int],
        *,
        by_offset: bool,
        strict: bool,
        rank: Sequence[int] = (),
        conflicts: dict[int, int] | None = None,
    ) -> None:
        self.entries = entries
        self.conflict_entries = conflicts or {}
        self.rank = rank
        self.by_offset = by_offset
        self.strict = strict
        self.candidates = 0
        self.conflicting = 0
        self.used = 0

    def choose(self, run: Run, current: Task | None, enabled: list[Task], default: Task) -> Task:
        if self.by_offset:
            return self._choose_candidate(run, current, enabled, default)
        entry = self.entries.get(len(run.steps))
        if entry is None:
            return default
        self.used += 1
        for task in enabled:
            if task.index == entry:
                return task
        if self.strict:
            names = ", ".join(t.name for t in enabled)
            raise ValueError(
                f"the schedule does not fit this program: at step {len(run.steps)} it switches "
                f"to T{entry}, but only {names} can run there"
            )
        return default

    def check_used(self, run: Run) -> None:
        """A strict schedule must have been followed to its end: raise if it was not."""
        if self.by_offset or not self.strict or self.used == len(self.entries):
            return
        unused = sorted(step for step in self.entries if step >= len(run.steps))
        raise ValueError(
            "the schedule does not fit this program: it switches at step "
            f"{', '.join(map(str, unused))}, but the run ended after {len(run.steps)} steps"
        )

    def _choose_candidate(
        self, run: Run, current: Task | None, enabled: list[Task], default: Task
    ) -> Task:
        if len(enabled) == 1:
            return default
        n = len(run.tasks)
        start = default.index
        if default is current:
            fp = current.footprint
            if fp is None:
                return default  # a checkpoint in traced code: the next operation decides
            entry = self.entries.get(self.candidates)
            self.candidates += 1
            if self.conflict_entries and any(
                _conflicts(fp, t.footprint) for t in enabled if t is not current
            ):
                conflicting = self.conflict_entries.get(self.conflicting)
                self.conflicting += 1
                if entry is None:
                    entry = conflicting
            if entry is None:
                return default
            others = sorted(
                (t for t in enabled if t is not default), key=lambda t: (t.index - start) % n
            )
            return others[entry % len(others)]
        for index in self.rank:  # the first task of the ranking that can run
            for task in enabled:
                if task.index == index:
                    return task
        return default


class Scheduler:
    """Runs tasks under one schedule: what ``interleavings()`` draws and ``replay()`` returns."""

    def __init__(
        self,
        entries: dict[int, int],
        *,
        by_offset: bool,
        in_hypothesis: bool,
        watchdog: float = 2.0,
        rank: Sequence[int] = (),
        conflicts: dict[int, int] | None = None,
    ) -> None:
        self._entries = entries
        self._conflicts = conflicts
        self._rank = rank
        self._by_offset = by_offset
        self._in_hypothesis = in_hypothesis
        self._watchdog = watchdog
        self.last_run: Run | None = None

    @property
    def schedule(self) -> str:
        """The schedule string of the last run (what ``replay`` accepts)."""
        return "" if self.last_run is None else format_schedule(self.last_run)

    def run(self, tasks: Sequence[Callable[..., Any]], args: Sequence[object] = ()) -> None:
        """Run each callable in ``tasks`` as its own task with ``*args``; return when all end.

        Plain functions run on controlled threads, ``async def`` functions on the controlled
        coroutine scheduler.  A task's exception (or ``Deadlock``) is raised here.
        """
        strict = not self._by_offset
        strategy = _Sparse(
            self._entries,
            by_offset=self._by_offset,
            strict=strict,
            rank=self._rank,
            conflicts=self._conflicts,
        )
        run = Run(tasks, args, strategy, watchdog=self._watchdog)
        failure = run.execute()
        if failure is None:
            strategy.check_used(run)
        self.last_run = run
        if self._in_hypothesis:
            from hypothesis import note

            note(_Lazy(run))
        if failure is not None:
            if not self._in_hypothesis:
                add_note(failure, describe(run))
            raise failure

    def __repr__(self) -> str:
        if self.last_run is None:
            return "interleavings(...)"
        return f"replay({self.schedule!r})"


def interleavings(max_preemptions: int = 3, *, watchdog: float = 2.0) -> Any:
    """Return a Hypothesis strategy of ``Scheduler`` objects: ``s.run(tasks, args)``.

    Each example preempts a task that could go on at most ``max_preemptions`` times; where a
    task blocks or ends, which of the others runs next is drawn too, and costs nothing.  A
    failing example shrinks to the fewest preemptions and prints its interleaving; the
    example database replays it.

    Args:
        max_preemptions: the most preemptions per run (bugs are shallow: 2 or 3 is enough
            for nearly all).
        watchdog: seconds a task may spend outside switch points before it is reported as
            blocked in a call the scheduler does not control.
    """
    from hypothesis import strategies as st

    if max_preemptions < 0:
        raise ValueError("max_preemptions must be >= 0")

    @st.composite
    def schedules(draw: Any) -> Scheduler:
        # The program's length is unknown when the schedule is drawn.  Entries are gaps
        # between forced switches, drawn within a scale drawn first (weighted toward the
        # short harnesses race tests use), so short programs get dense schedules and long
        # ones spread-out schedules; either shrinks toward early, few switches.
        scale = draw(st.sampled_from(_SCALES))
        size = draw(st.integers(min(1, max_preemptions), max_preemptions))
        # The forced switches of one example count either every preemption point or only
        # the points where the running task's next operation conflicts with the next
        # operation of a task that could run instead (a write another task reads, a lock
        # another task waits for).  Those are few, so their gaps are drawn short.  Shrinking
        # goes to the kind that counts every point.
        on_conflicts = draw(st.booleans())
        if on_conflicts:
            scale = min(scale, _CONFLICT_SCALE)
        gaps = draw(
            st.lists(
                st.tuples(st.integers(0, 2**scale - 1), st.integers(0, 3)),
                min_size=size,
                max_size=size,
            )
        )
        entries: dict[int, int] = {}
        step = -1
        for gap, offset in gaps:
            step += gap + 1
            entries[step] = offset
        conflicts: dict[int, int] = {}
        if on_conflicts:
            entries, conflicts = conflicts, entries
        rank = draw(st.permutations(range(_RANKED)))
        return Scheduler(
            entries,
            by_offset=True,
            in_hypothesis=True,
            watchdog=watchdog,
            rank=rank,
            conflicts=conflicts,
        )

    return schedules()


_SCALES = (2, 3, 1, 2, 3, 4, 2, 3, 5, 6, 8, 10, 12)
_CONFLICT_SCALE = 2  # conflicting points are few: gaps among them of at most 3
_RANKED = 8  # tasks ranked for free choices (where a task blocks or ends, who goes on)

# -- explore ---------------------------------------------------------------------------------


_known: dict[tuple[FootprintT, FootprintT], bool] = {}


def _conflicts(a: FootprintT, b: FootprintT) -> bool:
    """``conflicts``, remembered: a search asks about the same few pairs again and again."""
    if a is None or b is None:
        return False
    pair = (a, b)
    found = _known.get(pair)
    if found is None:
        if len(_known) > 100_000:
            _known.clear()
        found = _known[pair] = conflicts(a, b)
    return found


class _Redundant(Exception):
    """Ends an execution whose every continuation was already covered (sleep-set blocked)."""


@dataclass(slots=True)
class _Node:
    """One decision of the current execution, and what is left to try there."""

    enabled: tuple[int, ...]
    fps: dict[int, FootprintT]  # each enabled task's next operation
    current: int | None
    current_enabled: bool
    preemptions: int  # before this decision
    sleep: dict[int, FootprintT]  # tasks whose orders from here were already covered
    chosen: int
    backtrack: set[int]
    done: set[int]  # tried or given up (over the bound)
    explored: list[int]  # tried, in order

    def cost(self, choice: int) -> int:
        """Preemptions after choosing ``choice`` here."""
        return self.preemptions + int(self.current_enabled and choice != self.current)


@dataclass(slots=True)
class _Done:
    task: int
    footprint: FootprintT
    clock: dict[int, int]
    announced: FootprintT  # the footprint before an amend (what the task announced)


class _Dpor:
    """Stateless DFS with dynamic partial-order reduction, sleep sets and a preemption bound.

    Races between a task's next operation and an earlier conflicting step not ordered before
    it (happens-before by vector clocks) add backtracking points (Flanagan and Godefroid).
    Sleep sets (Godefroid) skip an order that only swaps independent steps of one already
    explored: after trying task ``a`` at a node, a sibling branch need not start with ``a``
    until some step conflicts with ``a``'s next operation.  An execution whose every
    runnable task sleeps is a repeat and ends at once.

    With a bound, a branch costing more preemptions is skipped (``pruned``).  Bounds up to
    ``_ITERATED`` try every task at every decision, with no reduction: reduction under a
    bound can lose orders within it.  Higher bounds reduce without sleep sets, and a race
    also backtracks where the task of the racing step began its stretch (the conservative
    branching of Coons, Musuvathi and McKinley, OOPSLA 2013); a bounded search is never
    reported complete when the bound cut something.  Only the unbounded search, which is
    sound, says ``complete``.
    """

    def __init__(self, bound: int | None) -> None:
        self.bound = bound
        self.reduce = bound is None or bound > _ITERATED
        self.nodes: list[_Node] = []
        self.pruned = False
        self.trace: list[_Done] = []
        self.clocks: dict[int, dict[int, int]] = {}
        self.checked: dict[int, int] | None = None  # see _add_backtracking
        self.kept = 0  # steps of the last execution's trace that this one repeats
        self.diverged = False

    def begin(self) -> None:
        # The next execution repeats the decisions of the last one up to the last node (whose
        # choice has changed): the steps before it, with their footprints and what happens
        # before them, are those of the last execution, kept rather than computed again.
        keep = self.kept = len(self.nodes) - 1 if self.nodes else 0
        del self.trace[keep:]
        clocks: dict[int, dict[int, int]] = {}
        for done in reversed(self.trace):
            if done.task not in clocks:
                clocks[done.task] = done.clock
        self.clocks = clocks
        self.checked = None
        self.diverged = False

    def choose(self, run: Run, current: Task | None, enabled: list[Task], default: Task) -> Task:
        depth = len(run.steps)
        if depth < len(self.nodes):
            node = self.nodes[depth]
            indices = tuple([t.index for t in enabled])
            if self.diverged or indices != node.enabled:
                raise UsageError(
                    "the program did not repeat itself: the same decisions led to different "
                    "runnable tasks (does it depend on time, randomness or outside state?)"
                )
            task = enabled[indices.index(node.chosen)]
            if depth < self.kept:
                if task.footprint != self.trace[depth].announced:
                    raise UsageError(
                        "the program did not repeat itself: the same decisions led to a "
                        "different operation (does it depend on time, randomness or outside "
                        "state?)"
                    )
                return task  # the same step as in the last execution, recorded then
        else:
            if self.reduce:
                self._add_backtracking(run, depth)
            node = self._new_node(current, enabled, default)
            self.nodes.append(node)
            task = enabled[node.enabled.index(node.chosen)]
        self._record(task.index, task.footprint, depth, task.footprint)
        return task

    def _new_node(self, current: Task | None, enabled: list[Task], default: Task) -> _Node:
        before = self.nodes[-1] if self.nodes else None
        sleep = self._sleep_after(before) if before is not None and self.bound is None else {}
        cur_enabled = current is not None and current in enabled
        node = _Node(
            enabled=tuple([t.index for t in enabled]),
            fps={t.index: t.footprint for t in enabled},
            current=current.index if current is not None else None,
            current_enabled=cur_enabled,
            preemptions=before.cost(before.chosen) if before is not None else 0,
            sleep=sleep,
            chosen=default.index,
            backtrack=set(),
            done=set(),
            explored=[],
        )
        choice = default.index
        if choice in sleep:
            # the default order from here was covered: the next awake task in turn, if any
            n = len(enabled)
            awake = [t for t in enabled if t.index not in sleep]
            if not awake:
                raise _Redundant
            start = default.index
            choice = min(awake, key=lambda t: (t.index - start) % n).index
        node.chosen = choice
        node.backtrack.add(choice)
        node.done.add(choice)
        node.explored.append(choice)
        if not self.reduce:
            # Every task at every decision: partial-order reduction under a preemption bound
            # can lose orders within the bound, and the first rounds must not.
            node.backtrack.update(node.enabled)
        return node

    @staticmethod
    def _sleep_after(node: _Node) -> dict[int, FootprintT]:
        """The sleep set of the decision after ``node``: what stays covered past its choice."""
        chosen = node.chosen
        fp = node.fps[chosen]
        covered = [*node.sleep.items(), *((task, node.fps[task]) for task in node.explored)]
        return {
            task: other for task, other in covered if task != chosen and not _conflicts(other, fp)
        }

    def _record(self, index: int, fp: FootprintT, depth: int, announced: FootprintT) -> None:
        """Append the step to the trace with its vector clock (what happens before it)."""
        mine = self.clocks.get(index)
        clock = dict(mine) if mine else {}
        if fp is not None:
            trace = self.trace
            for i in range(depth - 1, -1, -1):
                earlier = trace[i]
                task = earlier.task
                if task == index or clock.get(task, -1) >= i:
                    continue  # already ordered before this step, with all that precedes it
                if _conflicts(earlier.footprint, fp):
                    for k, v in earlier.clock.items():
                        if clock.get(k, -1) < v:
                            clock[k] = v
        clock[index] = depth
        self.clocks[index] = clock
        self.trace.append(_Done(index, fp, clock, announced))
        if self.checked is not None:
            self.checked.pop(index, None)  # its next operation is new: check it in full

    def amend(self, run: Run, index: int, fp: FootprintT) -> None:
        """The last step, of task ``index``, turned out to be ``fp``: record it again."""
        depth = len(run.steps) - 1
        if depth < self.kept:
            # a step the last execution made too: it was amended the same way then
            if self.trace[depth].footprint != fp:
                self.diverged = True  # the next decision reports it
            return
        if depth >= len(self.trace) or self.trace[depth].task != index:
            return  # pragma: no cover - the last step is always the amended task's
        announced = self.trace.pop().announced
        before: dict[int, int] = {}
        for earlier in reversed(self.trace):
            if earlier.task == index:
                before = earlier.clock
                break
        self.clocks[index] = before
        if self.reduce:
            self._race(index, fp, before, depth, 0)  # of the operation it really is
        self._record(index, fp, depth, announced)
        self.nodes[depth].fps[index] = fp

    def _add_backtracking(self, run: Run, depth: int) -> None:
        """For each task's next operation, find the last conflicting step it may race with.

        A task's next operation was already checked against the steps before the point it
        was last checked at (in this execution, or in the earlier one this one repeats up to
        its last decision), so only the steps since are scanned, unless it has moved.
        """
        checked = self.checked
        if checked is None:
            # the first new decision: the prefix before the last step was checked by the
            # execution that made it; the task that took the last step has moved on
            checked = self.checked = {t.index: max(depth - 1, 0) for t in run.tasks}
            if self.trace:
                checked.pop(self.trace[-1].task, None)
        for task in run.tasks:
            if task.state == 2:  # done
                continue
            p = task.index
            fp = task.footprint
            lo = checked.get(p, 0)
            checked[p] = depth
            if fp is not None:
                self._race(p, fp, self.clocks.get(p, {}), depth, lo)

    def _race(self, p: int, fp: FootprintT, mine: dict[int, int], depth: int, lo: int) -> None:
        """Backtrack at the last step from ``lo`` on that races with ``p``'s operation ``fp``."""
        for i in range(depth - 1, lo - 1, -1):
            step = self.trace[i]
            if step.task == p or mine.get(step.task, -1) >= i:
                continue  # its own step, or one that happens before its next step
            if _conflicts(step.footprint, fp):
                self._backtrack_at(i, p, mine)
                return

    def _backtrack_at(self, i: int, p: int, mine: dict[int, int]) -> None:
        """Make node ``i`` also try an order in which ``p`` (or what leads to it) runs first."""
        node = self.nodes[i]
        if p in node.enabled:
            wanted = [p]
        else:
            # a task enabled at i whose later step happens before p's next one leads to p
            leads = [q for q in node.enabled if mine.get(q, -1) > i]
            wanted = leads[:1] if leads else list(node.enabled)
        node.backtrack.update(wanted)
        if self.bound is None:
            return
        # Bounded: also where the task of step i began the stretch that step i is part of,
        # where switching costs no more than at i (Coons et al.'s conservative branching).
        task = node.chosen
        j = i
        while j > 0 and self.nodes[j - 1].chosen == task:
            j -= 1
        if j != i:
            start = self.nodes[j]
            candidates = [q for q in wanted if q in start.enabled]
            start.backtrack.update(candidates or start.enabled)

    def advance(self) -> bool:
        """Move to the next unexplored branch; False when the search is over."""
        while self.nodes:
            node = self.nodes[-1]
            for choice in sorted(node.backtrack - node.done):
                node.done.add(choice)
                if choice in node.sleep:
                    continue  # every order starting with it here was covered
                if self.bound is not None and node.cost(choice) > self.bound:
                    self.pruned = True
                    continue
                node.chosen = choice
                node.explored.append(choice)
                return True
            self.nodes.pop()
        return False


@dataclass
class Counterexample:
    """A failing interleaving found by ``explore``; ``replay(cx)`` runs it again."""

    tasks: tuple[Callable[..., Any], ...]
    setup: Callable[[], Any] | None
    invariant: Callable[[Any], object] | None
    schedule: str
    error: BaseException
    table: str
    preemptions: int

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}\n{self.table}"

    def __repr__(self) -> str:
        return summarize_counterexample(self)


@dataclass
class Report:
    """What ``explore`` found.

    Attributes:
        ok: no execution failed.
        complete: every distinct interleaving was checked (no bound or limit cut the search).
        executions: how many runs the search made.
        counterexample: the first failure, minimized, when not ok.
    """

    ok: bool
    complete: bool
    executions: int
    counterexample: Counterexample | None = None
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return describe_report(self)

    def __repr__(self) -> str:
        return summarize_report(self)


class _InvariantFailed(AssertionError):
    pass


def _execute(
    tasks: Sequence[Callable[..., Any]],
    setup: Callable[[], Any] | None,
    invariant: Callable[[Any], object] | None,
    strategy: Any,
    watchdog: float,
    *,
    naming: bool = True,
) -> tuple[Run, BaseException | None]:
    state = setup() if setup is not None else None
    args = (state,) if setup is not None else ()
    run = Run(tasks, args, strategy, watchdog=watchdog, naming=naming)
    failure = run.execute()
    if failure is None and invariant is not None:
        failure = invariant_failure(
            invariant, state, _InvariantFailed, "invariant does not hold after the run"
        )
    return run, failure


def _same_failure(a: BaseException | None, b: BaseException) -> bool:
    return a is not None and type(a) is type(b)


def explore(
    tasks: Sequence[Callable[..., Any]],
    *,
    setup: Callable[[], Any] | None = None,
    invariant: Callable[[Any], object] | None = None,
    max_preemptions: int | None = None,
    max_executions: int = 100_000,
    watchdog: float = 2.0,
) -> Report:
    """Run ``tasks`` under every interleaving that can matter (up to the bounds) and report.

    Each execution calls ``setup()`` for a fresh state, passes it to every task, and checks
    ``invariant(state)`` when all tasks have finished.  A task's exception, a deadlock or a
    false invariant ends the search with a not-ok report whose ``counterexample`` is
    minimized; ``explore`` itself does not raise for them.  The search runs every order
    with no preemption, then with one, then (with no bound) every distinct order, so a bug
    that needs at most one preemption is reported with the fewest there are.

    Args:
        tasks: the callables to run concurrently, each as its own task.
        setup: makes the shared state for one execution (each task gets it as its argument).
        invariant: a predicate on the state after each execution (or asserts inside).
        max_preemptions: the most preemptions per execution; ``None`` checks everything.
        max_executions: stop (incomplete) after this many executions.
        watchdog: seconds before a task stuck outside the scheduler's control is reported.

    Returns:
        A ``Report``; ``report.ok and report.complete`` proves the property for this harness.
    """
    tasks = tuple(tasks)
    if max_preemptions is not None and max_preemptions < 0:
        raise ValueError("max_preemptions must be >= 0 or None")
    if max_executions < 1:
        raise ValueError("max_executions must be >= 1")
    # Iterative preemption bounding (as CHESS does): every order with no preemption, then
    # with one, two, ... so the first failure found needs the fewest preemptions.  The last
    # round has the caller's bound; without one it is unbounded and so complete.
    if max_preemptions is None:
        bounds: list[int | None] = [*range(_ITERATED + 1), None]
    else:
        bounds = list(range(max_preemptions + 1))
    executions = 0
    timeouts = False
    notes: dict[str, None] = {}
    unseen: dict[str, None] = {}
    for bound in bounds:
        search = _Dpor(bound)
        while True:
            search.begin()
            run, failure = _execute(tasks, setup, invariant, search, watchdog, naming=False)
            executions += 1
            timeouts = timeouts or run.used_timeouts
            notes.update(run.notes)
            for what in run.unseen:
                notes[f"not controlled, so not searched: {what}"] = None
            unseen.update(run.unseen)
            if failure is not None and not isinstance(failure, _Redundant):
                cx = _minimize(tasks, setup, invariant, run, failure, watchdog)
                return Report(False, False, executions, cx, list(notes))
            if not search.advance():
                break
            if executions >= max_executions:
                notes[f"stopped at max_executions={max_executions}"] = None
                return Report(True, False, executions, None, list(notes))
        if not search.pruned:
            break  # this bound cut nothing: the search was exhaustive
    else:
        if search.pruned:
            notes[
                f"max_preemptions={max_preemptions}: orders with more preemptions were not run"
            ] = None
    if timeouts:
        notes["timed waits expired in some executions: not a complete search"] = None
    complete = not search.pruned and not timeouts and not unseen
    return Report(True, complete, executions, None, list(notes))


# Bounds searched in full, one after another, before the search with reduction: a bug that
# needs no preemption or one is then reported with the fewest there are, and the rounds cost
# little (every order with one preemption is about steps x tasks executions).
_ITERATED = 1


def _minimize(
    tasks: tuple[Callable[..., Any], ...],
    setup: Callable[[], Any] | None,
    invariant: Callable[[Any], object] | None,
    run: Run,
    failure: BaseException,
    watchdog: float,
) -> Counterexample:
    """Drop forced switches one at a time while the same kind of failure still happens."""
    best_run, best_failure = run, failure
    entries = [(step, nxt) for step, _, nxt in run.deviations]
    improved = True
    while improved and entries:
        improved = False
        for i in range(len(entries)):
            trial = dict(entries[:i] + entries[i + 1 :])
            trial_run, trial_failure = _execute(
                tasks,
                setup,
                invariant,
                _Sparse(trial, by_offset=False, strict=False),
                watchdog,
                naming=False,
            )
            if _same_failure(trial_failure, failure) and (
                trial_run.preemptions <= best_run.preemptions
            ):
                assert trial_failure is not None
                best_run, best_failure = trial_run, trial_failure
                entries = [(step, nxt) for step, _, nxt in trial_run.deviations]
                improved = True
                break
    # Once more, naming the primitives for the report (a search does not name them).
    schedule = {step: nxt for step, _, nxt in best_run.deviations}
    shown, shown_failure = _execute(
        tasks, setup, invariant, _Sparse(schedule, by_offset=False, strict=False), watchdog
    )
    if _same_failure(shown_failure, failure) and shown.preemptions == best_run.preemptions:
        assert shown_failure is not None
        best_run, best_failure = shown, shown_failure
    return Counterexample(
        tasks=tasks,
        setup=setup,
        invariant=invariant,
        schedule=format_schedule(best_run),
        error=best_failure,
        table=describe(best_run),
        preemptions=best_run.preemptions,
    )


@overload
def replay(target: str, *, watchdog: float = 2.0) -> Scheduler: ...
@overload
def replay(target: Counterexample, *, watchdog: float = 2.0) -> None: ...
def replay(target: Counterexample | str, *, watchdog: float = 2.0) -> Scheduler | None:
    """Run a recorded interleaving again.

    ``replay(report.counterexample)`` reruns the failing execution on a fresh ``setup()``
    state and raises its failure (the same way every time); it returns None if the program
    no longer fails.  ``replay("T0@1>T1")`` returns a ``Scheduler`` whose ``run(tasks, args)``
    follows that schedule.

    Raises:
        BaseException: the counterexample's failure, reproduced.
        ValueError: a malformed schedule string, or one that does not fit the program (a
            switch to a task that cannot run at that step, or at a step the run never
            reaches): the program changed, and no other interleaving is run in its place.
    """
    if isinstance(target, str):
        return Scheduler(
            parse_schedule(target), by_offset=False, in_hypothesis=False, watchdog=watchdog
        )
    strategy = _Sparse(parse_schedule(target.schedule), by_offset=False, strict=True)
    run, failure = _execute(target.tasks, target.setup, target.invariant, strategy, watchdog)
    if failure is not None:
        add_note(failure, describe(run))
        raise failure
    strategy.check_used(run)
    return None
