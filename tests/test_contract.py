"""The Executor contract, run on every backend that is available.

A new backend joins this suite by being registered in ``taskkit.BACKENDS``
and importing: the ``backend`` fixture (conftest.py) is parametrized over them.
Functions used as tasks live at module level so that the process and dask
backends can ship them by reference.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import itertools
import os
import pathlib
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest

import taskkit

ASYNC_NATIVE = {"coroutine", "asyncio"}


def square(x: int) -> int:
    return x * x


def add(x: int, y: int, *, z: int = 0) -> int:
    return x + y + z


def takes_fn(fn: int) -> int:
    return fn + 1


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def boom(message: str) -> None:
    raise KeyError(message)


def flaky(path: str, failures: int) -> int:
    """Fail the first ``failures`` calls, counted in a file so processes share the count."""
    with open(path, "a") as f:
        f.write("x")
    calls = pathlib.Path(path).stat().st_size
    if calls <= failures:
        raise RuntimeError(f"attempt {calls} fails")
    return calls


def _say_started(fifo: str | None) -> None:
    # Opening a FIFO for writing blocks until the test opens it for reading:
    # a rendezvous that tells the test this task is running, with no polling.
    if fifo is not None:
        with open(fifo, "w"):
            pass


def wait_for_file(path: str, started: str | None = None) -> str:
    """Block until ``path`` exists (a gate the test opens; works across processes)."""
    _say_started(started)
    while not os.path.exists(path):
        time.sleep(0.002)
    return "opened"


async def await_file(path: str, started: str | None = None) -> str:
    _say_started(started)
    while not os.path.exists(path):
        await _async_sleep(0.002)
    return "opened"


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


async def asleep_for(seconds: float) -> str:
    await _async_sleep(seconds)
    return "slept"


async def _async_sleep(seconds: float) -> None:
    # On the coroutine backend a task awaits taskkit.sleep; elsewhere asyncio's.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        await taskkit.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def wait_until_started(fifo: str) -> None:
    with open(fifo):
        pass


def gate_fn(backend: str) -> Callable[..., Any]:
    return await_file if backend in ASYNC_NATIVE else wait_for_file


def sleep_fn(backend: str) -> Callable[[float], Any]:
    return asleep_for if backend in ASYNC_NATIVE else sleep_for


# --------------------------------------------------------------------- submit


def test_submit_returns_taskkit_future(executor: taskkit.Executor) -> None:
    fut = executor.submit(square, 7)
    assert isinstance(fut, taskkit.Future)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 49
    assert fut.done()
    assert not fut.cancelled()


class Payload:
    """An argument a test can watch die (a weak reference to it goes dead)."""

    def __init__(self, n: int) -> None:
        self.n = n


def payload_n(payload: Payload) -> int:
    return payload.n


def test_a_kept_future_does_not_keep_its_arguments(executor: taskkit.Executor) -> None:
    payload = Payload(3)
    watch = weakref.ref(payload)
    fut = executor.submit(payload_n, payload)
    assert fut.result(timeout=30) == 3
    executor.join(timeout=30)  # the executor's own bookkeeping is done with it too
    del payload
    gc.collect()
    assert watch() is None
    assert fut.result() == 3


def test_executor_is_a_concurrent_futures_executor(executor: taskkit.Executor) -> None:
    assert isinstance(executor, concurrent.futures.Executor)
    assert isinstance(executor, taskkit.Executor)


def test_submit_passes_args_and_kwargs(executor: taskkit.Executor) -> None:
    assert executor.submit(add, 1, 2, z=3).result(timeout=30) == 6


def test_fn_is_positional_only(executor: taskkit.Executor) -> None:
    assert executor.submit(takes_fn, fn=1).result(timeout=30) == 2


def test_exception_is_reraised_with_type_and_message(executor: taskkit.Executor) -> None:
    fut = executor.submit(boom, "the message")
    with pytest.raises(KeyError, match="the message"):
        fut.result(timeout=30)
    assert isinstance(fut.exception(), KeyError)


def test_non_callable_is_a_type_error(executor: taskkit.Executor) -> None:
    with pytest.raises(TypeError):
        executor.submit(42)  # type: ignore[arg-type]


def test_as_completed_yields_each_future_once(executor: taskkit.Executor) -> None:
    futures = [executor.submit(square, i) for i in range(20)]
    seen = list(taskkit.as_completed(futures + futures[:5], timeout=60))
    assert len(seen) == 20
    assert set(seen) == set(futures)
    assert sorted(f.result() for f in seen) == [i * i for i in range(20)]


def test_concurrent_futures_wait_works(executor: taskkit.Executor) -> None:
    futures = [executor.submit(square, i) for i in range(5)]
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    assert {f.result() for f in done} == {0, 1, 4, 9, 16}


def test_future_is_awaitable_from_asyncio(executor: taskkit.Executor) -> None:
    async def main() -> int:
        return await executor.submit(square, 9)

    assert asyncio.run(main()) == 81


def test_awaiting_a_failed_future_raises(executor: taskkit.Executor) -> None:
    async def main() -> None:
        await executor.submit(boom, "awaited")

    with pytest.raises(KeyError, match="awaited"):
        asyncio.run(main())


# ------------------------------------------------------------------------ map


def test_map_is_ordered_and_matches_builtin_map(executor: taskkit.Executor) -> None:
    assert [square(i) for i in range(100)] == list(executor.map(square, range(100)))


def test_map_stops_at_the_shortest_iterable(executor: taskkit.Executor) -> None:
    assert list(executor.map(add, [1, 2], [10, 11, 12])) == [11, 13]
    assert list(executor.map(square, [])) == []


def test_map_unordered_yields_every_result(executor: taskkit.Executor) -> None:
    assert sorted(square(i) for i in range(50)) == sorted(
        executor.map(square, range(50), ordered=False)
    )


@pytest.mark.parametrize(("window", "chunksize"), [(1, None), (3, 1), (5, 2), (7, 100)])
def test_map_window_and_chunksize(executor: taskkit.Executor, window: int, chunksize: int) -> None:
    assert [square(i) for i in range(23)] == list(
        executor.map(square, range(23), window=window, chunksize=chunksize)
    )


def test_map_consumes_an_infinite_input_lazily(executor: taskkit.Executor) -> None:
    pulled = itertools.count()

    def source() -> Any:
        for i in itertools.count():
            next(pulled)
            yield i

    results = executor.map(square, source(), window=8)
    first = list(itertools.islice(results, 20))
    assert [i * i for i in range(20)] == first
    # At most `window` items beyond what was consumed were read from the input.
    assert next(pulled) <= 20 + 8
    results.close()  # type: ignore[attr-defined]


def test_map_over_a_range_too_long_for_len(executor: taskkit.Executor) -> None:
    results = executor.map(square, range(10**20), window=16)
    assert [0, 1, 4] == [next(results) for _ in range(3)]
    results.close()  # type: ignore[attr-defined]


def test_map_raises_at_the_failing_item(executor: taskkit.Executor) -> None:
    results = executor.map(fail_on, range(10), [4] * 10, chunksize=3)
    assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="bad item 4"):
        next(results)


def test_map_raises_an_error_of_the_input_after_earlier_results(
    executor: taskkit.Executor,
) -> None:
    def source() -> Any:
        yield from range(3)
        raise OSError("input broke")

    results = executor.map(square, source())
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(OSError, match="input broke"):
        next(results)


def test_map_rejects_bad_arguments(executor: taskkit.Executor) -> None:
    with pytest.raises(ValueError):
        executor.map(square, range(3), window=0)
    with pytest.raises(ValueError):
        executor.map(square, range(3), chunksize=0)
    with pytest.raises(TypeError):
        executor.map(42, range(3))  # type: ignore[arg-type]


def test_amap_from_asyncio(executor: taskkit.Executor) -> None:
    async def main() -> list[int]:
        return [y async for y in executor.amap(square, range(30))]

    assert [i * i for i in range(30)] == asyncio.run(main())


def test_amap_unordered_from_asyncio(executor: taskkit.Executor) -> None:
    async def main() -> list[int]:
        return [y async for y in executor.amap(square, range(30), ordered=False)]

    assert sorted(i * i for i in range(30)) == sorted(asyncio.run(main()))


# -------------------------------------------------------------------- options


def test_retries_rerun_a_failing_task(executor: taskkit.Executor, tmp_path: pathlib.Path) -> None:
    counter = str(tmp_path / "calls")
    fut = executor.options(retries=2).submit(flaky, counter, 2)
    assert fut.result(timeout=60) == 3
    assert executor.statistics().retried == 2


def test_retries_are_bounded(executor: taskkit.Executor, tmp_path: pathlib.Path) -> None:
    counter = str(tmp_path / "calls")
    fut = executor.options(retries=1).submit(flaky, counter, 5)
    with pytest.raises(RuntimeError, match="attempt 2 fails"):
        fut.result(timeout=60)


def test_timeout_fails_the_future_on_time(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    ex = make_executor(max_workers=2)
    # Serial runs the call inline to its end, so keep it short there.
    duration = 0.5 if backend == "serial" else 2.0
    slow = ex.options(timeout=0.2, name="slow-one").submit(sleep_fn(backend), duration)
    start = time.monotonic()
    with pytest.raises(taskkit.TaskTimeout, match="slow-one") as info:
        slow.result(timeout=30)
    assert isinstance(info.value, TimeoutError)
    if backend != "serial":  # serial runs the call inline, inside submit()
        assert time.monotonic() - start < 1.5
    assert ex.statistics().timed_out == 1


def test_options_reject_bad_values(executor: taskkit.Executor) -> None:
    with pytest.raises(ValueError):
        executor.options(timeout=-1)
    with pytest.raises(ValueError):
        executor.options(retries=-1)


def test_map_with_options(executor: taskkit.Executor) -> None:
    assert list(executor.options(timeout=30, retries=1).map(square, range(3))) == [0, 1, 4]


def test_map_timeout(backend: str, make_executor: Callable[..., taskkit.Executor]) -> None:
    if backend == "serial":
        pytest.skip("serial computes each result inline, when it is reached")
    ex = make_executor(max_workers=1)
    results = ex.map(sleep_fn(backend), [1.0, 1.0], timeout=0.1)
    with pytest.raises(taskkit.TaskTimeout):
        next(results)


# ----------------------------------------------- map: each call as one submit (issue 14)


def flaky_item(directory: str, item: int, failures: int) -> int:
    """``flaky`` with a count of its own per item: fails its first ``failures`` calls."""
    return flaky(os.path.join(directory, f"calls-{item}"), failures)


async def aflaky_item(directory: str, item: int, failures: int) -> int:
    return flaky_item(directory, item, failures)


async def afail_on(x: int, bad: int) -> int:
    return fail_on(x, bad)


def calls_made(directory: pathlib.Path, items: int) -> list[int]:
    return [(directory / f"calls-{item}").stat().st_size for item in range(items)]


@pytest.mark.parametrize("fn", [flaky_item, aflaky_item])
def test_map_retries_each_failing_call_alone(
    executor: taskkit.Executor, tmp_path: pathlib.Path, fn: Callable[..., Any]
) -> None:
    failures = [0, 2, 0, 1, 0, 0, 2]
    n = len(failures)
    results = executor.options(retries=2).map(
        fn, [str(tmp_path)] * n, range(n), failures, chunksize=3
    )
    assert [f + 1 for f in failures] == list(results)
    # Each call ran as often as it had to, and no more: its chunk was not run again.
    assert [f + 1 for f in failures] == calls_made(tmp_path, n)
    executor.join(timeout=60)
    stats = executor.statistics()
    assert (n, 0, sum(failures)) == (stats.done, stats.failed, stats.retried)


def test_map_a_call_out_of_retries_fails_alone(
    executor: taskkit.Executor, tmp_path: pathlib.Path
) -> None:
    failures = [0, 0, 5, 0]
    directory = [str(tmp_path)] * 4
    view = executor.options(retries=1)
    results = view.map(flaky_item, directory, range(4), failures, chunksize=4)
    assert [1, 1] == [next(results), next(results)]
    with pytest.raises(RuntimeError, match="attempt 2 fails"):
        next(results)
    executor.join(timeout=60)
    stats = executor.statistics()
    assert (2, 1, 1) == (stats.done, stats.failed, stats.retried)


@pytest.mark.parametrize("fn", [fail_on, afail_on])
@pytest.mark.parametrize("ordered", [True, False])
def test_map_return_exceptions_yields_each_error_in_its_place(
    executor: taskkit.Executor, fn: Callable[..., Any], ordered: bool
) -> None:
    out = list(
        executor.map(fn, range(10), [4] * 10, chunksize=3, ordered=ordered, return_exceptions=True)
    )
    errors = [y for y in out if isinstance(y, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert "bad item 4" in str(errors[0])
    assert [0, 1, 2, 3, 5, 6, 7, 8, 9] == sorted(y for y in out if y is not errors[0])
    if ordered:
        assert [0, 1, 2, 3, errors[0], 5, 6, 7, 8, 9] == out
    executor.join(timeout=60)
    stats = executor.statistics()
    assert (9, 1, 0) == (stats.done, stats.failed, stats.cancelled)


def test_map_return_exceptions_with_retries_counts_each_call(
    executor: taskkit.Executor, tmp_path: pathlib.Path
) -> None:
    failures = [0, 5, 1, 5]
    results = executor.options(retries=1).map(
        flaky_item, [str(tmp_path)] * 4, range(4), failures, return_exceptions=True
    )
    out = list(results)
    assert [1, 2] == [out[0], out[2]]
    assert all(isinstance(out[i], RuntimeError) for i in (1, 3))
    assert [1, 2, 2, 2] == calls_made(tmp_path, 4)
    executor.join(timeout=60)
    stats = executor.statistics()
    assert (2, 2, 3) == (stats.done, stats.failed, stats.retried)


@pytest.mark.parametrize("name", [None, "resize"])
def test_map_timeout_option_is_a_deadline_per_call_named_after_it(
    backend: str,
    make_executor: Callable[..., taskkit.Executor],
    tmp_path: pathlib.Path,
    name: str | None,
) -> None:
    ex = make_executor(max_workers=2)
    ex.submit(square, 2).result(timeout=60)  # a worker's start-up is not part of any call
    if backend == "serial":
        # Serial runs the call inline to its end, so the overrunning call is a short sleep.
        fn, args, timeout, done = sleep_fn(backend), [0.0, 0.5], 0.3, "slept"
    else:
        # The overrunning call waits for a gate opened once it timed out: a thread or a
        # Dask worker, which cannot be stopped, is then free again at once.
        ready = tmp_path / "ready"
        ready.touch()
        fn, args, timeout, done = (
            gate_fn(backend),
            [str(ready), str(tmp_path / "gate")],
            1.5,
            "opened",
        )
    try:
        out = list(ex.options(timeout=timeout, name=name).map(fn, args, return_exceptions=True))
    finally:
        (tmp_path / "gate").touch()
    assert done == out[0]
    assert isinstance(out[1], taskkit.TaskTimeout)
    assert (name or fn.__name__) in str(out[1])
    assert "run_c" not in str(out[1])
    ex.join(timeout=60)
    stats = ex.statistics()
    assert (2, 1, 1) == (stats.done, stats.failed, stats.timed_out)


def test_amap_takes_the_options_of_map(
    executor: taskkit.Executor, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")

    async def main() -> list[Any]:
        view = executor.options(retries=1)
        results = view.amap(
            flaky_item,
            [str(tmp_path)] * 3,
            range(3),
            [0, 1, 5],
            ordered=True,
            progress=True,
            return_exceptions=True,
        )
        return [y async for y in results]

    out = asyncio.run(main())
    assert [1, 2] == out[:2]
    assert isinstance(out[2], RuntimeError)
    assert "3/3" in capsys.readouterr().err  # the progress bar reached the end


def nap(seconds: float) -> tuple[float, float]:
    """Sleep; return when the call started and ended (one clock for every process)."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


