"""Threads the code under test starts become tasks of the controlled run."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import taskkit
from taskkit import Deadlock
from taskkit.testing import explore


class Box:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()


def bump(box: Box) -> None:
    box.value = box.value + 1


def bump_locked(box: Box) -> None:
    with box.lock:
        box.value = box.value + 1


def two(box: Box) -> bool:
    return box.value == 2


def in_threads(work: Callable[[Box], None]) -> Callable[[Box], None]:
    def task(box: Box) -> None:
        threads = [threading.Thread(target=work, args=(box,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not any(thread.is_alive() for thread in threads)

    return task


def test_a_lost_update_between_two_started_threads_is_found() -> None:
    report = explore([in_threads(bump)], setup=Box, invariant=two)
    assert not report.ok, report
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1
    assert "T2" in report.counterexample.table  # the threads are tasks T1 and T2


def test_the_locked_version_in_started_threads_is_proven() -> None:
    report = explore([in_threads(bump_locked)], setup=Box, invariant=two)
    assert report.ok, report
    assert report.complete, report


def in_pool(work: Callable[[Box], None]) -> Callable[[Box], None]:
    def task(box: Box) -> None:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(work, box) for _ in range(2)]:
                future.result()

    return task


def in_taskkit_threads(work: Callable[[Box], None]) -> Callable[[Box], None]:
    def task(box: Box) -> None:
        with taskkit.open_executor("thread", max_workers=2) as ex:
            for future in [ex.submit(work, box) for _ in range(2)]:
                future.result()

    return task


@pytest.mark.parametrize("pool", [in_pool, in_taskkit_threads])
def test_a_lost_update_in_a_thread_pool_is_found(pool: Any) -> None:
    report = explore([pool(bump)], setup=Box, invariant=two, max_preemptions=1)
    assert not report.ok, report
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, AssertionError)


@pytest.mark.parametrize("pool", [in_pool, in_taskkit_threads])
def test_the_locked_version_in_a_thread_pool_passes_a_bounded_search(pool: Any) -> None:
    report = explore([pool(bump_locked)], setup=Box, invariant=two, max_preemptions=1)
    assert report.ok, report


def waits(box: Box) -> None:
    box.ready.wait()


def joins_a_waiting_thread(box: Box) -> None:
    thread = threading.Thread(target=waits, args=(box,), name="waiter")
    thread.start()
    thread.join()


def test_joining_a_thread_that_waits_forever_is_a_deadlock() -> None:
    report = explore([joins_a_waiting_thread], setup=Box)
    assert report.counterexample is not None
    error = report.counterexample.error
    assert isinstance(error, Deadlock)
    assert "join() of waiter" in str(error)


def starts_and_leaves(box: Box) -> None:
    threading.Thread(target=waits, args=(box,), daemon=True).start()
    bump(box)


def test_a_thread_left_waiting_when_the_tasks_end_is_no_deadlock() -> None:
    report = explore([starts_and_leaves], setup=Box, invariant=lambda box: box.value == 1)
    assert report.ok, report
    assert report.complete, report


def fails_with_a_pool_running(box: Box) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.submit(bump, box).result()
    raise ValueError("the task fails while the pool's worker waits for more work")


def test_unwinding_a_pools_workers_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    report = explore([fails_with_a_pool_running], setup=Box)
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, ValueError)
    assert not [r for r in caplog.records if "Exception in worker" in r.getMessage()]
    assert not logging.getLogger("concurrent.futures").disabled
