"""taskkit.testing: the controlled runtime, its reports, replay, the watchdog and stress mode."""

from __future__ import annotations

import _thread
import asyncio
import functools
import queue
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis.database import InMemoryExampleDatabase

from taskkit import Deadlock
from taskkit._core import _control
from taskkit.testing import (
    checkpoint,
    explore,
    interleavings,
    replay,
    stress,
)

SEARCH = settings(derandomize=True, database=None, deadline=None, print_blob=False)

# -- programs ---------------------------------------------------------------------------------

balance = 0


def change_it(n: int) -> None:
    global balance
    balance = balance + n
    balance = balance - n


@dataclass
class Pair:
    a: threading.Lock = field(default_factory=threading.Lock)
    b: threading.Lock = field(default_factory=threading.Lock)


def ab(p: Pair) -> None:
    with p.a, p.b:
        pass


def ba(p: Pair) -> None:
    with p.b, p.a:
        pass


@dataclass
class Box:
    value: int = 0


def bump(box: Box) -> None:
    box.value = box.value + 1


# -- the controlled runtime ----------------------------------------------------------------------


def test_imported_testing_makes_locks_controllable_and_they_still_work() -> None:
    lock, rlock = threading.Lock(), threading.RLock()
    assert type(lock).__name__ == "lock"  # as the C type is named
    assert type(lock).__module__.startswith("taskkit")
    assert lock.acquire()
    assert lock.locked()
    assert not lock.acquire(timeout=0.01)
    lock.release()
    assert not lock.locked()
    with rlock, rlock:
        assert rlock._is_owned()  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        rlock.release()
    hits: list[int] = []

    def worker(i: int) -> None:
        with lock:
            hits.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(hits) == [0, 1, 2, 3]


def test_one_task_runs_at_a_time_and_every_switch_is_recorded() -> None:
    s = replay("")
    assert s is not None
    box = Box()
    s.run([bump, bump, bump], args=(box,))
    assert box.value == 3  # no preemption: each task runs to its end in turn
    run = s.last_run
    assert run is not None
    assert run.preemptions == 0
    assert [step.task for step in run.steps] == [0, 0, 1, 1, 2, 2]
    assert {step.op for step in run.steps} == {"read .value", "write .value"}


def test_replayed_schedule_string_gives_the_same_run_every_time() -> None:
    global balance
    results = set()
    for _ in range(5):
        balance = 0
        s = replay("T0@1>T1,T1@3>T0")
        assert s is not None
        s.run([change_it, change_it], args=(5,))
        results.add((balance, s.schedule))
    assert results == {(-5, "T0@1>T1,T1@3>T0")}


def test_a_schedule_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="bad schedule entry"):
        replay("T0->T1")
    s = replay("T0@1>T7")
    assert s is not None
    with pytest.raises(ValueError, match="does not fit"):
        s.run([bump, bump], args=(Box(),))


def test_task_exception_leaves_run_with_the_interleaving_attached() -> None:
    def boom(box: Box) -> None:
        box.value += 1
        raise KeyError("boom")

    s = replay("")
    assert s is not None
    with pytest.raises(KeyError) as info:
        s.run([bump, boom], args=(Box(),))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "T1 failed: KeyError" in notes
    assert "schedule:" in notes


def test_deadlock_names_tasks_what_they_wait_for_and_who_holds_it() -> None:
    report = explore([ab, ba], setup=Pair)
    assert not report.ok
    cx = report.counterexample
    assert cx is not None
    error = cx.error
    assert isinstance(error, Deadlock)
    assert set(error.waiting) == {"T0", "T1"}
    assert "held by T1" in error.waiting["T0"]
    assert "held by T0" in error.waiting["T1"]
    assert "test_testing.py" in error.waiting["T0"]
    assert cx.preemptions == 1
    assert "preempt" in cx.table


def test_deadlock_leaves_run_as_deadlock() -> None:
    report = explore([ab, ba], setup=Pair)
    assert report.counterexample is not None
    s = replay(report.counterexample.schedule)
    assert s is not None
    with pytest.raises(Deadlock, match="no task can proceed"):
        s.run([ab, ba], args=(Pair(),))


def test_replay_of_a_counterexample_fails_the_same_way_every_time() -> None:
    report = explore([ab, ba], setup=Pair)
    assert report.counterexample is not None
    messages = set()
    for _ in range(5):
        with pytest.raises(Deadlock) as info:
            replay(report.counterexample)
        messages.add(str(info.value).splitlines()[0])
    assert len(messages) == 1


def test_same_search_twice_gives_same_executions_and_counterexample() -> None:
    def setup() -> None:
        global balance
        balance = 0

    def run() -> Any:
        return explore(
            [lambda _: change_it(3), lambda _: change_it(4)],
            setup=setup,
            invariant=lambda _: balance == 0,
        )

    first, second = run(), run()
    assert first.counterexample is not None
    assert second.counterexample is not None
    assert first.executions == second.executions
    assert first.counterexample.schedule == second.counterexample.schedule
    assert first.counterexample.preemptions == 2


