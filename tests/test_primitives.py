"""The primitives' contract on every backend: queue, lock, event, semaphore, value.

Each test runs on every backend that imports here (the ``make_executor`` fixture).
Tasks only do what every backend can run; waits that would need another task to
make progress happen in the test's own thread, with timeouts.  The serial backend
runs tasks inline, so where a task would wait forever it must raise ``Deadlock``,
which is tested as such.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskkit
from taskkit import QueueClosed
from taskkit._primitives._common import shut_down

Make = Callable[..., taskkit.Executor]


def put_all(q: Any, items: list[Any]) -> int:
    for item in items:
        q.put(item)
    return len(items)


def put_in(holder: dict[str, list[Any]], items: list[Any]) -> int:
    for item in items:
        holder["queues"][0].put(item)
    return len(items)


def drain(q: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except (queue.Empty, QueueClosed):
            return out


def add_many(v: Any, n: int) -> None:
    for _ in range(n):
        v.update(lambda x: x + 1)


def balance_with_lock(lock: Any, v: Any, n: int, times: int) -> None:
    for _ in range(times):
        with lock:
            v.set(v.get() + n)
            v.set(v.get() - n)


def set_event(event: Any) -> bool:
    event.set()
    return True


def hold(lock: Any, held: Any, release: Any) -> bool:
    with lock:
        held.set()
        return bool(release.wait(10))


async def ahold(lock: Any, held: Any, release: Any) -> bool:
    async with lock:
        held.set()
        return bool(await release.await_(10))


def is_locked(lock: Any) -> bool:
    return bool(lock.locked())


# ------------------------------------------------------------------------- queue


def test_queue_is_fifo_across_tasks(make_executor: Make) -> None:
    ex = make_executor()
    q = ex.queue()
    assert ex.submit(put_all, q, list(range(20))).result(timeout=30) == 20
    assert q.qsize() == 20
    assert not q.empty()
    assert list(range(20)) == [q.get(timeout=10) for _ in range(20)]
    assert q.empty()


def test_queue_passes_nested_in_arguments(make_executor: Make) -> None:
    ex = make_executor()
    q = ex.queue()
    assert ex.submit(put_in, {"queues": [q]}, ["a", ("b", 1)]).result(timeout=30) == 2
    assert ["a", ("b", 1)] == [q.get(timeout=10), q.get(timeout=10)]


def test_queue_nowait_raises_full_and_empty(make_executor: Make) -> None:
    q = make_executor().queue(maxsize=2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put_nowait(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    assert q.get_nowait() == 1
    assert not q.full()


def test_queue_get_times_out(make_executor: Make) -> None:
    q = make_executor().queue()
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 5


def test_closed_queue_drains_then_raises(make_executor: Make) -> None:
    q = make_executor().queue()
    q.put(1)
    q.put(2)
    assert not q.closed
    q.close()
    assert q.closed
    with pytest.raises(QueueClosed):
        q.put(3)
    assert [1, 2] == [q.get(timeout=5), q.get(timeout=5)]
    with pytest.raises(QueueClosed):
        q.get(timeout=5)
    with pytest.raises(QueueClosed):
        q.get_nowait()


def test_close_wakes_a_waiting_get(make_executor: Make) -> None:
    ex = make_executor()
    if ex.backend == "serial":
        q = ex.queue()
        with pytest.raises(taskkit.Deadlock):
            q.get()  # nothing could ever put: an error, not a hang
        return
    q = ex.queue()
    errors: list[BaseException] = []

    def getter() -> None:
        try:
            q.get(timeout=20)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    # Close once the getter waits, where the backend's statistics can tell (either
    # order must end the get with QueueClosed; this makes the waiting case the usual one).
    deadline = time.monotonic() + 10
    while getattr(q.statistics(), "waiting_getters", 1) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # polling a condition, not synchronising on time
    q.close()
    thread.join(10)
    assert [QueueClosed] == [type(e) for e in errors]


def test_bounded_queue_applies_backpressure(make_executor: Make) -> None:
    ex = make_executor()
    q = ex.queue(maxsize=2)
    if ex.backend == "serial":
        with pytest.raises(taskkit.Deadlock):
            ex.submit(put_all, q, [1, 2, 3]).result()
        return
    if ex.backend == "coroutine":
        # A plain function holds the scheduler's thread: its put() on a full queue fails.
        with pytest.raises(taskkit.BlockingCallError, match=r"await q\.aput\(item\)"):
            ex.submit(put_all, q, [1, 2, 3]).result(timeout=20)
        return
    producer = ex.submit(put_all, q, list(range(6)))
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 6 and time.monotonic() < deadline:
        assert q.qsize() <= 2
        try:
            got.append(q.get(timeout=0.5))
        except queue.Empty:
            pass
    assert list(range(6)) == got
    assert producer.result(timeout=20) == 6
    assert q.empty()


def test_queue_async_faces(make_executor: Make) -> None:
    q = make_executor().queue(maxsize=1)

    async def main() -> list[Any]:
        await q.aput("x")
        with pytest.raises(queue.Full):
            await q.aput("y", timeout=0.01)
        first = await q.aget()
        with pytest.raises(queue.Empty):
            await q.aget(timeout=0.01)
        waiter = asyncio.ensure_future(q.aget(timeout=10))
        await asyncio.sleep(0)
        await q.aput("z")
        return [first, await waiter]

    assert ["x", "z"] == asyncio.run(main())


def test_async_get_woken_by_a_task(make_executor: Make) -> None:
    ex = make_executor()
    q = ex.queue()

    async def main() -> Any:
        getter = asyncio.ensure_future(q.aget(timeout=20))
        await asyncio.sleep(0.001)
        await asyncio.wrap_future(ex.submit(put_all, q, ["from a task"]))
        return await getter

    assert asyncio.run(main()) == "from a task"


def test_cancelled_aget_takes_nothing(make_executor: Make) -> None:
    q = make_executor().queue()

    async def main() -> None:
        getter = asyncio.ensure_future(q.aget())
        await asyncio.sleep(0.01)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter

    asyncio.run(main())
    q.put(1)
    assert q.get(timeout=5) == 1


def test_shutdown_closes_queues(make_executor: Make) -> None:
    ex = make_executor()
    q = ex.queue()
    q.put("left")
    ex.shutdown(wait=True)
    assert q.get(timeout=5) == "left"
    with pytest.raises(QueueClosed):
        q.get(timeout=5)


def test_shutdown_frees_every_kind_of_primitive(make_executor: Make) -> None:
    # shutdown() hands each primitive it made to shut_down, which each family registers.
    ex = make_executor()
    made = [ex.queue(), ex.lock(), ex.event(), ex.semaphore(), ex.value(0)]
    unregistered = shut_down.dispatch(object)
    assert [shut_down.dispatch(type(p)) is unregistered for p in made] == [False] * 5
    ex.shutdown(wait=True)  # would raise TypeError for a primitive no family registered
    with pytest.raises(TypeError, match="not a taskkit primitive"):
        shut_down(object(), close=True)


# -------------------------------------------------------------------------- lock


def test_lock_basics(make_executor: Make) -> None:
    lock = make_executor().lock()
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    assert lock.acquire(timeout=0) is False
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    assert lock.previous_holder_died is False


def test_lock_seen_held_by_tasks(make_executor: Make) -> None:
    ex = make_executor()
    lock = ex.lock()
    with lock:
        assert ex.submit(is_locked, lock).result(timeout=30) is True
    assert ex.submit(is_locked, lock).result(timeout=30) is False


def test_lock_held_by_a_task_blocks_the_caller(make_executor: Make) -> None:
    ex = make_executor()
    if ex.backend == "serial":
        lock = ex.lock()
        lock.acquire()
        with pytest.raises(taskkit.Deadlock):
            lock.acquire()  # only the caller runs: it would wait for itself
        lock.release()
        return
    lock, held, release = ex.lock(), ex.event(), ex.event()
    # A plain function may not wait on the coroutine scheduler's thread: hold it in a coroutine.
    holder = ex.submit(ahold if ex.backend == "coroutine" else hold, lock, held, release)
    assert held.wait(20)
    assert lock.acquire(timeout=0.02) is False
    release.set()
    assert holder.result(timeout=20) is True
    assert lock.acquire(timeout=20)
    lock.release()


def test_lock_async_with(make_executor: Make) -> None:
    lock = make_executor().lock()

    async def main() -> bool:
        async with lock:
            inside = lock.locked()
            assert await lock.aacquire(timeout=0.01) is False
        return inside and not lock.locked()

    assert asyncio.run(main())


def test_async_lock_waiter_is_woken_by_release(make_executor: Make) -> None:
    lock = make_executor().lock()

    async def main() -> bool:
        await lock.aacquire()
        waiter = asyncio.ensure_future(lock.aacquire(timeout=10))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        lock.release()
        got = await waiter
        lock.release()
        return got

    assert asyncio.run(main())


def test_balance_with_a_lock_stays_zero(make_executor: Make) -> None:
    ex = make_executor()
    lock, balance = ex.lock(), ex.value(0)
    futures = [ex.submit(balance_with_lock, lock, balance, n, 300) for n in (5, 8)]
    for future in futures:
        future.result(timeout=60)
    assert balance.get() == 0


# ------------------------------------------------------------------------- event


def test_event(make_executor: Make) -> None:
    ex = make_executor()
    event = ex.event()
    assert not event.is_set()
    if ex.backend == "serial":
        with pytest.raises(taskkit.Deadlock):
            event.wait()
    assert event.wait(timeout=0.01) is False
    assert ex.submit(set_event, event).result(timeout=30)
    assert event.is_set()
    assert event.wait() is True
    event.clear()
    assert not event.is_set()

    async def main() -> tuple[bool, bool]:
        missed = await event.await_(timeout=0.01)
        waiter = asyncio.ensure_future(event.await_(timeout=10))
        await asyncio.sleep(0.001)
        event.set()
        return missed, await waiter

    assert (False, True) == asyncio.run(main())


# --------------------------------------------------------------------- semaphore


def test_semaphore(make_executor: Make) -> None:
    ex = make_executor()
    sem = ex.semaphore(2)
    assert sem.value == 2
    assert sem.acquire()
    assert sem.acquire(timeout=1)
    assert sem.value == 0
    assert sem.acquire(timeout=0.01) is False
    if ex.backend == "serial":
        with pytest.raises(taskkit.Deadlock):
            sem.acquire()
    sem.release()
    with sem:
        assert sem.value == 0
    assert sem.value == 1

    async def main() -> int:
        async with sem:
            inside = sem.value
            assert await sem.aacquire(timeout=0.01) is False
        return inside

    assert asyncio.run(main()) == 0
    assert sem.value == 1


def test_semaphore_rejects_a_negative_count(make_executor: Make) -> None:
    with pytest.raises(ValueError):
        make_executor().semaphore(-1)


# ------------------------------------------------------------------------- value


def test_value_get_set_update(make_executor: Make) -> None:
    v = make_executor().value({"n": 1})
    assert v.get() == {"n": 1}
    v.set({"n": 2})
    assert v.update(lambda d: {"n": d["n"] + 1}) == {"n": 3}
    assert v.get() == {"n": 3}

    def boom(_: Any) -> Any:
        raise KeyError("no")

    with pytest.raises(KeyError):
        v.update(boom)
    assert v.get() == {"n": 3}

    async def main() -> Any:
        await v.aset({"n": 10})
        await v.aupdate(lambda d: {"n": d["n"] * 2})
        return await v.aget()

    assert asyncio.run(main()) == {"n": 20}


def test_value_update_is_atomic_across_tasks(make_executor: Make) -> None:
    ex = make_executor()
    v = ex.value(0)
    futures = [ex.submit(add_many, v, 200) for _ in range(4)]
    for future in futures:
        future.result(timeout=60)
    assert v.get() == 800


# -------------------------------------------------------------------- statistics


def test_statistics_are_the_shared_snapshots(make_executor: Make) -> None:
    from taskkit._primitives import (
        EventStatistics,
        LockStatistics,
        QueueStatistics,
        SemaphoreStatistics,
        ValueStatistics,
    )

    ex = make_executor()
    q, lock, event, sem, v = ex.queue(2), ex.lock(), ex.event(), ex.semaphore(3), ex.value(1)
    q.put("a")
    q.put("b")
    q.get()
    lock.acquire()
    event.set()
    sem.acquire()
    v.set(2)
    v.update(lambda x: x + 1)
    assert QueueStatistics(1, 2, False, 2, 1, 0, 0) == q.statistics()
    stats = lock.statistics()
    assert isinstance(stats, LockStatistics)
    assert (stats.locked, stats.takeovers) == (True, 0)
    lock.release()
    assert isinstance(event.statistics(), EventStatistics)
    assert event.statistics().is_set
    assert SemaphoreStatistics(2, 3, 0) == sem.statistics()
    assert isinstance(v.statistics(), ValueStatistics)
    assert v.statistics().writes == 2


# ------------------------------------------------------------ properties (threads)


@given(
    producers=st.lists(st.lists(st.integers(), max_size=8), min_size=1, max_size=3),
    consumers=st.integers(min_value=1, max_value=3),
    maxsize=st.integers(min_value=0, max_value=3),
    switch=st.floats(min_value=1e-6, max_value=1e-4),
)
def test_thread_queue_delivers_each_item_once_in_order_per_producer(
    producers: list[list[int]], consumers: int, maxsize: int, switch: float
) -> None:
    with taskkit.open_executor("thread", max_workers=len(producers) + consumers) as ex:
        q = ex.queue(maxsize=maxsize)
        total = sum(map(len, producers))
        old = __import__("sys").getswitchinterval()
        __import__("sys").setswitchinterval(switch)
        try:
            puts = [
                ex.submit(put_all, q, [(p, i, x) for i, x in enumerate(items)])
                for p, items in enumerate(producers)
            ]
            shares = [total // consumers + (c < total % consumers) for c in range(consumers)]
            gets = [ex.submit(lambda n: [q.get(timeout=20) for _ in range(n)], n) for n in shares]
            received = [item for f in gets for item in f.result(timeout=30)]
            for f in puts:
                f.result(timeout=30)
        finally:
            __import__("sys").setswitchinterval(old)
    assert sorted(received) == sorted(
        (p, i, x) for p, items in enumerate(producers) for i, x in enumerate(items)
    )
    for f in gets:
        per_producer: dict[int, list[int]] = {}
        for p, i, _ in f.result():
            per_producer.setdefault(p, []).append(i)
        assert all(seq == sorted(seq) for seq in per_producer.values())
    assert q.empty()


@given(
    workers=st.integers(min_value=2, max_value=4),
    rounds=st.integers(min_value=1, max_value=50),
    backend=st.sampled_from(["thread", "coroutine"]),
)
def test_lock_never_admits_two_holders(workers: int, rounds: int, backend: str) -> None:
    if backend not in taskkit.BACKENDS:
        return
    ex = taskkit.open_executor(backend, max_workers=workers)  # type: ignore[arg-type]
    with ex:
        lock = ex.lock()
        state = {"holders": 0, "most": 0}

        def critical() -> None:
            for _ in range(rounds):
                with lock:
                    state["holders"] += 1
                    state["most"] = max(state["most"], state["holders"])
                    time.sleep(0)  # invite a switch while held
                    state["holders"] -= 1

        for f in [ex.submit(critical) for _ in range(workers)]:
            f.result(timeout=30)
    assert state["most"] == 1


def test_thread_lock_switches_to_async_waiters_without_losing_wakeups() -> None:
    with taskkit.open_executor("thread") as ex:
        lock = ex.lock()
        counter = {"n": 0}

        async def bump(times: int) -> None:
            for _ in range(times):
                async with lock:
                    counter["n"] += 1
                    await asyncio.sleep(0)

        def threaded(times: int) -> None:
            for _ in range(times):
                with lock:
                    counter["n"] += 1

        async def main() -> None:
            thread = threading.Thread(target=threaded, args=(500,))
            thread.start()
            await asyncio.gather(*(bump(100) for _ in range(4)))
            thread.join()

        asyncio.run(main())
        assert counter["n"] == 900
        assert not lock.locked()


# ------------------------------------------------------- under taskkit.testing


def test_primitives_are_switch_points_under_explore() -> None:
    testing = pytest.importorskip("taskkit.testing")
    with taskkit.open_executor("thread") as ex:

        def setup() -> dict[str, Any]:
            return {"lock": ex.lock(), "n": 0}

        def locked_inc(state: dict[str, Any]) -> None:
            with state["lock"]:
                n = state["n"]
                testing.checkpoint()
                state["n"] = n + 1

        report = testing.explore(
            [locked_inc, locked_inc], setup=setup, invariant=lambda s: s["n"] == 2
        )
        assert report.ok, report

        def racy_inc(state: dict[str, Any]) -> None:
            n = state["n"]
            testing.checkpoint()
            state["n"] = n + 1

        report = testing.explore([racy_inc, racy_inc], setup=setup, invariant=lambda s: s["n"] == 2)
        assert not report.ok


def test_queue_is_linearizable_under_interleavings() -> None:
    testing = pytest.importorskip("taskkit.testing")

    @given(s=testing.interleavings(max_preemptions=3))
    def check(s: Any) -> None:
        with taskkit.open_executor("thread") as ex:
            q = ex.queue()
            history: Any = testing.History()

            def producer(name: str) -> None:
                for i in range(2):
                    history.call(name, "put", q.put, (name, i))

            def consumer() -> None:
                for _ in range(2):
                    history.call("c", "get", q.get)

            s.run([lambda: producer("p1"), lambda: producer("p2"), consumer])
        assert testing.check_linearizable(history.operations, testing.QueueModel())

    check()
