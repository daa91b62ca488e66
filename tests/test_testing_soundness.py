"""A controlled run proves only what it saw: every blind spot is a switch point or a note.

Each test here is a program on which ``explore`` used to say ``ok=True, complete=True`` while
an interleaving (or a random draw) it never tried breaks it.  The buggy version must now be
found, and the fixed one proven complete (or the report must say it is incomplete, and why).
"""

from __future__ import annotations

import asyncio
import queue
import random
import subprocess
import time
from collections.abc import Callable
from time import monotonic, sleep
from time import time as wall_clock
from typing import Any

import pytest
from hypothesis import given, settings

import taskkit
from taskkit import Deadlock
from taskkit.testing import Report, explore, interleavings, replay

# -- snapshot reads of taskkit's primitives ---------------------------------------------------


@pytest.fixture(scope="module")
def ex() -> Any:
    with taskkit.open_executor("thread") as executor:
        yield executor


def one_item(make: Callable[[], Any]) -> Callable[[], tuple[Any, list[int]]]:
    def setup() -> tuple[Any, list[int]]:
        q = make()
        q.put(1)
        return q, []

    return setup


def take_if_sized(state: tuple[Any, list[int]]) -> None:
    q, got = state
    if q.qsize() > 0:
        got.append(q.get())


def take_if_not_empty(state: tuple[Any, list[int]]) -> None:
    q, got = state
    if not q.empty():
        got.append(q.get())


def take_if_there(state: tuple[Any, list[int]]) -> None:
    q, got = state
    try:
        got.append(q.get_nowait())
    except queue.Empty:
        pass


@pytest.mark.parametrize("task", [take_if_sized, take_if_not_empty])
def test_check_then_get_on_a_taskkit_queue_deadlocks(ex: Any, task: Any) -> None:
    report = explore([task, task], setup=one_item(ex.queue))
    assert not report.ok, report
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)
    assert report.counterexample.preemptions == 1

    s = replay("T0@1>T1")
    assert s is not None
    with pytest.raises(Deadlock):
        s.run([task, task], args=(one_item(ex.queue)(),))


@pytest.mark.timeout(60)
def test_snapshot_reads_of_process_primitives_are_switch_points() -> None:
    with taskkit.open_executor("process", max_workers=1) as pex:
        report = explore([take_if_sized, take_if_sized], setup=one_item(pex.queue))
        assert report.counterexample is not None
        assert isinstance(report.counterexample.error, Deadlock)
        gates = explore(
            [claim_if_unset, claim_if_unset],
            setup=lambda: Gate(pex),
            invariant=lambda g: g.claims == 1,
        )
        assert not gates.ok, gates


def test_check_then_get_on_a_stdlib_queue_deadlocks() -> None:
    report = explore([take_if_sized, take_if_sized], setup=one_item(queue.Queue))
    assert not report.ok
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)


def test_get_nowait_on_a_taskkit_queue_is_proven(ex: Any) -> None:
    report = explore([take_if_there, take_if_there], setup=one_item(ex.queue))
    assert report.ok, report
    assert report.complete, report


class Gate:
    """Check-then-act on each snapshot a taskkit primitive offers."""

    def __init__(self, ex: Any) -> None:
        self.lock = ex.lock()
        self.event = ex.event()
        self.sem = ex.semaphore(1)
        self.value = ex.value(0)
        self.claims = 0


def claim_if_unlocked(g: Gate) -> None:
    if not g.lock.locked():
        g.lock.acquire(timeout=0)
        g.claims += 1


def claim_if_unset(g: Gate) -> None:
    if not g.event.is_set():
        g.event.set()
        g.claims += 1


def claim_if_free(g: Gate) -> None:
    if g.sem.value > 0:
        g.sem.acquire(timeout=0)
        g.claims += 1


def claim_if_zero(g: Gate) -> None:
    if g.value.get() == 0:
        g.value.set(1)
        g.claims += 1


@pytest.mark.parametrize("task", [claim_if_unlocked, claim_if_unset, claim_if_free, claim_if_zero])
def test_a_snapshot_read_is_a_switch_point(ex: Any, task: Any) -> None:
    report = explore([task, task], setup=lambda: Gate(ex), invariant=lambda g: g.claims == 1)
    assert not report.ok, report


# -- module globals rebound by another task ---------------------------------------------------

SETTINGS = {"version": 1, "url": "https://old.example"}


def reset_settings() -> list[tuple[object, object]]:
    global SETTINGS
    SETTINGS = {"version": 1, "url": "https://old.example"}
    return []


def publish(seen: list[tuple[object, object]]) -> None:
    global SETTINGS
    SETTINGS = {"version": 2, "url": "https://new.example"}