def test_preemption_bound_limits_the_search() -> None:
    def setup() -> None:
        global balance
        balance = 0

    tasks = [lambda _: change_it(3), lambda _: change_it(4)]
    bounded = explore(tasks, setup=setup, invariant=lambda _: balance == 0, max_preemptions=1)
    assert bounded.ok
    assert not bounded.complete
    found = explore(tasks, setup=setup, invariant=lambda _: balance == 0, max_preemptions=2)
    assert not found.ok


def test_complete_check_of_a_three_task_locked_counter() -> None:
    lock = threading.Lock()

    def inc(box: Box) -> None:
        with lock:
            box.value += 1

    report = explore([inc, inc, inc], setup=Box, invariant=lambda b: b.value == 3)
    assert report.ok
    assert report.complete
    assert report.executions == 6  # one per order of the three critical sections
    assert "every interleaving" in str(report)


def test_unlocked_counter_three_tasks_is_caught() -> None:
    report = explore([bump, bump, bump], setup=Box, invariant=lambda b: b.value == 3)
    assert not report.ok
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1


# -- the stdlib's primitives inside a run ----------------------------------------------------------


def test_queue_handoff_is_checked_completely() -> None:
    def producer(q: queue.Queue[int]) -> None:
        q.put(1)
        q.put(2)

    def consumer(q: queue.Queue[int]) -> None:
        assert [q.get(), q.get()] == [1, 2]

    report = explore([producer, consumer], setup=queue.Queue)
    assert report.ok, str(report)
    assert report.complete


def test_waiting_for_an_item_that_never_comes_is_a_deadlock() -> None:
    def producer(q: queue.Queue[int]) -> None:
        q.put(1)

    def consumer(q: queue.Queue[int]) -> None:
        q.get()
        q.get()

    report = explore([producer, consumer], setup=queue.Queue)
    assert report.counterexample is not None
    error = report.counterexample.error
    assert isinstance(error, Deadlock)
    assert list(error.waiting) == ["T1"]
    assert "notify() on q.not_empty <Condition" in error.waiting["T1"]


def test_event_and_semaphore_block_under_the_scheduler() -> None:
    @dataclass
    class State:
        ready: threading.Event = field(default_factory=threading.Event)
        slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))
        inside: int = 0
        most: int = 0

    def worker(s: State) -> None:
        s.ready.wait()
        with s.slots:
            s.inside += 1
            s.most = max(s.most, s.inside)
            s.inside -= 1

    def starter(s: State) -> None:
        s.ready.set()

    # calls into the standard library may touch anything, so the full search is large:
    # bound it (every schedule with at most one preemption)
    report = explore(
        [worker, worker, starter],
        setup=State,
        invariant=lambda s: s.most == 1,
        max_preemptions=1,
    )
    assert report.ok, str(report)
    assert report.executions > 10


def test_timeouts_are_virtual_and_expire_only_when_nothing_else_can_run() -> None:
    @dataclass
    class State:
        cond: threading.Condition = field(default_factory=threading.Condition)
        log: list[str] = field(default_factory=list)

    def sleeper(s: State) -> None:
        time.sleep(3600)
        s.log.append("slept")

    def waiter(s: State) -> None:
        with s.cond:
            s.log.append("timeout" if not s.cond.wait(timeout=30) else "woken")

    def worker(s: State) -> None:
        s.log.append("work")

    state = State()
    s = replay("")
    assert s is not None
    start = time.perf_counter()
    s.run([sleeper, waiter, worker], args=(state,))
    assert time.perf_counter() - start < 5
    assert state.log == ["work", "timeout", "slept"]


def test_watchdog_reports_a_blocking_call_the_scheduler_does_not_control() -> None:
    raw = _thread.allocate_lock()  # a raw lock: invisible to the scheduler

    def holder(_: object) -> None:
        with raw:
            checkpoint()

    def blocker(_: object) -> None:
        with raw:
            pass

    s = replay("T0@1>T1")
    assert s is not None
    s._watchdog = 0.3
    with pytest.raises(Deadlock, match="does not control"):
        s.run([holder, blocker], args=(None,))
    with raw:  # the run released it while unwinding
        pass


def test_watchdog_reports_a_task_that_blocks_before_its_first_switch_point() -> None:
    gate = _thread.allocate_lock()  # a raw lock: invisible to the scheduler
    gate.acquire()
    blocked = functools.partial(gate.acquire)  # no traced code runs before it

    def other(_: object) -> None:
        checkpoint()

    s = replay("")
    assert s is not None
    s._watchdog = 0.3
    try:
        with pytest.raises(Deadlock, match="does not control"):
            s.run([lambda _: blocked(), other], args=(None,))
    finally:
        gate.release()  # the abandoned task's thread returns and ends


# -- coroutine tasks -------------------------------------------------------------------------------


