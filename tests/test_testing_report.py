"""What a report says: primitives by name, current state, collapsed rows, no framework rows."""

from __future__ import annotations

import threading
from collections import namedtuple
from typing import Any

import pytest

import taskkit
from taskkit import Deadlock
from taskkit.testing import explore, replay


class Bank:
    def __init__(self) -> None:
        self.alice = threading.Lock()
        self.bob = threading.Lock()
        self.moved = 0


def alice_then_bob(bank: Bank) -> None:
    with bank.alice, bank.bob:
        bank.moved += 1


def bob_then_alice(bank: Bank) -> None:
    with bank.bob, bank.alice:
        bank.moved += 1


def test_a_deadlock_names_locks_by_the_attribute_code_reached_them_by() -> None:
    report = explore([alice_then_bob, bob_then_alice], setup=Bank)
    assert report.counterexample is not None
    error = report.counterexample.error
    assert isinstance(error, Deadlock)
    message = str(error)
    assert "waits for bank.bob <locked Lock>, held by T1" in message
    assert "waits for bank.alice <locked Lock>, held by T0" in message
    assert "0x" not in message
    assert "0x" not in report.counterexample.table


@pytest.fixture(scope="module")
def ex() -> Any:
    with taskkit.open_executor("thread") as executor:
        yield executor


def test_a_deadlock_describes_a_queue_as_it_is_when_reported(ex: Any) -> None:
    def take_if_sized(state: tuple[Any, list[int]]) -> None:
        q, got = state
        if q.qsize() > 0:
            got.append(q.get())

    def setup() -> tuple[Any, list[int]]:
        q = ex.queue()
        q.put(1)
        return q, []

    report = explore([take_if_sized, take_if_sized], setup=setup)
    assert report.counterexample is not None
    assert "waits for get() on q <taskkit Queue 0 items>" in str(report.counterexample.error)
    assert "queue.qsize on q" in report.counterexample.table


balance = 0


def change_many(n: int) -> None:
    global balance
    for _ in range(12):
        balance = balance + n
        balance = balance - n


def test_collapsed_rows_name_the_access_that_was_preempted() -> None:
    global balance
    balance = 0
    s = replay("T0@30>T1")
    assert s is not None
    s.run([change_many, change_many], args=(5,))
    run = s.last_run
    assert run is not None
    assert len(run.steps) > 40  # long enough to be shown collapsed
    from taskkit.testing._report import format_table

    table = format_table(run)
    rows = table.splitlines()
    assert len(rows) < len(run.steps)
    preempted = [row for row in rows if "preempted before" in row]
    assert len(preempted) == 1
    pending = run.steps[30]
    assert pending.task == 1
    # T0 was about to perform its next step, the one at which T1 was switched in
    t0_next = next(step for step in run.steps[31:] if step.task == 0)
    assert f"preempted before {t0_next.op}" in preempted[0]


Point = namedtuple("Point", "x y")


def make_points(points: list[Any]) -> None:
    points.append(Point(1, 2))


def test_a_namedtuple_is_built_without_switch_points_of_its_own() -> None:
    s = replay("")
    assert s is not None
    s.run([make_points], args=([],))
    run = s.last_run
    assert run is not None
    assert not any("tuple.__new__" in step.op for step in run.steps)
    assert not any(step.where and step.where[0] == "<string>" for step in run.steps)
