"""What only the coroutine backend does: taskkit's own scheduler, its clock, order and warnings."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskkit
from taskkit._backends.coroutine import Task
from taskkit._backends.coroutine._executor import CoroutineExecutor


@pytest.fixture
def make(open_closed_after: Callable[..., taskkit.Executor]) -> Callable[..., CoroutineExecutor]:
    def make(**options: Any) -> CoroutineExecutor:
        ex = open_closed_after("coroutine", **options)
        assert isinstance(ex, CoroutineExecutor)
        return ex

    return make


@pytest.fixture
def vex(make: Callable[..., CoroutineExecutor]) -> CoroutineExecutor:
    """An executor on the virtual clock: sleeps end at once, in simulated time."""
    return make(clock="virtual")


async def double(x: int) -> int:
    await taskkit.checkpoint()
    return 2 * x


def counting(n: int) -> Generator[None, None, int]:
    for _ in range(n):
        yield
    return n


def interleaved(log: list[str], names: str, steps: int) -> Any:
    async def worker(name: str) -> None:
        for i in range(steps):
            log.append(f"{name}{i}")
            await taskkit.checkpoint()

    async def main() -> None:
        handles = [ex_of(main).spawn(worker, name) for name in names]
        for handle in handles:
            await handle

    return main


_owner: dict[Any, CoroutineExecutor] = {}


def ex_of(fn: Any) -> CoroutineExecutor:
    return _owner[fn]


def run_interleaved(ex: CoroutineExecutor, names: str = "abc", steps: int = 3) -> list[str]:
    log: list[str] = []
    main = interleaved(log, names, steps)
    _owner[main] = ex
    ex.submit(main).result(timeout=10)
    return log


# -------------------------------------------------------------- kinds of task


def test_async_def_generator_and_plain_functions(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()
    assert ex.submit(double, 21).result(timeout=10) == 42
    assert ex.submit(counting, 5).result(timeout=10) == 5
    assert ex.submit(len, "abc").result(timeout=10) == 3  # a plain function runs inline
    assert ex.statistics().workers == 1


def test_generator_tasks_switch_at_each_yield(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()
    log: list[str] = []

    def gen(name: str) -> Generator[None, None, None]:
        for i in range(3):
            log.append(f"{name}{i}")
            yield

    def main() -> Generator[Any, None, None]:
        a, b = ex.spawn(gen, "a"), ex.spawn(gen, "b")
        yield a
        yield b

    ex.submit(main).result(timeout=10)
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_yield_from_sleep_in_a_generator_task(vex: CoroutineExecutor) -> None:
    def gen() -> Generator[Any, None, float]:
        start = vex.time()
        yield from taskkit.sleep(30)
        return vex.time() - start

    assert vex.submit(gen).result(timeout=10) >= 30


def test_a_function_returning_a_generator_is_a_plain_call(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    gen = ex.submit(lambda: (i for i in range(3))).result(timeout=10)
    assert list(gen) == [0, 1, 2]


# ---------------------------------------------------------------------- order


def test_fifo_order_is_round_robin_and_the_same_every_run(
    make: Callable[..., CoroutineExecutor],
) -> None:
    expected = ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    assert expected == run_interleaved(make())
    assert expected == run_interleaved(make())


def test_random_order_is_reproducible_from_its_seed(
    make: Callable[..., CoroutineExecutor],
) -> None:
    first = run_interleaved(make(order="random", seed=7), "abcd", 5)
    again = run_interleaved(make(order="random", seed=7), "abcd", 5)
    assert first == again
    orders = {tuple(run_interleaved(make(order="random", seed=s), "abcd", 5)) for s in range(6)}
    assert len(orders) > 1
    for order in orders:
        # Each worker's own steps stay in program order, whatever the interleaving.
        for name in "abcd":
            assert [f"{name}{i}" for i in range(5)] == [x for x in order if x[0] == name]


def test_order_can_be_any_picking_function(make: Callable[..., CoroutineExecutor]) -> None:
    picks: list[int] = []

    def last_first(ready: collections.deque[Task]) -> Task:
        picks.append(len(ready))
        return ready.pop()

    log = run_interleaved(make(order=last_first), "ab", 2)
    assert picks
    assert sorted(log) == ["a0", "a1", "b0", "b1"]
    assert log != ["a0", "b0", "a1", "b1"]


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="clock"):
        taskkit.open_executor("coroutine", clock="wall")
    with pytest.raises(ValueError, match="order"):
        taskkit.open_executor("coroutine", order="lifo")
    with pytest.raises(ValueError, match="blocking_warning"):
        taskkit.open_executor("coroutine", blocking_warning=0)
    with pytest.raises(TypeError, match="seed"):
        taskkit.open_executor("coroutine", order="random", seed="x")


@given(seed=st.integers(0, 2**32), n=st.integers(1, 8))
def test_any_seed_runs_every_task_once(seed: int, n: int) -> None:
    with taskkit.open_executor("coroutine", order="random", seed=seed) as ex:
        assert isinstance(ex, CoroutineExecutor)
        log = run_interleaved(ex, "abcdefgh"[:n], 3)
    assert sorted(log) == sorted(f"{c}{i}" for c in "abcdefgh"[:n] for i in range(3))


# ---------------------------------------------------------------------- clock


def test_virtual_clock_sleeps_end_at_once_in_order(vex: CoroutineExecutor) -> None:
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await taskkit.sleep(seconds)
        woke.append(seconds)

    async def main() -> float:
        start = vex.time()
        handles = [vex.spawn(sleeper, s) for s in (3600.0, 5.0, 60.0, 0.5)]
        for handle in handles:
            await handle
        return vex.time() - start

    began = time.monotonic()
    elapsed = vex.submit(main).result(timeout=10)
    assert time.monotonic() - began < 5
    assert woke == [0.5, 5.0, 60.0, 3600.0]
    assert elapsed == pytest.approx(3600.0)


def test_real_clock_sleep_takes_real_time(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()

    async def nap() -> float:
        start = time.monotonic()
        await taskkit.sleep(0.05)
        return time.monotonic() - start

    assert ex.submit(nap).result(timeout=10) >= 0.045


def test_ten_thousand_sleepers(vex: CoroutineExecutor) -> None:
    async def sleeper(i: int) -> int:
        await taskkit.sleep(1 + i % 7)
        return i

    async def main() -> int:
        handles = [vex.spawn(sleeper, i) for i in range(10_000)]
        total = 0
        for handle in handles:
            total += await handle
        return total

    assert sum(range(10_000)) == vex.submit(main).result(timeout=30)


def test_sleep_rejects_bad_durations() -> None:
    with pytest.raises(ValueError):
        taskkit.sleep(-1)
    with pytest.raises(ValueError):
        taskkit.sleep(float("nan"))
    with pytest.raises(TypeError):
        taskkit.sleep("1")  # type: ignore[arg-type]


def test_sleep_and_checkpoint_work_in_asyncio_code_too() -> None:
    async def main() -> str:
        await taskkit.checkpoint()
        await taskkit.sleep(0.001)
        await taskkit.sleep(0)
        return "ok"

    assert asyncio.run(main()) == "ok"


# ------------------------------------------------------------------- futures


def test_awaiting_a_future_from_another_backend_parks_only_that_task(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    gate = threading.Event()
    with taskkit.open_executor("thread", max_workers=1) as threads:
        blocked = threads.submit(gate.wait, 10)

        async def waiter() -> Any:
            return await blocked

        async def opener() -> str:
            gate.set()  # runs while the waiter is parked: the scheduler was not blocked
            return "opened"

        waiting = ex.submit(waiter)
        assert ex.submit(opener).result(timeout=10) == "opened"
        assert waiting.result(timeout=10) is True


def test_awaiting_a_failed_future_raises_in_the_task(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    failed: taskkit.Future[int] = taskkit.Future()
    failed.set_exception(KeyError("inner"))

    async def main() -> str:
        try:
            await failed
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    assert ex.submit(main).result(timeout=10) == "caught 'inner'"


def test_future_completed_from_another_thread_wakes_the_task(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    fut: taskkit.Future[str] = taskkit.Future()
    parked = threading.Event()

    async def main() -> str:
        parked.set()
        return await fut

    result = ex.submit(main)
    assert parked.wait(10)
    fut.set_result("woken")
    assert result.result(timeout=10) == "woken"


def test_amap_inside_a_coroutine_task(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()

    async def main() -> list[int]:
        with taskkit.open_executor("thread", max_workers=2) as threads:
            return [y async for y in threads.amap(abs, [-1, -2, -3])]

    assert ex.submit(main).result(timeout=10) == [1, 2, 3]


def test_map_of_an_async_function_runs_its_calls_concurrently(vex: CoroutineExecutor) -> None:
    async def slow(x: int) -> int:
        await taskkit.sleep(1)
        return x

    start = vex.time()
    assert list(range(500)) == list(vex.map(slow, range(500)))
    assert vex.time() - start < 10  # 500 one-second calls, overlapped


def test_map_of_an_async_function_stops_at_the_failing_item(make: Callable[..., Any]) -> None:
    ex = make()

    async def maybe(x: int) -> int:
        await taskkit.checkpoint()
        if x == 5:
            raise ValueError("five")
        return x

    results = ex.map(maybe, range(20), chunksize=8)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="five"):
        next(results)
    ex.join()
    stats = ex.statistics()
    assert stats.failed == 1
    assert stats.done >= 5


# ------------------------------------------------------------ foreign awaits


def test_awaiting_asyncio_sleep_fails_with_advice(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()

    async def uses_asyncio() -> None:
        await asyncio.sleep(1)

    with pytest.raises(RuntimeError, match=r"asyncio.*open_executor\(\"asyncio\"\)"):
        ex.submit(uses_asyncio).result(timeout=10)


def test_awaiting_another_loops_future_fails_with_advice(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    loop = asyncio.new_event_loop()
    try:
        foreign = loop.create_future()

        async def uses_it() -> Any:
            return await foreign

        with pytest.raises(RuntimeError, match="another event loop"):
            ex.submit(uses_it).result(timeout=10)
    finally:
        loop.close()


# ------------------------------------------------------------------- blocking


def test_a_blocking_task_is_named_in_a_warning(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make(blocking_warning=0.02)

    async def blocks() -> None:
        time.sleep(0.05)  # the mistake under test: a blocking call in a coroutine
        await taskkit.checkpoint()

    with pytest.warns(taskkit.BlockingWarning, match="sleepy-task"):
        ex.options(name="sleepy-task").submit(blocks).result(timeout=10)


def test_blocking_warning_can_be_turned_off(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make(blocking_warning=None)

    async def blocks() -> None:
        time.sleep(0.03)

    ex.submit(blocks).result(timeout=10)  # filterwarnings=error: a warning would fail this


# ---------------------------------------------------------- cancel, timeout


def test_cancel_a_running_task_runs_its_finally(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()
    never: taskkit.Future[None] = taskkit.Future()
    started, cleaned = threading.Event(), threading.Event()

    async def waits() -> None:
        started.set()
        try:
            await never
        finally:
            cleaned.set()

    fut = ex.submit(waits)
    assert started.wait(10)
    assert fut.cancel()
    assert fut.cancelled()
    assert cleaned.wait(10)
    ex.join()
    assert ex.statistics().cancelled == 1


def test_timeout_uses_the_scheduler_clock_and_cancels_at_the_next_await(
    vex: CoroutineExecutor,
) -> None:
    cleaned = threading.Event()

    async def overruns() -> None:
        try:
            await taskkit.sleep(3600)
        finally:
            cleaned.set()

    start = vex.time()
    fut = vex.options(timeout=5, name="long-nap").submit(overruns)
    with pytest.raises(taskkit.TaskTimeout, match="long-nap"):
        fut.result(timeout=10)
    assert cleaned.wait(10)
    assert vex.time() - start == pytest.approx(5)
    assert vex.statistics().timed_out == 1


def test_a_retry_after_a_timeout_is_not_clobbered_by_the_first_attempt(
    vex: CoroutineExecutor,
) -> None:
    attempts: list[int] = []

    async def slow_then_fast() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            try:
                await taskkit.sleep(100)
            finally:
                await taskkit.checkpoint()  # still unwinding when the retry starts
        return len(attempts)

    fut = vex.options(timeout=1, retries=1).submit(slow_then_fast)
    assert fut.result(timeout=10) == 2


def test_shutdown_kill_cancels_sleeping_and_spawned_tasks(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    cleaned: list[str] = []
    ready = threading.Event()

    async def child() -> None:
        try:
            await taskkit.sleep(3600)
        finally:
            cleaned.append("child")

    async def parent() -> None:
        ex.spawn(child)
        try:
            ready.set()
            await taskkit.sleep(3600)
        finally:
            cleaned.append("parent")

    fut = ex.submit(parent)
    assert ready.wait(10)
    ex.shutdown(wait=True, kill=True)
    assert fut.cancelled()
    assert sorted(cleaned) == ["child", "parent"]


# ---------------------------------------------------------------------- spawn


def test_spawn_handles(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()

    async def fails() -> None:
        raise KeyError("child")

    async def main() -> list[Any]:
        ok, bad = ex.spawn(double, 4), ex.spawn(fails)
        seen: list[Any] = [await ok]
        try:
            await bad
        except KeyError as exc:
            seen.append(repr(exc))
        seen += [ok.done(), ok.result(), bad.exception().__class__.__name__]  # type: ignore[union-attr]
        hang = ex.spawn(taskkit.sleep, 3600)
        await taskkit.checkpoint()
        seen.append(hang.cancel())
        try:
            await hang
        except asyncio.CancelledError:
            seen.append(hang.cancelled())
        return seen

    assert ex.submit(main).result(timeout=10) == [
        8,
        "KeyError('child')",
        True,
        8,
        "KeyError",
        True,
        True,
    ]


def test_a_spawned_function_is_called_when_its_task_first_runs(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    calls: list[str] = []

    async def child(tag: str) -> str:
        calls.append(tag)
        return tag.upper()

    def counter(n: int) -> Generator[None, None, int]:
        for _ in range(n):
            yield
        return n

    async def main() -> list[Any]:
        first = ex.spawn(child, "a")
        seen: list[Any] = [first.name, calls[:], first.done()]  # not called yet
        wrong = ex.spawn(child, "b", "extra")  # type: ignore[call-arg]
        never = ex.spawn(child, "never")
        never.cancel()  # before its first step: its body never runs
        keyword = ex.spawn(child, tag="k")  # keyword arguments: called at once
        seen += [await first, await ex.spawn(counter, 3), await keyword]
        try:
            await wrong
        except TypeError as exc:
            seen.append("wrong arguments end the task: " + type(exc).__name__)
        try:
            await never
        except asyncio.CancelledError:
            seen.append(never.cancelled())
        seen.append(sorted(calls))
        quiet = ex.spawn(child, "q")
        await taskkit.checkpoint()
        seen += [quiet.done(), await quiet, await quiet]  # awaiting a finished task again
        return seen

    assert ex.submit(main).result(timeout=10) == [
        "test_a_spawned_function_is_called_when_its_task_first_runs.<locals>.child",
        [],
        False,
        "A",
        3,
        "K",
        "wrong arguments end the task: TypeError",
        True,
        ["a", "k"],
        True,
        "Q",
        "Q",
    ]


def test_shutdown_kill_with_spawned_tasks_that_never_ran(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make(blocking_warning=None)
    ran: list[int] = []
    spawned, kill_sent = threading.Event(), threading.Event()

    async def child(i: int) -> None:
        ran.append(i)

    async def parent() -> None:
        for i in range(100):
            ex.spawn(child, i)
        spawned.set()
        kill_sent.wait(10)  # hold the scheduler until the kill is in its inbox
        await taskkit.sleep(3600)

    fut = ex.submit(parent)
    assert spawned.wait(10)
    ex.shutdown(wait=False, kill=True)
    kill_sent.set()
    ex.shutdown(wait=True)
    assert fut.cancelled()
    assert ran == []  # cancelled before their first step: no body ran


def test_spawn_from_outside_or_of_a_plain_function_is_refused(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make()
    with pytest.raises(RuntimeError, match="submit"):
        ex.spawn(double, 1)

    async def main() -> None:
        ex.spawn(len, "abc")  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="async def"):
        ex.submit(main).result(timeout=10)


# --------------------------------------------------------- executor behaviour


def test_max_workers_bounds_running_tasks(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make(max_workers=2, clock="virtual")
    running, peak = [0], [0]

    async def busy() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await taskkit.sleep(1)
        running[0] -= 1

    concurrent.futures.wait([ex.submit(busy) for _ in range(10)], timeout=10)
    assert peak[0] == 2


def test_without_max_workers_every_task_starts_at_once(vex: CoroutineExecutor) -> None:
    async def nap() -> None:
        await taskkit.sleep(10)

    start = vex.time()
    concurrent.futures.wait([vex.submit(nap) for _ in range(100)], timeout=10)
    assert vex.time() - start == pytest.approx(10)


def test_async_with_from_asyncio() -> None:
    async def main() -> int:
        async with taskkit.open_executor("coroutine") as ex:
            return await ex.submit(double, 5)

    assert asyncio.run(main()) == 10


def test_shutdown_without_wait_lets_tasks_finish(make: Callable[..., CoroutineExecutor]) -> None:
    ex = make()
    fut = ex.submit(double, 3)
    ex.shutdown(wait=False)
    assert fut.result(timeout=10) == 6


def test_a_broken_picking_function_fails_the_work_instead_of_hanging(
    make: Callable[..., CoroutineExecutor],
) -> None:
    def broken(ready: collections.deque[Task]) -> Task:
        raise ZeroDivisionError("bad pick")

    ex = make(order=broken)
    with pytest.raises(RuntimeError, match="scheduler stopped") as info:
        ex.submit(double, 1).result(timeout=10)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(RuntimeError, match="scheduler stopped"):
        ex.submit(double, 2)


def test_many_queued_plain_calls_behind_max_workers(
    make: Callable[..., CoroutineExecutor],
) -> None:
    ex = make(max_workers=1)
    gate: taskkit.Future[None] = taskkit.Future()

    async def blocker() -> None:
        await gate

    first = ex.submit(blocker)
    futures = [ex.submit(abs, -i) for i in range(5000)]  # queued behind the blocker
    gate.set_result(None)
    first.result(timeout=10)
    assert [f.result(timeout=10) for f in futures] == list(range(5000))


# ---------------------------------------------- blocking calls on the scheduler (issue 14.2)


def test_a_plain_function_that_would_wait_fails_at_once(run_python: Callable[..., Any]) -> None:
    # In a child interpreter: before the fix, each of these calls hung the scheduler.
    script = """
        import queue
        import taskkit

        def produce(q):
            for i in range(3):
                q.put(i)
            q.put(None)

        def consume(q):
            items = []
            while (item := q.get()) is not None:
                items.append(item)
            return items

        with taskkit.open_executor("coroutine") as ex:
            q, full, lock = ex.queue(), ex.queue(maxsize=1), ex.lock()
            event, semaphore = ex.event(), ex.semaphore(0)
            full.put_nowait(0)
            lock.acquire()
            waits = [
                (consume, (q,), "await q.aget()"),  # a consumer that starts first
                (q.get, (5,), "await q.aget()"),
                (full.put, (1,), "await q.aput(item)"),
                (lock.acquire, (), "async with lock"),
                (event.wait, (), "await event.await_()"),
                (semaphore.acquire, (), "await semaphore.aacquire()"),
            ]
            for fn, args, twin in waits:
                error = ex.submit(fn, *args).exception(timeout=20)
                assert isinstance(error, taskkit.BlockingCallError), repr(error)
                assert twin in str(error), str(error)
            lock.release()
            # What can finish at once still does, and a wait of no time still just looks.
            ex.submit(produce, q).result(timeout=20)
            assert ex.submit(consume, q).result(timeout=20) == [0, 1, 2]
            assert isinstance(ex.submit(q.get, 0).exception(timeout=20), queue.Empty)
            assert ex.submit(lock.acquire).result(timeout=20) is True
        print("ok")
    """
    child = run_python(script, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout == "ok\n"


@pytest.mark.parametrize("waits_in", ["with", "result"])
def test_one_ctrl_c_ends_a_program_whose_task_never_returns(waits_in: str) -> None:
    script = textwrap.dedent(f"""
        import threading
        import taskkit

        def forever():
            print("running", flush=True)
            threading.Event().wait()  # blocks the scheduler's thread: it cannot be cancelled

        if "{waits_in}" == "with":
            with taskkit.open_executor("coroutine") as ex:
                ex.submit(forever)
        else:
            taskkit.open_executor("coroutine").submit(forever).result()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGINT)  # once
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in stderr
    assert child.returncode != 0
