"""``Condition.wait_for`` has the switch points of the loop it stands for."""

from __future__ import annotations

import threading

import pytest

from taskkit import Deadlock
from taskkit.testing import _search, explore, replay


class Shelf:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[int] = []


def wait_loop(s: Shelf) -> None:
    with s.cond:
        while not s.items:
            s.cond.wait()


def wait_for(s: Shelf) -> None:
    with s.cond:
        s.cond.wait_for(lambda: s.items)


def wait_for_builtin(s: Shelf) -> None:
    with s.cond:
        s.cond.wait_for(s.items.__len__)  # a predicate the tracer cannot see into


def put(s: Shelf) -> None:
    with s.cond:
        s.items.append(1)
        s.cond.notify()


def ops_of(task: object) -> list[str]:
    s = replay("")
    s.run([task, put], (Shelf(),))
    assert s.last_run is not None
    return [step.op.split(" on ")[0] for step in s.last_run.steps if step.task == 0]


def test_wait_for_gives_up_its_lock_at_a_switch_point_as_wait_does() -> None:
    loop = ops_of(wait_loop)
    assert "wait" in loop
    waits = ops_of(wait_for)
    assert "wait" in waits
    assert waits.index("wait") > waits.index("acquire")


def append(s: Shelf) -> None:
    s.items.append(1)  # no notify(): a waiter that comes first waits forever


@pytest.mark.parametrize("waiter", [wait_for, wait_for_builtin])
def test_a_wait_for_that_comes_first_and_waits_forever_is_found_by_the_reduction(
    waiter: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the rounds that try every order with one preemption, only the reduction
    # decides whether the waiter is run before the append: it must see that the predicate
    # reads the list.
    monkeypatch.setattr(_search, "_ITERATED", -1)
    report = explore([append, waiter], setup=Shelf)
    assert not report.ok, report
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)
