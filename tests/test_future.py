"""taskkit.Future on its own: the concurrent.futures contract, on a cheaper lock.

A future's lock is a bare C ``RLock``; the condition that ``result()`` sleeps on is
made by the first wait, and the waiter and callback lists on first use.  These tests
pin the behaviour ``concurrent.futures`` code relies on, with no executor in the way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import taskkit
from taskkit._core._future import Future


def _settle_once_asleep(
    future: Future[Any], settle: Callable[[], object], sleepers: int = 1
) -> threading.Thread:
    """Run ``settle()`` in a thread once ``sleepers`` threads sleep in result()/exception().

    Sleeping is seen under the future's lock, which a waiter gives up only inside its
    wait: so the future settles while they really sleep, and each must be woken.  The
    waiters wait with no timeout, so one left asleep fails the test (by its timeout)
    rather than waking late and passing.
    """

    def asleep() -> bool:
        with future._condition:
            condition: Any = future._sleepers
            return condition is not None and len(condition._waiters) >= sleepers

    def finish() -> None:
        deadline = time.monotonic() + 10
        while not asleep() and time.monotonic() < deadline:
            time.sleep(0.001)  # polls a state: what follows does not depend on timing
        settle()

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_result_wakes_a_blocked_thread() -> None:
    future: Future[int] = Future()
    thread = _settle_once_asleep(future, lambda: future.set_result(7))
    assert future.result() == 7
    thread.join()


def test_result_times_out_and_the_future_stays_usable() -> None:
    future: Future[int] = Future()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    future.set_result(3)
    assert future.result(timeout=0) == 3


def test_exception_waits_for_the_outcome_and_times_out() -> None:
    future: Future[int] = Future()
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.01)
    thread = _settle_once_asleep(future, lambda: future.set_exception(KeyError(1)))
    assert isinstance(future.exception(), KeyError)
    thread.join()
    with pytest.raises(KeyError):
        future.result(timeout=0)


def test_a_finished_future_refuses_a_second_outcome() -> None:
    future: Future[int] = Future()
    future.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(KeyError(2))
    with pytest.raises(TypeError):
        Future().set_exception(None)
    cancelled: Future[int] = Future()
    assert cancelled.cancel()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result(3)
    assert future.result() == 1
    assert future.exception() is None


def test_a_result_set_while_the_waiter_helps_is_seen_without_sleeping() -> None:
    # A backend's help (the process backend reads the worker's reply in the waiting
    # thread) runs with the lock released; the future may settle meanwhile by another
    # path, which then has no sleeper to wake.
    future: Future[int] = Future()

    def help_while_settled_elsewhere(timeout: float | None) -> None:
        future.set_result(5)  # as the manager thread would, while the waiter helps

    future._help = help_while_settled_elsewhere
    assert future.result(timeout=5) == 5
    assert future._sleepers is None  # it saw the result, rather than sleep until the timeout


def test_many_threads_wait_on_one_future() -> None:
    future: Future[str] = Future()
    results: list[str] = []
    threads = [  # daemons: a waiter left asleep must fail the test, not hang the run's exit
        threading.Thread(target=lambda: results.append(future.result()), daemon=True)
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    setter = _settle_once_asleep(future, lambda: future.set_result("done"), sleepers=8)
    for thread in [*threads, setter]:
        thread.join()
    assert results == ["done"] * 8


def test_cancel_wakes_waiters_and_cancelled_error_is_raised() -> None:
    future: Future[int] = Future()
    assert future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=1)


def test_wait_and_as_completed_see_futures_finished_later() -> None:
    first: Future[int] = Future()
    second: Future[int] = Future()
    thread = threading.Thread(target=second.set_result, args=(2,))
    thread.start()
    done, not_done = concurrent.futures.wait(
        [first, second], timeout=10, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert done == {second}
    assert not_done == {first}
    first.set_exception(ValueError("boom"))
    assert set(taskkit.as_completed([first, second], timeout=10)) == {first, second}
    thread.join()


def test_done_callbacks_run_once_whether_added_before_or_after() -> None:
    future: Future[int] = Future()
    calls: list[str] = []
    future.add_done_callback(lambda f: calls.append(f"before {f.result()}"))
    future.set_result(5)
    future.add_done_callback(lambda f: calls.append(f"after {f.result()}"))
    assert calls == ["before 5", "after 5"]


def test_a_future_nobody_waited_for_has_no_waiter_lists() -> None:
    future: Future[int] = Future()
    assert future._try_set_result(1)  # how an executor finishes a future
    assert future._waiter_list is None
    assert future._callback_list is None
    assert future._sleepers is None  # nobody ever slept on it
    assert not future._try_set_result(2)
    assert future.result() == 1


def test_awaiting_a_finished_future_returns_its_value() -> None:
    future: Future[int] = Future()
    future.set_result(11)

    async def main() -> int:
        return await future

    assert asyncio.run(main()) == 11


def test_awaiting_a_failed_future_raises() -> None:
    future: Future[int] = Future()
    future.set_exception(KeyError("k"))

    async def main() -> int:
        return await future

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_wrap_future_and_run_in_executor_interoperate() -> None:
    with taskkit.open_executor("thread", max_workers=2) as ex:

        async def main() -> int:
            loop = asyncio.get_running_loop()
            wrapped = await asyncio.wrap_future(ex.submit(pow, 2, 5))
            direct = await loop.run_in_executor(ex, pow, 3, 2)
            return wrapped + direct

        assert asyncio.run(main()) == 32 + 9


def test_a_task_name_is_made_once_and_kept() -> None:
    with taskkit.open_executor("serial") as ex:
        future = ex.submit(abs, -1)
        named = ex.options(name="fetch").submit(abs, -2)
    assert future.name == future.name
    assert future.name.startswith("abs#")
    assert named.name == "fetch"
    assert Future().name == "task"


def test_statistics_count_a_result_by_the_time_join_returns() -> None:
    with taskkit.open_executor("thread", max_workers=2) as ex:
        for i in range(200):
            assert ex.submit(abs, -i).result() == i
        assert ex.join(timeout=10)
        stats = ex.statistics()
        assert (stats.submitted, stats.done, stats.running, stats.pending) == (200, 200, 0, 0)
