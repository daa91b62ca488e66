"""check_linearizable: unit tests, then histories of real queues and locks under control."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskkit
from taskkit.testing import (
    History,
    LockModel,
    Operation,
    QueueModel,
    Raised,
    RegisterModel,
    check_linearizable,
    explore,
    interleavings,
)

SEARCH = settings(derandomize=True, database=None, deadline=None, print_blob=False)


def op(
    client: int, name: str, args: tuple[Any, ...], result: Any, call: int, ret: int | None
) -> Operation:
    return Operation(client, name, args, result, call, ret)


# -- the checker ---------------------------------------------------------------------------------


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        op(0, "write", (1,), None, 0, 1),
        op(1, "read", (), 1, 2, 3),
        op(0, "write", (2,), None, 4, 5),
        op(1, "read", (), 2, 6, 7),
    ]
    verdict = check_linearizable(history, RegisterModel(0))
    assert verdict
    assert verdict.order == history


def test_overlapping_operations_may_take_effect_in_either_order() -> None:
    # the read overlaps the write, so it may see the old or the new value
    for seen in (0, 1):
        history = [op(0, "write", (1,), None, 0, 3), op(1, "read", (), seen, 1, 2)]
        assert check_linearizable(history, RegisterModel(0))


def test_a_stale_read_after_the_write_returned_is_not_linearizable() -> None:
    history = [op(0, "write", (1,), None, 0, 1), op(1, "read", (), 0, 2, 3)]
    verdict = check_linearizable(history, RegisterModel(0))
    assert not verdict
    assert "longest valid prefix" in verdict.explanation


def test_queue_order_must_be_fifo_unless_puts_overlap() -> None:
    put_a, put_b = op(0, "put", ("a",), None, 0, 1), op(0, "put", ("b",), None, 2, 3)
    out_of_order = [put_a, put_b, op(1, "get", (), "b", 4, 5), op(1, "get", (), "a", 6, 7)]
    assert not check_linearizable(out_of_order, QueueModel())
    overlapping = [
        op(0, "put", ("a",), None, 0, 5),
        op(2, "put", ("b",), None, 1, 4),
        op(1, "get", (), "b", 6, 7),
        op(1, "get", (), "a", 8, 9),
    ]
    assert check_linearizable(overlapping, QueueModel())


def test_get_nowait_on_empty_raises_in_the_model() -> None:
    history = [op(0, "get_nowait", (), Raised(queue.Empty), 0, 1), op(0, "put", (1,), None, 2, 3)]
    assert check_linearizable(history, QueueModel())
    wrong = [op(0, "put", (1,), None, 0, 1), op(0, "get_nowait", (), Raised(queue.Empty), 2, 3)]
    assert not check_linearizable(wrong, QueueModel())


def test_a_pending_operation_may_or_may_not_have_taken_effect() -> None:
    for seen in (0, 5):
        history = [op(0, "write", (5,), None, 0, None), op(1, "read", (), seen, 1, 2)]
        assert check_linearizable(history, RegisterModel(0))


def test_two_holders_of_one_lock_are_not_linearizable() -> None:
    history = [op(0, "acquire", (), True, 0, 1), op(1, "acquire", (), True, 2, 3)]
    assert not check_linearizable(history, LockModel())
    released = [*history[:1], op(0, "release", (), None, 2, 3), op(1, "acquire", (), True, 4, 5)]
    assert check_linearizable(released, LockModel())


def test_a_long_register_history_is_checked_quickly() -> None:
    history = []
    t = 0
    for i in range(300):
        history.append(op(i % 4, "write", (i,), None, t, t + 3))
        history.append(op((i + 1) % 4, "read", (), i, t + 1, t + 4))
        t += 5
    assert check_linearizable(history, RegisterModel(None))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=12))
def test_any_sequential_queue_run_is_linearizable(values: list[int]) -> None:
    history: History[Any] = History()
    q: queue.Queue[int] = queue.Queue()
    for v in values:
        history.call(0, "put", q.put, v)
    for _ in values:
        history.call(1, "get", q.get)
    assert check_linearizable(history.operations, QueueModel())


# -- histories of concurrent objects under control ----------------------------------------------


@dataclass
class QueueWorld:
    q: Any
    history: History[Any] = field(default_factory=History)


def producer(w: QueueWorld, client: int, items: tuple[int, ...]) -> None:
    for item in items:
        w.history.call(client, "put", w.q.put, item)


def consumer(w: QueueWorld, client: int, n: int) -> None:
    for _ in range(n):
        w.history.call(client, "get", w.q.get)


def queue_tasks() -> list[Any]:
    return [
        lambda w: producer(w, 0, (1, 2)),
        lambda w: producer(w, 1, (3,)),
        lambda w: consumer(w, 2, 3),
    ]


def linearizable_queue(w: QueueWorld) -> bool:
    return bool(check_linearizable(w.history.operations, QueueModel()))


@SEARCH
@given(s=interleavings())
def test_stdlib_queue_histories_are_linearizable(s: Any) -> None:
    world = QueueWorld(queue.Queue())
    s.run(queue_tasks(), args=(world,))
    assert linearizable_queue(world), world.history.operations


class RacyQueue:
    """A queue whose get() reads and advances the head in two steps: a race."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.head = 0

    def put(self, item: int) -> None:
        self.items.append(item)

    def get_nowait(self) -> int:
        if self.head >= len(self.items):
            raise queue.Empty
        item = self.items[self.head]
        self.head = self.head + 1
        return item