def test_async_tasks_switch_at_awaits_and_mix_with_threads() -> None:
    order: list[str] = []

    async def co(tag: str) -> None:
        order.append(f"{tag}1")
        await checkpoint()
        order.append(f"{tag}2")

    def plain(_: object) -> None:
        order.append("p1")
        checkpoint()
        order.append("p2")

    async def a(_: object) -> None:
        await co("a")

    async def b(_: object) -> None:
        await co("b")

    s = replay("-@0>T1,T1@1>T2,T2@3>T0")
    assert s is not None
    s.run([a, plain, b], args=(None,))
    assert order == ["p1", "b1", "a1", "a2", "p2", "b2"]


class _Foreign:
    """An awaitable of another event loop: it yields what asyncio cannot wait for."""

    def __await__(self) -> Generator[str, None, None]:
        yield "a request for some other loop"


def test_an_awaitable_the_scheduler_cannot_run_is_reported() -> None:
    async def uses_asyncio(_: object) -> None:
        await _Foreign()

    s = replay("")
    assert s is not None
    with pytest.raises((TypeError, RuntimeError)):
        s.run([uses_asyncio], args=(None,))


def test_checkpoint_outside_a_run_does_nothing() -> None:
    checkpoint()

    async def main() -> int:
        await checkpoint()
        return 7

    assert asyncio.run(main()) == 7


# -- the hook protocol for primitives --------------------------------------------------------------


class Mailbox:
    """A primitive written against taskkit._core._control, as taskkit's own primitives are."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.cond = threading.Condition()

    def put(self, item: int) -> None:
        if _control.controlled():
            _control.switch("mailbox.put", self)
            self.items.append(item)
            return
        with self.cond:
            self.items.append(item)
            self.cond.notify()

    def get(self) -> int:
        if _control.controlled():
            _control.wait_until(lambda: bool(self.items), f"get() on {self!r}", self)
            return self.items.pop(0)
        with self.cond:
            self.cond.wait_for(lambda: bool(self.items))
            return self.items.pop(0)

    async def aget(self) -> int:
        if _control.controlled():
            await _control.await_until(lambda: bool(self.items), "aget()", self)
            return self.items.pop(0)
        raise NotImplementedError


def test_a_primitive_written_to_the_hook_protocol_is_scheduled() -> None:
    def send(m: Mailbox) -> None:
        m.put(1)

    def receive(m: Mailbox) -> None:
        assert m.get() == 1

    async def areceive(m: Mailbox) -> None:
        assert await m.aget() == 1

    assert explore([send, receive], setup=Mailbox).complete
    assert explore([send, areceive], setup=Mailbox).ok
    report = explore([receive], setup=Mailbox)
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)
    assert "get() on" in str(report.counterexample.error)
    assert not _control.active()
    box = Mailbox()
    box.put(3)
    assert box.get() == 3  # outside a run: the real implementation


# -- Hypothesis ------------------------------------------------------------------------------------


def test_hypothesis_database_replays_the_failing_interleaving_first() -> None:
    db = InMemoryExampleDatabase()
    calls: list[int] = []

    # The search finds this lost update after 4 to 71 examples (30 seeds); Hypothesis's
    # default budget of 100 missed it in one of six full suite runs here.  A budget of 1000
    # makes a miss all but impossible: the search stops at the first failure anyway.
    @settings(database=db, deadline=None, print_blob=False, derandomize=False, max_examples=1000)
    @given(s=interleavings())
    def prop(s: Any) -> None:
        global balance
        balance = 0
        calls.append(1)
        s.run([change_it, change_it], args=(5,))
        assert balance == 0

    with pytest.raises(AssertionError):
        prop()
    calls.clear()
    with pytest.raises(AssertionError):
        prop()
    assert len(calls) <= 2  # the saved example failed at once (and once more to report it)


def test_interleavings_rejects_a_negative_bound() -> None:
    with pytest.raises(ValueError):
        interleavings(max_preemptions=-1)


@SEARCH
@given(s=interleavings(max_preemptions=0))
def test_no_preemptions_means_tasks_run_in_turn(s: Any) -> None:
    box = Box()
    s.run([bump, bump], args=(box,))
    assert box.value == 2


# -- stress mode -----------------------------------------------------------------------------------


def test_stress_reports_failures_and_restores_the_switch_interval() -> None:
    import sys

    before = sys.getswitchinterval()
    lock = threading.Lock()

    def locked_bump(box: Box) -> None:
        with lock:
            box.value += 1

    clean = stress([locked_bump] * 3, setup=Box, invariant=lambda b: b.value == 3, iterations=20)
    assert clean.ok
    assert clean.iterations == 20
    assert "evidence, not proof" in str(clean)
    broken = stress([bump], setup=Box, invariant=lambda b: b.value == 2, iterations=5)
    assert not broken.ok
    assert broken.failures == 5
    assert sys.getswitchinterval() == before


# -- taskkit's executor inside a controlled run ---------------------------------------------------


def test_a_race_inside_work_submitted_to_the_serial_executor_is_found() -> None:
    import taskkit

    def via_executor(box: Box) -> None:
        with taskkit.open_executor("serial") as ex:
            ex.submit(bump, box).result()

    report = explore([via_executor, via_executor], setup=Box, invariant=lambda b: b.value == 2)
    assert not report.ok
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1
