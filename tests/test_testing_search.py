"""The search: shallowest bug first, sound reduction, schedules that refuse not to fit."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taskkit.testing import _search, explore, replay
from taskkit.testing._runtime import Run, Task
from taskkit.testing._search import Scheduler

pytestmark = pytest.mark.timeout(120)


class Shelf:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[int] = []
        self.got: list[int] = []


def consumer_if(s: Shelf) -> None:
    with s.cond:
        if not s.items:  # the bug: another consumer may take the item before this one wakes
            s.cond.wait()
        s.got.append(s.items.pop())


def consumer_while(s: Shelf) -> None:
    with s.cond:
        while not s.items:
            s.cond.wait()
        s.got.append(s.items.pop())


def producer(s: Shelf) -> None:
    for i in range(2):
        with s.cond:
            s.items.append(i)
            s.cond.notify()


def producer_all(s: Shelf) -> None:
    with s.cond:
        s.items.extend([0, 1])
        s.cond.notify_all()


def both_taken(s: Shelf) -> bool:
    return sorted(s.got) == [0, 1]


def test_the_shallowest_bug_is_found_first() -> None:
    report = explore([consumer_if, consumer_if, producer], setup=Shelf, invariant=both_taken)
    assert not report.ok
    cx = report.counterexample
    assert cx is not None
    assert isinstance(cx.error, IndexError)
    assert cx.preemptions == 1  # one suffices; a depth-first search reported two
    assert report.executions < 1_000  # depth-first took 13,265
    with pytest.raises(IndexError):
        replay(cx)


def test_a_bound_reports_what_it_cut() -> None:
    report = explore(
        [consumer_while, consumer_while, producer_all],
        setup=Shelf,
        invariant=both_taken,
        max_preemptions=0,
    )
    assert report.ok
    assert not report.complete
    assert any("max_preemptions=0" in note for note in report.notes)


def test_the_fixed_condition_program_is_proven() -> None:
    report = explore(
        [consumer_while, consumer_while, producer_all], setup=Shelf, invariant=both_taken
    )
    assert report.ok, report
    assert report.complete, report


def test_a_search_repeats_itself_within_one_process() -> None:
    # Footprints once named objects by address: a later search in the same process could
    # compare addresses of different executions and cut orders it had not run.
    def search() -> tuple[int, str]:
        r = explore([consumer_if, consumer_if, producer], setup=Shelf, invariant=both_taken)
        assert r.counterexample is not None
        return r.executions, r.counterexample.schedule

    explore([consumer_while, producer_all], setup=Shelf, max_preemptions=0)
    first = search()
    assert search() == first


def test_one_preemption_of_interleavings_reaches_a_one_preemption_bug() -> None:
    # max_preemptions counts preemptions: the free choices where a task blocks or ends (who
    # goes on) are drawn apart, so a schedule with one entry reaches this bug.  When every
    # forced switch counted, it needed three and max_preemptions=1 could never find it.
    def fails(entries: dict[int, int], rank: tuple[int, ...]) -> bool:
        shelf = Shelf()
        s = Scheduler(entries, by_offset=True, in_hypothesis=False, rank=rank)
        try:
            s.run([consumer_if, consumer_if, producer], (shelf,))
        except IndexError:
            return True
        return not both_taken(shelf)

    ranks = list(itertools.permutations(range(3)))
    found = [
        (at, to, rank)
        for rank in ranks
        for at in range(30)
        for to in range(2)
        if fails({at: to}, rank)
    ]
    assert found


# -- schedules that do not fit ---------------------------------------------------------------


class Box:
    value = 0


def bump(b: Box) -> None:
    b.value += 1


def test_a_schedule_past_the_end_of_the_run_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        replay("T0@500>T1").run([bump, bump], (Box(),))


def test_a_schedule_naming_a_task_that_cannot_run_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        replay("T0@1>T7").run([bump, bump], (Box(),))


# -- soundness of the reduction: every outcome of every order is reached ---------------------


class Cells:
    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.lock = threading.Lock()
        self.items: list[int] = []
        self.out: dict[int, tuple[int, ...]] = {}


SNIPPETS = {
    "read x": "seen.append(c.x)",
    "read y": "seen.append(c.y)",
    "write x": "c.x = {me} + 1",
    "add y": "c.y += {me} + 1",
    "locked": "with c.lock:\n        c.x = c.x * 2 + {me}",
    "push": "c.items.append({me})",
    # Check, then act: another task may take the item in between (a lost race, seen as -1
    # rather than raised, so that every order has an outcome to compare).
    "take": "if c.items:\n        try:\n            seen.append(c.items.pop())\n"
    "        except IndexError:\n            seen.append(-1)",
    "count": "seen.append(len(c.items))",
    "check": "seen.append(1 if c.items else 0)",
}


def make_task(me: int, ops: list[str]) -> Any:
    """Compile a task from snippets: generated code is traced like the caller's own."""
    body = "\n    ".join(SNIPPETS[op].format(me=me) for op in ops)
    source = f"def task(c):\n    seen = []\n    {body}\n    c.out[{me}] = tuple(seen)\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<task {me}>", "exec"), namespace)
    return namespace["task"]


