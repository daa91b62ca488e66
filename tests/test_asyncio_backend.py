"""What only the asyncio backend does: a real event loop, its own or one it is given."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskkit
from taskkit._backends.asyncio._executor import AsyncioExecutor
from taskkit._core import _fastpaths


@pytest.fixture
def make(open_closed_after: Callable[..., taskkit.Executor]) -> Callable[..., AsyncioExecutor]:
    def make(**options: Any) -> AsyncioExecutor:
        ex = open_closed_after("asyncio", **options)
        assert isinstance(ex, AsyncioExecutor)
        return ex

    return make


async def where() -> tuple[asyncio.AbstractEventLoop, str]:
    await asyncio.sleep(0)
    return asyncio.get_running_loop(), threading.current_thread().name


def plain_where() -> str:
    return threading.current_thread().name


async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def test_async_def_runs_on_the_executors_loop(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    loop, thread = ex.submit(where).result(timeout=10)
    assert loop is ex.loop
    assert thread == "taskkit-asyncio"
    assert ex.statistics().workers == 1


def test_plain_functions_run_off_the_loop(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    assert ex.submit(plain_where).result(timeout=10) != "taskkit-asyncio"
    assert list(ex.map(lambda x: x * x, [1, 2, 3])) == [1, 4, 9]


def test_a_thousand_sleeps_overlap(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    start = time.monotonic()
    futures = [ex.submit(nap, 0.2) for _ in range(1000)]
    done, _ = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 1000
    assert time.monotonic() - start < 2.0  # one at a time would take 200 s


def test_map_of_an_async_function_runs_its_calls_concurrently(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()
    start = time.monotonic()
    assert list(ex.map(nap, [0.1] * 300)) == ["slept"] * 300
    assert time.monotonic() - start < 2.0  # one at a time would take 30 s


def test_cancel_a_running_task_raises_cancelled_error_inside(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()
    started, cleaned = threading.Event(), threading.Event()
    seen: list[str] = []

    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            cleaned.set()

    fut = ex.submit(waits)
    assert started.wait(10)
    assert fut.cancel()
    assert fut.cancelled()
    assert cleaned.wait(10)
    assert seen == ["cancelled"]


def test_timeout_cancels_the_task(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    cleaned = threading.Event()

    async def overruns() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    fut = ex.options(timeout=0.05, name="overrun").submit(overruns)
    with pytest.raises(taskkit.TaskTimeout, match="overrun"):
        fut.result(timeout=10)
    assert cleaned.wait(10)
    assert ex.statistics().timed_out == 1


def test_a_retry_after_a_timeout_keeps_its_own_result(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()
    attempts: list[int] = []

    async def slow_then_fast() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            try:
                await asyncio.sleep(3600)
            finally:
                await asyncio.sleep(0)  # still unwinding when the retry starts
        return len(attempts)

    assert ex.options(timeout=0.05, retries=1).submit(slow_then_fast).result(timeout=10) == 2


def test_max_workers_bounds_running_tasks(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make(max_workers=3)
    running, peak = [0], [0]

    async def busy() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1

    concurrent.futures.wait([ex.submit(busy) for _ in range(12)], timeout=10)
    assert peak[0] == 3


def test_an_existing_running_loop() -> None:
    async def main() -> tuple[bool, Any, bool]:
        loop = asyncio.get_running_loop()
        async with taskkit.open_executor("asyncio", loop=loop) as ex:
            ran_on, _ = await ex.submit(where)
            values = [y async for y in ex.amap(nap, [0.01, 0.01])]
        return ran_on is loop, values, loop.is_closed()

    same_loop, values, closed = asyncio.run(main())
    assert same_loop
    assert values == ["slept", "slept"]
    assert not closed  # the executor never closes a loop it was given


def test_a_task_cancelled_before_its_first_step_never_runs() -> None:
    class Counted:
        calls = 0

        async def __call__(self) -> str:
            Counted.calls += 1
            return "ran"

    async def main() -> list[Any]:
        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            doomed, kept = ex.submit(Counted()), ex.submit(Counted())
            seen: list[Any] = [doomed.cancel(), await kept]
            try:
                await doomed
            except concurrent.futures.CancelledError:
                seen.append("cancelled")
            seen += [ex.statistics().cancelled, ex.statistics().done]
        return seen

    # Its body never ran, and no coroutine is left un-awaited (warnings are errors here).
    assert asyncio.run(main()) == [True, "ran", "cancelled", 1, 1]
    assert Counted.calls == 1


def _plain_task_factory(
    loop: asyncio.AbstractEventLoop, coro: Any, **options: Any
) -> asyncio.Task[Any]:
    return asyncio.Task(coro, loop=loop, **options)


@pytest.mark.parametrize("task_factory", [None, _plain_task_factory])
def test_an_asyncio_task_cancelled_from_outside_before_it_starts_settles_its_future(
    task_factory: Any,
) -> None:
    async def quick() -> str:
        return "quick"

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(task_factory)
        async with taskkit.open_executor("asyncio", loop=loop, max_workers=1) as ex:
            fut = ex.submit(quick)
            for _ in range(2):  # as code that cancels every task would, twice
                for other in asyncio.all_tasks():
                    if other is not asyncio.current_task():
                        other.cancel()
            seen: list[Any] = []
            try:
                await asyncio.wait_for(asyncio.wrap_future(fut), 5)
            except asyncio.CancelledError:
                seen.append("cancelled")
            # Its place under max_workers=1 was given back, once: the next tasks run,
            # one at a time.
            seen.append(await asyncio.wait_for(asyncio.wrap_future(ex.submit(quick)), 5))
            running, most = [0], [0]

            async def one_at_a_time() -> None:
                running[0] += 1
                most[0] = max(most[0], running[0])
                await asyncio.sleep(0)
                running[0] -= 1

            await asyncio.gather(*(ex.submit(one_at_a_time) for _ in range(3)))
            seen.append(most[0])
        return seen

    assert asyncio.run(main()) == ["cancelled", "quick", 1]


def test_ctrl_c_inside_a_task_reaches_the_loop_and_fails_the_future() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # asyncio reports the interrupted task's exception as never retrieved: expected.
        loop.set_exception_handler(lambda loop, context: None)
        ex = taskkit.open_executor("asyncio", loop=loop)
        fut = ex.submit(interrupted)
        try:
            await asyncio.sleep(1)  # the loop runs the task, and the interrupt stops it
        finally:
            assert isinstance(fut.exception(timeout=0), KeyboardInterrupt)
            ex.shutdown(wait=False)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())


def test_join_on_the_loop_it_runs_on_is_refused() -> None:
    async def main() -> None:
        ex = taskkit.open_executor("asyncio", loop=asyncio.get_running_loop())
        fut = ex.submit(nap, 0.01)
        with pytest.raises(RuntimeError, match="async with"):
            ex.join()
        await fut
        ex.shutdown()

    asyncio.run(main())


def test_own_loop_is_closed_after_shutdown(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    ex.submit(nap, 0).result(timeout=10)
    ex.shutdown(wait=True)
    assert ex.loop.is_closed()
    assert ex.statistics().workers == 0


def test_shutdown_kill_cancels_running_tasks(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    fut = ex.submit(forever)
    assert started.wait(10)
    ex.shutdown(wait=True, kill=True)
    assert fut.cancelled()
    assert ex.loop.is_closed()


def test_uvloop_when_asked_for_and_installed(make: Callable[..., AsyncioExecutor]) -> None:
    uvloop = pytest.importorskip("uvloop")
    ex = make(uvloop=True)
    assert isinstance(ex.loop, uvloop.Loop)
    assert ex.submit(nap, 0.01).result(timeout=10) == "slept"


def test_uvloop_is_never_required(
    make: Callable[..., AsyncioExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    ex = make(uvloop=True)
    assert type(ex.loop).__module__.startswith("asyncio")
    assert ex.submit(nap, 0.01).result(timeout=10) == "slept"


def test_bad_loop_options_are_rejected() -> None:
    with pytest.raises(TypeError, match="loop"):
        taskkit.open_executor("asyncio", loop="not a loop")
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="uvloop"):
            taskkit.open_executor("asyncio", loop=loop, uvloop=True)
    finally:
        loop.close()


def test_a_coroutine_backend_future_is_awaitable_here(make: Callable[..., AsyncioExecutor]) -> None:
    ex = make()

    async def cooperative() -> str:
        await taskkit.sleep(0.01)
        return "from the coroutine backend"

    with taskkit.open_executor("coroutine") as co:

        async def bridge() -> str:
            return await co.submit(cooperative)

        assert ex.submit(bridge).result(timeout=10) == "from the coroutine backend"


def test_taskkit_sleep_and_checkpoint_work_on_this_backend(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()

    async def portable() -> str:
        await taskkit.checkpoint()
        await taskkit.sleep(0.01)
        return "ok"

    assert ex.submit(portable).result(timeout=10) == "ok"


# ---------------------------------------------------------------------------------------
# submit() from a task on the executor's loop: an async def function starts at once, as a
# task counted by the loop's thread (see AsyncioExecutor.submit).  These tests pin that it
# behaves as every other submit does.


async def add(x: int, *, plus: int = 0) -> int:
    await asyncio.sleep(0)
    return x + plus


async def fails() -> None:
    raise ValueError("no")


@pytest.mark.parametrize("loop_kind", ["asyncio's", "another"])
def test_submit_from_the_loop_counts_and_settles_like_any_submit(loop_kind: str) -> None:
    async def main() -> tuple[taskkit.Statistics, list[int], taskkit.Statistics]:
        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            assert isinstance(ex, AsyncioExecutor)
            if loop_kind == "another":  # as uvloop's: asked for the running loop instead
                ex._asyncio.loop_thread_known = False
            futures = [ex.submit(add, i, plus=1) for i in range(100)]
            if _fastpaths.ASYNCIO_INLINE_SUBMIT:  # each started at once, by the fast path
                assert all(type(future) is ex._asyncio.loop_tasks.task_class for future in futures)
            during = ex.statistics()
            values = [await future for future in futures]
            with pytest.raises(ValueError, match="no"):
                await ex.submit(fails)
        return during, values, ex.statistics()

    during, values, after = asyncio.run(main())
    assert values == list(range(1, 101))
    assert (during.submitted, during.running, during.pending, during.done) == (100, 100, 0, 0)
    assert (after.submitted, after.done, after.failed, after.running, after.pending) == (
        101,
        100,
        1,
        0,
        0,
    )


def test_tasks_submitted_by_a_task_of_the_executors_own_loop(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()

    async def parent() -> int:
        futures = [ex.submit(add, i) for i in range(10)]
        return sum([await future for future in futures])

    assert ex.submit(parent).result(timeout=10) == 45
    ex.shutdown(wait=True)  # its loop stops once the children are done too
    stats = ex.statistics()
    assert (stats.submitted, stats.done, stats.running) == (11, 11, 0)


def test_threads_waiting_on_futures_submitted_from_the_loop_are_woken() -> None:
    def wait_in_threads(futures: list[taskkit.Future[int]]) -> tuple[list[Any], list[Any]]:
        as_completed = taskkit.as_completed
        seen: list[Any] = []
        threads = [
            threading.Thread(target=lambda: seen.append(futures[0].result())),
            threading.Thread(
                target=lambda: seen.append(len(concurrent.futures.wait(futures[1:]).done))
            ),
            threading.Thread(
                target=lambda: seen.append(sorted(f.result() for f in as_completed(futures)))
            ),
        ]
        for thread in threads:
            thread.daemon = True  # one left waiting fails the test, not the run's exit
            thread.start()
        return threads, seen

    async def main() -> list[Any]:
        gate = asyncio.Event()

        async def gated(x: int) -> int:
            await gate.wait()
            return x

        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            futures = [ex.submit(gated, i) for i in range(3)]
            threads, seen = wait_in_threads(futures)
            # The gate opens once every thread waits: one asleep in result(), two
            # registered as waiters by wait() and as_completed().
            while not (
                futures[0]._sleepers is not None
                and len(futures[0]._sleepers._waiters) == 1  # type: ignore[attr-defined]
                and len(futures[2]._waiter_list or ()) == 2
            ):
                await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*futures)
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
        return sorted(seen, key=repr)

    assert asyncio.run(main()) == [0, 2, [0, 1, 2]]


@pytest.mark.parametrize("how", ["by its future", "from outside"])
def test_a_task_submitted_from_the_loop_and_cancelled_before_it_starts(how: str) -> None:
    calls = []

    async def counted() -> str:
        calls.append(1)
        return "ran"

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        async with taskkit.open_executor("asyncio", loop=loop) as ex:
            doomed = ex.submit(counted)
            if how == "by its future":
                cancelled = doomed.cancel()
            else:  # as code that cancels every task on the loop would, twice
                for _ in range(2):
                    for other in asyncio.all_tasks():
                        if other is not asyncio.current_task():
                            other.cancel()
                cancelled = True
            seen: list[Any] = [cancelled]
            try:
                await asyncio.wait_for(asyncio.wrap_future(doomed), 5)
            except asyncio.CancelledError:
                seen.append("cancelled")
            seen.append(await ex.submit(counted))
        stats = ex.statistics()
        return [*seen, stats.cancelled, stats.done, stats.running]

    # Its body never ran and no coroutine is left un-awaited (warnings are errors here);
    # its place was given back, and the executor closed without waiting for it.
    assert asyncio.run(main()) == [True, "cancelled", "ran", 1, 1, 0]
    assert calls == [1]


def test_a_running_task_submitted_from_the_loop_is_cancelled_from_another_thread() -> None:
    async def main() -> list[Any]:
        started, finally_ran = asyncio.Event(), asyncio.Event()

        async def forever() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                finally_ran.set()

        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            fut = ex.submit(forever)
            await started.wait()
            cancelled = await asyncio.to_thread(fut.cancel)
            with pytest.raises(concurrent.futures.CancelledError):
                await fut
            # The cancel lands inside the task, at its await: its finally block runs.
            await asyncio.wait_for(finally_ran.wait(), 10)
        stats = ex.statistics()
        return [cancelled, stats.cancelled, stats.running]

    assert asyncio.run(main()) == [True, 1, 0]


def test_submit_from_the_loop_after_close_is_refused() -> None:
    async def main() -> None:
        ex = taskkit.open_executor("asyncio", loop=asyncio.get_running_loop())
        ex.close()
        with pytest.raises(taskkit.ExecutorClosed):
            ex.submit(add, 1)
        ex.shutdown()

    asyncio.run(main())


def test_a_loops_task_factory_still_makes_the_tasks_submitted_from_it() -> None:
    made: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **options)

    async def main() -> tuple[int, int]:
        asyncio.get_running_loop().set_task_factory(factory)
        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            return await ex.submit(add, 1, plus=2), len(made)

    assert asyncio.run(main()) == (3, 1)


def test_a_future_submitted_from_the_loop_drops_its_arguments_when_done() -> None:
    class Big:
        pass

    async def takes(big: Big) -> int:
        return 1

    async def main() -> tuple[int, bool]:
        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            big = Big()
            alive = weakref.ref(big)
            fut = ex.submit(takes, big)
            del big
            value = await fut
        return value, alive() is None

    assert asyncio.run(main()) == (1, True)


@given(
    st.lists(
        st.sampled_from(["returns", "raises", "cancelled at once", "cancelled running"]),
        max_size=30,
    )
)
def test_every_future_submitted_from_the_loop_settles_once_and_is_counted(
    plan: list[str],
) -> None:
    async def step(outcome: str, started: asyncio.Event) -> str:
        started.set()
        await asyncio.sleep(0)
        if outcome == "raises":
            raise KeyError(outcome)
        if outcome == "cancelled running":
            await asyncio.Event().wait()  # until cancelled
        return outcome

    async def main() -> tuple[list[str], taskkit.Statistics]:
        async with taskkit.open_executor("asyncio", loop=asyncio.get_running_loop()) as ex:
            started = [asyncio.Event() for _ in plan]
            futures = [ex.submit(step, what, s) for what, s in zip(plan, started, strict=True)]
            for what, future, event in zip(plan, futures, started, strict=True):
                if what == "cancelled at once":
                    assert future.cancel()
                elif what == "cancelled running":
                    await event.wait()
                    assert future.cancel()
            ends = []
            for future in futures:
                try:
                    ends.append(await future)
                except KeyError:
                    ends.append("raises")
                except concurrent.futures.CancelledError:
                    ends.append("cancelled")
        return ends, ex.statistics()

    ends, stats = asyncio.run(main())
    assert ends == [what if what in ("returns", "raises") else "cancelled" for what in plan]
    assert (stats.submitted, stats.running, stats.pending) == (len(plan), 0, 0)
    assert stats.done == plan.count("returns")
    assert stats.failed == plan.count("raises")
    assert stats.cancelled == len(plan) - stats.done - stats.failed


def test_opened_inside_a_running_loop_it_uses_that_loop() -> None:
    async def main() -> tuple[bool, str, bool]:
        loop = asyncio.get_running_loop()
        async with taskkit.open_executor("asyncio") as ex:
            ran_on, thread = await ex.submit(where)
        return ran_on is loop and ex.loop is loop, thread, loop.is_closed()

    same_loop, thread, closed = asyncio.run(main())
    assert same_loop
    assert thread == threading.current_thread().name  # no hand-off to a thread of its own
    assert not closed


def test_opened_outside_a_loop_it_runs_a_loop_of_its_own(
    make: Callable[..., AsyncioExecutor],
) -> None:
    ex = make()
    assert ex.submit(where).result(timeout=10)[1] == "taskkit-asyncio"


async def raises(error: type[BaseException]) -> None:
    raise error


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_exit_or_ctrl_c_in_a_task_fails_only_its_future(
    error: type[BaseException], make: Callable[..., AsyncioExecutor]
) -> None:
    ex = make()
    release = ex.event()
    waiting = ex.submit(release.await_, 20)
    failed = ex.submit(raises, error)
    assert isinstance(failed.exception(timeout=20), error)
    # The loop runs on: other tasks settle, new ones are taken, shutdown ends.
    assert ex.submit(nap, 0).result(timeout=20) == "slept"
    release.set()
    assert waiting.result(timeout=20) is True
    assert ex.join(timeout=20)
    ex.shutdown(wait=True)
    with pytest.raises(taskkit.ExecutorClosed):
        ex.submit(nap, 0)


async def record_cleanup(started: asyncio.Event, cleaned: list[str]) -> None:
    started.set()
    try:
        await asyncio.sleep(60)
    finally:
        await asyncio.sleep(0)  # cleanup that awaits, as a TaskGroup lets it
        cleaned.append("cleaned up")


def test_async_with_left_by_an_exception_waits_for_the_cancelled_tasks_cleanup() -> None:
    cleaned: list[str] = []
    futures: list[taskkit.Future[None]] = []

    async def body() -> None:
        started = asyncio.Event()
        async with taskkit.open_executor("asyncio") as ex:
            futures.append(ex.submit(record_cleanup, started, cleaned))
            await started.wait()
            raise KeyError("the body failed")

    async def main() -> list[str]:
        with pytest.raises(KeyError):
            await body()
        return list(cleaned)  # as the block was left, before asyncio.run cleans up

    assert asyncio.run(asyncio.wait_for(main(), 30)) == ["cleaned up"]
    assert futures[0].cancelled()