def read_twice(seen: list[tuple[object, object]]) -> None:
    version = SETTINGS["version"]
    url = SETTINGS["url"]
    seen.append((version, url))


def read_once(seen: list[tuple[object, object]]) -> None:
    settings = SETTINGS
    seen.append((settings["version"], settings["url"]))


def consistent(seen: list[tuple[object, object]]) -> bool:
    return seen[0] in ((1, "https://old.example"), (2, "https://new.example"))


def test_reads_of_a_rebound_global_are_shared_accesses() -> None:
    report = explore([read_twice, publish], setup=reset_settings, invariant=consistent)
    assert not report.ok, report
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1


def test_hypothesis_finds_the_torn_pair() -> None:
    @settings(derandomize=True, database=None, deadline=None, print_blob=False)
    @given(s=interleavings())
    def prop(s: Any) -> None:
        seen = reset_settings()
        s.run([read_twice, publish], args=(seen,))
        assert consistent(seen), seen

    with pytest.raises(AssertionError):
        prop()


def test_one_read_of_a_rebound_global_is_proven() -> None:
    report = explore([read_once, publish], setup=reset_settings, invariant=consistent)
    assert report.ok, report
    assert report.complete, report
    assert report.executions >= 2  # the read was tried before and after the rebinding


# -- what a task does that the run cannot control ---------------------------------------------


async def _append(items: list[int]) -> None:
    items.append(1)


def own_event_loop(items: list[int]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_append(items))
    finally:
        loop.close()


def test_a_task_running_an_event_loop_of_its_own_makes_the_report_incomplete() -> None:
    report = explore([own_event_loop, own_event_loop], setup=list)
    assert report.ok, report
    assert not report.complete
    assert any("event loop of its own" in note for note in report.notes), report.notes


def draws(items: list[float]) -> None:
    if random.random() < 0.5:
        items.append(0.0)
    else:
        items.extend((1.0, 2.0))
    items.append(random.Random().random())


def test_random_is_seeded_the_same_in_every_execution_and_the_report_says_so() -> None:
    reports: list[Report] = [explore([draws, draws], setup=list) for _ in range(3)]
    assert all(r.ok and r.complete for r in reports), reports
    assert len({r.executions for r in reports}) == 1  # the same search every time
    assert any("random was seeded" in note for note in reports[0].notes), reports[0].notes
    quiet = explore([read_once, publish], setup=reset_settings)
    assert not any("random" in note for note in quiet.notes)


def test_random_outside_a_run_is_left_as_it_was() -> None:
    random.seed(1234)
    expected = random.Random(1234).random()
    explore([draws], setup=list)
    assert random.random() == expected


def test_os_urandom_makes_the_report_incomplete() -> None:
    import uuid

    def ident(items: list[object]) -> None:
        items.append(uuid.uuid4())

    report = explore([ident], setup=list)
    assert not report.complete
    assert any("urandom" in note for note in report.notes), report.notes


# -- time -------------------------------------------------------------------------------------


def nap(stamps: list[float]) -> None:
    start = monotonic()
    sleep(3600)
    stamps.append(monotonic() - start)
    stamps.append(wall_clock())


@pytest.mark.timeout(30)
def test_time_functions_imported_by_name_are_virtual() -> None:
    before = wall_clock()
    report = explore([nap], setup=list, invariant=lambda stamps: abs(stamps[0] - 3600) < 1e-6)
    assert report.ok, report

    stamps: list[float] = []
    s = replay("")
    assert s is not None
    s.run([nap], args=(stamps,))
    assert stamps[0] == pytest.approx(3600)
    assert stamps[1] >= before + 3600  # the wall clock moved on by the virtual hour
    assert sleep is time.sleep  # rebound for the run only
    assert monotonic is time.monotonic


def library_clock(stamps: list[float]) -> None:
    start = subprocess._time()  # type: ignore[attr-defined]  # the standard library's alias
    sleep(100)
    stamps.append(subprocess._time() - start)  # type: ignore[attr-defined]


def test_a_clock_a_library_imported_by_name_is_virtual_too() -> None:
    report = explore([library_clock], setup=list, invariant=lambda s: abs(s[0] - 100) < 1e-6)
    assert report.ok, report


def measured(stamps: list[float], clock: Callable[[], float] = time.monotonic) -> None:
    stamps.append(clock())


def test_a_clock_the_run_cannot_rebind_makes_the_report_incomplete() -> None:
    report = explore([measured], setup=list)
    assert not report.complete
    assert any("time.monotonic" in note for note in report.notes), report.notes