def test_the_checker_catches_a_racy_queue() -> None:
    def setup() -> QueueWorld:
        world = QueueWorld(RacyQueue())
        world.q.put(1)
        world.q.put(2)
        return world

    def take(w: QueueWorld, client: int) -> None:
        w.history.call(client, "get_nowait", w.q.get_nowait)

    report = explore(
        [lambda w: take(w, 0), lambda w: take(w, 1)],
        setup=setup,
        invariant=lambda w: check_linearizable(
            w.history.operations, _prefilled(QueueModel(), (1, 2))
        ),
    )
    assert not report.ok
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1


class _prefilled:
    """A model whose initial state is given."""

    def __init__(self, model: Any, initial: Any) -> None:
        self.model, self.initial = model, initial

    def apply(self, state: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
        return self.model.apply(state, name, args)  # type: ignore[no-any-return]


@dataclass
class LockWorld:
    lock: Any
    history: History[Any] = field(default_factory=History)


def lock_user(w: LockWorld, client: int) -> None:
    w.history.call(client, "acquire", w.lock.acquire)
    w.history.call(client, "release", w.lock.release)


def test_stdlib_lock_histories_are_linearizable_in_every_interleaving() -> None:
    report = explore(
        [lambda w: lock_user(w, 0), lambda w: lock_user(w, 1)],
        setup=lambda: LockWorld(threading.Lock()),
        invariant=lambda w: check_linearizable(w.history.operations, LockModel()),
    )
    assert report.ok, str(report)
    assert report.complete


# -- taskkit's own primitives --------------------------------------------------------------------
# taskkit's thread-backend queue and lock announce their switch points through
# taskkit._core._control, so the same checks apply to them.


def _thread_executor() -> Any:
    if not hasattr(taskkit, "open_executor"):
        pytest.skip("taskkit.open_executor is not available")
    return taskkit.open_executor("thread", max_workers=1)


@SEARCH
@given(s=interleavings())
def test_taskkit_queue_histories_are_linearizable(s: Any) -> None:
    with _thread_executor() as ex:
        world = QueueWorld(ex.queue())
        s.run(queue_tasks(), args=(world,))
    assert linearizable_queue(world), world.history.operations


def test_taskkit_queue_is_checked_completely() -> None:
    with _thread_executor() as ex:
        report = explore(
            [lambda w: producer(w, 0, (1,)), lambda w: consumer(w, 1, 1)],
            setup=lambda: QueueWorld(ex.queue()),
            invariant=linearizable_queue,
        )
    assert report.ok, str(report)
    assert report.complete


def test_taskkit_lock_histories_are_linearizable_in_every_interleaving() -> None:
    with _thread_executor() as ex:
        report = explore(
            [lambda w: lock_user(w, 0), lambda w: lock_user(w, 1)],
            setup=lambda: LockWorld(ex.lock()),
            invariant=lambda w: check_linearizable(w.history.operations, LockModel()),
        )
    assert report.ok, str(report)
    assert report.complete


def test_taskkit_lock_order_deadlock_is_reported() -> None:
    from taskkit import Deadlock

    with _thread_executor() as ex:

        def ab(locks: tuple[Any, Any]) -> None:
            with locks[0], locks[1]:
                pass

        def ba(locks: tuple[Any, Any]) -> None:
            with locks[1], locks[0]:
                pass

        report = explore([ab, ba], setup=lambda: (ex.lock(), ex.lock()))
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)