def outcome(c: Cells) -> tuple[object, ...]:
    return (c.x, c.y, tuple(c.items), tuple(sorted(c.out.items())))


class EveryOrder:
    """A plain depth-first search over every choice at every switch point: no reduction."""

    def __init__(self) -> None:
        self.path: list[tuple[list[int], int]] = []  # (enabled, chosen index into it)

    def choose(self, run: Run, current: Task | None, enabled: list[Task], default: Task) -> Task:
        depth = len(run.steps)
        if depth == len(self.path):
            self.path.append(([t.index for t in enabled], 0))
        indices, at = self.path[depth]
        return next(t for t in enabled if t.index == indices[at])

    def advance(self) -> bool:
        while self.path:
            indices, at = self.path.pop()
            if at + 1 < len(indices):
                self.path.append((indices, at + 1))
                return True
        return False


def every_outcome(
    tasks: list[Any], setup: Callable[[], Any], outcome: Callable[[Any], object], limit: int
) -> set[object] | None:
    """Every outcome of every order, or None if there are more than ``limit`` orders."""
    found = set()
    search = EveryOrder()
    for _ in range(limit):
        state = setup()
        assert Run(tasks, (state,), search).execute() is None
        found.add(outcome(state))
        if not search.advance():
            return found
    return None


def explored_outcomes(
    tasks: list[Any], setup: Callable[[], Any], outcome: Callable[[Any], object]
) -> set[object]:
    """The outcomes of the executions a complete ``explore`` ran."""
    reached = set()

    def record(state: Any) -> bool:
        reached.add(outcome(state))
        return True

    report = explore(tasks, setup=setup, invariant=record)
    assert report.ok
    assert report.complete
    return reached


@pytest.fixture
def reduction_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the rounds that try every order with at most one preemption: they would cover
    for the reduction in small programs, and the reduction is what these tests check."""
    monkeypatch.setattr(_search, "_ITERATED", -1)


@pytest.mark.parametrize(
    "programs",
    [
        [["check"], ["push"]],  # a truth test of a list loaded from an attribute
        [["count", "read x"], ["push", "write x"]],
        [["take"], ["take", "push"]],
        [["locked"], ["add y", "locked"]],
        [["push", "take"], ["take"]],  # a take that loses the race to the other
    ],
)
@pytest.mark.usefixtures("reduction_only")
def test_explore_reaches_every_outcome_of_these_programs(programs: list[list[str]]) -> None:
    tasks = [make_task(i, ops) for i, ops in enumerate(programs)]
    expected = every_outcome(tasks, Cells, outcome, limit=100_000)
    assert explored_outcomes(tasks, Cells, outcome) == expected


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much],
)
@given(
    st.lists(
        st.lists(st.sampled_from(sorted(SNIPPETS)), min_size=1, max_size=2), min_size=2, max_size=2
    )
)
def test_explore_reaches_every_outcome_that_some_order_reaches(programs: list[list[str]]) -> None:
    tasks = [make_task(i, ops) for i, ops in enumerate(programs)]
    expected = every_outcome(tasks, Cells, outcome, limit=800)
    assume(expected is not None)
    with mock.patch.object(_search, "_ITERATED", -1):  # as reduction_only does
        assert explored_outcomes(tasks, Cells, outcome) == expected


class Rebound:
    def __init__(self) -> None:
        self.box: object = 0
        self.seen: object = None


def reads_box(s: Rebound) -> None:
    s.seen = s.box == []  # an int when this task reached the read; a list by the time it ran


def rebinds_box(s: Rebound) -> None:
    s.box = []


def fills_box(s: Rebound) -> None:
    if s.box == []:
        s.box.append(1)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("reduction_only")
def test_a_read_whose_value_changed_while_it_waited_is_searched_as_what_it_read() -> None:
    tasks = [reads_box, rebinds_box, fills_box]

    def outcome(s: Rebound) -> tuple[object, object]:
        return (s.seen, repr(s.box))

    expected = every_outcome(tasks, Rebound, outcome, limit=100_000)
    assert expected is not None
    assert (True, "[1]") in expected
    assert explored_outcomes(tasks, Rebound, outcome) == expected


class Wrapped:
    def __init__(self) -> None:
        self.items = collections.UserList[int]()
        self.seen: int | None = None


def checks_wrapped(s: Wrapped) -> None:
    s.seen = 1 if s.items else 0  # UserList.__len__, untraced, reads .data unseen


def fills_wrapped(s: Wrapped) -> None:
    s.items.data.append(1)


@pytest.mark.usefixtures("reduction_only")
def test_a_read_of_a_standard_library_container_class_conflicts_with_its_items() -> None:
    tasks = [checks_wrapped, fills_wrapped]

    def seen(s: Wrapped) -> object:
        return s.seen

    assert every_outcome(tasks, Wrapped, seen, limit=100_000) == {0, 1}
    assert explored_outcomes(tasks, Wrapped, seen) == {0, 1}