async def anap(seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    await _async_sleep(seconds)
    return start, time.monotonic()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


@pytest.mark.parametrize("entry", ["submit", "map", "amap"])
def test_max_workers_bounds_calls_in_every_entry_point(
    backend: str, make_executor: Callable[..., taskkit.Executor], entry: str
) -> None:
    ex = make_executor(max_workers=2)
    fn = anap if backend in ASYNC_NATIVE else nap
    naps = [0.02] * 16
    if entry == "submit":
        intervals = [f.result(timeout=60) for f in [ex.submit(fn, s) for s in naps]]
    elif entry == "map":
        intervals = list(ex.map(fn, naps))
    else:

        async def main() -> list[tuple[float, float]]:
            return [y async for y in ex.amap(fn, naps)]

        intervals = asyncio.run(main())
    assert most_at_once(intervals) <= 2


def test_statistics_running_counts_calls_not_chunks(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    if backend == "dask":
        pytest.skip("dask: a task handed to the cluster counts as running until it ends")
    ex = make_executor(max_workers=2)
    fn = anap if backend in ASYNC_NATIVE else nap
    most = 0
    for _ in ex.map(fn, [0.002] * 200):
        stats = ex.statistics()
        most = max(most, stats.running)
        assert stats.pending >= 0
    assert most <= 2


def make_payload(n: int) -> Payload:
    return Payload(n)


@pytest.mark.parametrize("how", ["ordered", "unordered", "one task per call"])
def test_map_keeps_no_result_it_has_yielded(executor: taskkit.Executor, how: str) -> None:
    # As CPython's test_free_reference checks for concurrent.futures' map.
    view = executor.options(timeout=60) if how == "one task per call" else executor
    for obj in view.map(make_payload, range(12), chunksize=4, ordered=how != "unordered"):
        watch = weakref.ref(obj)
        del obj
        gc.collect()
        assert watch() is None


def test_tasks_are_numbered_in_submission_order(executor: taskkit.Executor) -> None:
    futures = [executor.submit(boom, str(i)) for i in range(6)]
    # Names read in another order than the futures were submitted in.
    names = {f: f.name for f in reversed(futures)}
    numbers = [int(names[f].rpartition("#")[2]) for f in futures]
    assert sorted(numbers) == numbers
    assert all(names[f].startswith("boom#") for f in futures)


# ------------------------------------------------------------- cancel, close


def test_cancel_a_pending_task(
    backend: str, make_executor: Callable[..., taskkit.Executor], tmp_path: pathlib.Path
) -> None:
    if backend == "serial":
        pytest.skip("serial runs every task inside submit(): none is ever pending")
    gate = str(tmp_path / "gate")
    ex = make_executor(max_workers=1)
    blocker = ex.submit(gate_fn(backend), gate)
    victims = [ex.submit(square, i) for i in range(3)]
    assert all(v.cancel() for v in victims)
    assert all(v.cancelled() for v in victims)
    pathlib.Path(gate).touch()
    assert blocker.result(timeout=60) == "opened"
    done, _ = concurrent.futures.wait(victims, timeout=10)
    assert set(done) == set(victims)
    with pytest.raises(concurrent.futures.CancelledError):
        victims[0].result()
    ex.join()
    stats = ex.statistics()
    assert stats.cancelled == 3
    assert stats.done == 1


def test_submit_after_shutdown_is_refused(executor: taskkit.Executor) -> None:
    executor.submit(square, 2).result(timeout=30)
    executor.shutdown()
    assert executor.closed
    with pytest.raises(taskkit.ExecutorClosed):
        executor.submit(square, 2)
    with pytest.raises(taskkit.ExecutorClosed):
        executor.map(square, range(3))


@pytest.mark.parametrize(
    "make",
    [
        lambda ex: ex.queue(),
        lambda ex: ex.lock(),
        lambda ex: ex.event(),
        lambda ex: ex.semaphore(2),
        lambda ex: ex.value(0),
    ],
    ids=["queue", "lock", "event", "semaphore", "value"],
)
def test_primitives_after_shutdown_are_refused(
    executor: taskkit.Executor, make: Callable[[taskkit.Executor], object]
) -> None:
    make(executor)  # one made before is fine
    executor.shutdown()
    with pytest.raises(taskkit.ExecutorClosed):
        make(executor)


def test_close_then_join_waits_for_all(executor: taskkit.Executor) -> None:
    futures = [executor.submit(square, i) for i in range(10)]
    executor.close()
    with pytest.raises(taskkit.ExecutorClosed):
        executor.submit(square, 1)
    assert executor.join(timeout=60)
    assert all(f.done() for f in futures)
    assert [i * i for i in range(10)] == [f.result() for f in futures]


def test_with_block_waits_for_submitted_work(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    with make_executor(max_workers=2) as ex:
        futures = [ex.submit(sleep_fn(backend), 0.01) for _ in range(4)]
    assert all(f.done() and f.result() == "slept" for f in futures)


def test_async_with_waits_for_submitted_work(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    ex = make_executor(max_workers=2)

    async def main() -> list[Any]:
        async with ex:
            futures = [ex.submit(square, i) for i in range(5)]
        return [f.result(timeout=0) for f in futures]

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert ex.closed


def test_shutdown_cancel_pending(
    backend: str, make_executor: Callable[..., taskkit.Executor], tmp_path: pathlib.Path
) -> None:
    if backend == "serial":
        pytest.skip("serial runs every task inside submit(): none is ever pending")
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
    os.mkfifo(started)
    ex = make_executor(max_workers=1)
    blocker = ex.submit(gate_fn(backend), gate, started)
    pending = [ex.submit(square, i) for i in range(3)]
    wait_until_started(started)
    pathlib.Path(gate).touch()
    ex.shutdown(wait=True, cancel_pending=True)
    assert blocker.result(timeout=0) == "opened"
    # Each queued task was either cancelled or had already started and finished.
    for fut in pending:
        assert fut.done()
        assert fut.cancelled() or fut.result() in {0, 1, 4}


def test_statistics_count_calls(executor: taskkit.Executor) -> None:
    list(executor.map(square, range(37)))
    executor.submit(boom, "x").exception(timeout=30)
    executor.join()
    stats = executor.statistics()
    assert isinstance(stats, taskkit.Statistics)
    assert stats.backend == executor.backend
    assert stats.submitted == 38
    assert stats.done == 37
    assert stats.failed == 1
    assert stats.running == 0
    assert stats.pending == 0
    with pytest.raises(AttributeError):
        stats.done = 0  # type: ignore[misc]


def test_statistics_count_a_failing_call_in_a_one_call_chunk(executor: taskkit.Executor) -> None:
    with pytest.raises(ValueError, match="bad item 2"):
        list(executor.map(fail_on, range(5), [2] * 5, chunksize=1, window=1))
    executor.join()
    stats = executor.statistics()
    assert stats.failed == 1
    assert stats.done == 2
    assert stats.done + stats.failed + stats.cancelled == stats.submitted


def test_max_workers_below_one_is_rejected(backend: str) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        taskkit.open_executor(backend, max_workers=0)  # type: ignore[arg-type]


def test_unknown_option_is_rejected(backend: str) -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        taskkit.open_executor(backend, no_such_option=1)  # type: ignore[arg-type]


# ------------------------------------------------- waits that could never end (issue 15.7)


def test_shutdown_or_join_inside_an_own_task_raises(
    backend: str, run_python: Callable[..., Any]
) -> None:
    if backend not in {"thread", "serial", "coroutine", "asyncio"}:
        pytest.skip("process and dask tasks run elsewhere and cannot reach the executor")
    # In a child interpreter: before the fix, the task waited for itself forever.
    script = f"""
        import taskkit

        def stop(ex, how):
            getattr(ex, how)()

        async def astop(ex, how):
            getattr(ex, how)()

        with taskkit.open_executor("{backend}") as ex:
            fns = [stop, astop] if "{backend}" in ("coroutine", "asyncio") else [stop]
            for fn in fns:
                for how in ["shutdown", "join"]:
                    error = ex.submit(fn, ex, how).exception(timeout=20)
                    assert isinstance(error, taskkit.BlockingCallError), repr(error)
                    assert isinstance(error, RuntimeError)
                    assert how + "(" in str(error), str(error)
            assert not ex.closed  # refused before anything changed
            assert ex.submit(abs, -2).result(timeout=20) == 2
        print("exited")
    """
    child = run_python(script, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout == "exited\n"


async def wait_for_event(event: Any) -> bool:
    return bool(await event.await_())


async def result_of(future: Any, timeout: float | None) -> str:
    try:
        return f"value {future.result(timeout=timeout)}"
    except taskkit.BlockingCallError as error:
        return f"refused: {error}"
    except TimeoutError:
        return "timed out"


async def exception_of(future: Any) -> str:
    try:
        return repr(future.exception(timeout=5))
    except taskkit.BlockingCallError as error:
        return f"refused: {error}"


def test_result_on_the_executors_own_loop_raises(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    if backend not in ASYNC_NATIVE:
        pytest.skip("only the coroutine and asyncio backends run tasks on an event loop")
    ex = make_executor()
    gate = ex.event()
    pending = ex.submit(wait_for_event, gate)
    # On the loop's thread, waiting for a task that needs that very thread.
    refused = ex.submit(result_of, pending, 5).result(timeout=30)
    assert refused.startswith("refused: ")
    assert "await" in refused
    assert ex.submit(result_of, pending, None).result(timeout=30).startswith("refused: ")
    assert ex.submit(exception_of, pending).result(timeout=30).startswith("refused: ")
    # A wait of no time blocks nothing: it still just looks.
    assert ex.submit(result_of, pending, 0).result(timeout=30) == "timed out"
    gate.set()
    assert pending.result(timeout=30) is True
    # A finished future's result() is read on the loop like anywhere else.
    assert ex.submit(result_of, pending, None).result(timeout=30) == "value True"


# ------------------------------------------------ async with left by an exception (14.5)


def test_async_with_left_by_an_exception_cancels_the_work(
    backend: str, make_executor: Callable[..., taskkit.Executor], tmp_path: pathlib.Path
) -> None:
    gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
    os.mkfifo(started)
    ex = make_executor(max_workers=1)
    futures: list[taskkit.Future[Any]] = []

    async def main() -> None:
        async with ex:
            if backend != "serial":  # serial would run the blocker inside submit()
                futures.append(ex.submit(gate_fn(backend), gate, started))
                await asyncio.to_thread(wait_until_started, started)
            futures.extend(ex.submit(square, i) for i in range(20))
            raise KeyError("the body failed")

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:
            errors.append(error)

    # A hard timeout: before the fix the exit waited for the gate, which only opens below.
    runner = threading.Thread(target=run)
    runner.start()
    runner.join(30)
    returned_promptly = not runner.is_alive()
    pathlib.Path(gate).touch()
    runner.join(60)
    assert returned_promptly, "async with waited for the work after its body raised"
    assert [KeyError] == [type(error) for error in errors]
    assert ex.closed
    if backend != "serial":
        assert all(future.cancelled() for future in futures[1:])


def test_with_left_by_an_exception_still_waits(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    ex = make_executor(max_workers=1)
    futures: list[taskkit.Future[Any]] = []

    def body() -> None:
        with ex:
            futures.extend(ex.submit(sleep_fn(backend), 0.01) for _ in range(3))
            raise KeyError("the body failed")

    with pytest.raises(KeyError):
        body()
    assert ["slept"] * 3 == [future.result(timeout=0) for future in futures]


# ----------------------------------------------------- overruns that never await (15.9)


def spin_for(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


async def aspin_for(seconds: float) -> str:
    return spin_for(seconds)  # never awaits: holds an event loop's thread throughout


def test_an_overrun_that_never_awaits_still_times_out(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    ex = make_executor(max_workers=1)
    fn = aspin_for if backend in ASYNC_NATIVE else spin_for
    warns = pytest.warns(taskkit.BlockingWarning) if backend == "coroutine" else nullcontext()
    with warns:
        future = ex.options(timeout=0.1, name="spinner").submit(fn, 0.4)
        with pytest.raises(taskkit.TaskTimeout, match="spinner") as info:
            future.result(timeout=30)
        ex.join()
    if backend in ASYNC_NATIVE:
        assert "without awaiting" in str(info.value)
    assert ex.statistics().timed_out == 1


# ------------------------------------------------------------------- fairness (14.9)


async def take_turns(
    start: Any, guard: Any, me: int, turns: list[int], n: int, sleep: Callable[[], Any]
) -> None:
    await start.await_()
    while len(turns) < n:
        async with guard:
            turns.append(me)
            await sleep()  # a switch point while holding it: the others queue up


async def _asyncio_checkpoint() -> None:
    await asyncio.sleep(0)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_a_release_goes_to_the_longest_waiter(
    backend: str, kind: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    if backend not in ASYNC_NATIVE:
        pytest.skip("threads and processes are woken by the operating system")
    ex = make_executor()
    guard = ex.lock() if kind == "lock" else ex.semaphore(1)
    start = ex.event()
    turns: list[int] = []
    sleep = taskkit.checkpoint if backend == "coroutine" else _asyncio_checkpoint
    tasks = [ex.submit(take_turns, start, guard, me, turns, 90, sleep) for me in range(3)]
    start.set()
    for task in tasks:
        task.result(timeout=30)
    counts = collections.Counter(turns[:90])
    assert sorted(counts) == [0, 1, 2]
    assert max(counts.values()) - min(counts.values()) <= 2, counts
    # Once all three wait in line, no task takes it twice in a row.
    assert all(a != b for a, b in itertools.pairwise(turns[6:90])), turns


async def consume_all(q: Any, me: int, got: list[int], sleep: Callable[[], Any]) -> None:
    while await q.aget() is not None:
        got.append(me)
        await sleep()


async def produce(q: Any, n: int, consumers: int) -> None:
    for item in [*range(n), *[None] * consumers]:
        await q.aput(item)


def test_a_queue_item_goes_to_a_waiting_consumer_first(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    if backend not in ASYNC_NATIVE:
        pytest.skip("threads and processes are woken by the operating system")
    ex = make_executor()
    q = ex.queue(maxsize=1)
    got: list[int] = []
    sleep = taskkit.checkpoint if backend == "coroutine" else _asyncio_checkpoint
    consumers = [ex.submit(consume_all, q, me, got, sleep) for me in range(3)]
    ex.submit(produce, q, 600, 3).result(timeout=30)
    for consumer in consumers:
        consumer.result(timeout=30)
    counts = collections.Counter(got)
    # Before items were handed to waiting consumers, one consumer took nearly every item.
    assert min(counts[me] for me in range(3)) >= 600 // 5, counts
