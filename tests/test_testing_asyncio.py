"""Ordinary asyncio code under the controlled scheduler: its own primitives, tasks and timers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest
from hypothesis import given, settings

import taskkit
from taskkit import Deadlock
from taskkit.testing import explore, interleavings, replay

SEARCH = settings(derandomize=True, database=None, deadline=None, print_blob=False)


class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.lock = asyncio.Lock()
        self.event = asyncio.Event()
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.log: list[str] = []


async def deposit(account: Account) -> None:
    seen = account.balance
    await asyncio.sleep(0)
    account.balance = seen + 10


async def deposit_locked(account: Account) -> None:
    async with account.lock:
        await deposit(account)


def twenty(account: Account) -> bool:
    return account.balance == 20


def test_a_lost_update_across_an_await_is_found() -> None:
    report = explore([deposit, deposit], setup=Account, invariant=twenty)
    assert not report.ok, report
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 1
    assert "await sleep(0)" in report.counterexample.table


def test_the_asyncio_lock_fix_is_proven() -> None:
    report = explore([deposit_locked, deposit_locked], setup=Account, invariant=twenty)
    assert report.ok, report
    assert report.complete, report
    assert report.executions > 1  # the contended lock was tried in both orders


def run_deposit(account: Account) -> None:
    asyncio.run(deposit(account))


def run_deposit_locked(account: Account) -> None:
    asyncio.run(deposit_locked(account))


def test_asyncio_run_in_a_plain_task_runs_under_control() -> None:
    racy = explore([run_deposit, run_deposit], setup=Account, invariant=lambda a: a.balance == 20)
    assert not racy.ok, racy
    fixed = explore(
        [run_deposit_locked, run_deposit_locked],
        setup=Account,
        invariant=lambda a: a.balance == 20,
    )
    assert fixed.ok, fixed
    assert fixed.complete, fixed


def test_hypothesis_finds_the_lost_update() -> None:
    @SEARCH
    @given(s=interleavings())
    def prop(s: Any) -> None:
        account = Account()
        s.run([deposit, deposit], args=(account,))
        assert account.balance == 20

    with pytest.raises(AssertionError):
        prop()


async def consumer(account: Account) -> None:
    await account.event.wait()
    account.balance += await account.queue.get()


async def producer(account: Account) -> None:
    await asyncio.sleep(0.1)
    account.queue.put_nowait(5)
    account.event.set()


def test_events_queues_and_timed_sleeps_work() -> None:
    report = explore([consumer, producer], setup=Account, invariant=lambda a: a.balance == 5)
    assert report.ok, report
    assert report.executions >= 1


async def gathered(account: Account) -> None:
    await asyncio.gather(deposit(account), deposit(account))


async def grouped(account: Account) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(deposit_locked(account))
        group.create_task(deposit_locked(account))


async def created(account: Account) -> None:
    first = asyncio.create_task(deposit(account))
    second = asyncio.get_running_loop().create_task(deposit(account))
    await first
    await second


@pytest.mark.parametrize("task", [gathered, created])
def test_tasks_the_code_creates_are_tasks_of_the_run(task: Any) -> None:
    report = explore([task], setup=Account, invariant=twenty)
    assert not report.ok, report
    assert report.counterexample is not None
    assert "T2" in report.counterexample.table


def test_a_task_group_with_the_lock_is_proven() -> None:
    report = explore([grouped], setup=Account, invariant=twenty)
    assert report.ok, report
    assert report.complete, report


async def times_out(account: Account) -> None:
    start = asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(account.event.wait(), 30)
    except asyncio.TimeoutError:
        account.log.append("wait_for")
    try:
        async with asyncio.timeout(60):
            await asyncio.sleep(3600)
    except TimeoutError:
        account.log.append("timeout")
    account.balance = int(asyncio.get_running_loop().time() - start)


@pytest.mark.timeout(30)
def test_timeouts_and_sleeps_run_on_the_virtual_clock() -> None:
    account = Account()
    s = replay("")
    assert s is not None
    s.run([times_out], args=(account,))
    assert account.log == ["wait_for", "timeout"]
    assert account.balance == 90


async def waits_forever(account: Account) -> None:
    await account.event.wait()


def test_a_wait_no_task_can_end_is_a_deadlock() -> None:
    report = explore([waits_forever, waits_forever], setup=Account)
    assert report.counterexample is not None
    error = report.counterexample.error
    assert isinstance(error, Deadlock)
    assert "Event.wait()" in str(error)


def test_a_plain_function_returning_a_coroutine_is_rejected() -> None:
    report = explore([lambda account: deposit(account)], setup=Account)
    assert report.counterexample is not None
    error = report.counterexample.error
    assert isinstance(error, TypeError)
    assert "returned <coroutine object deposit" in str(error)
    assert "async def" in str(error)


def test_a_run_inside_a_running_loop_leaves_that_loop_running() -> None:
    async def outer() -> None:
        mine = asyncio.get_running_loop()
        report = explore([deposit_locked, deposit_locked], setup=Account, invariant=twenty)
        assert report.ok, report
        assert asyncio.get_running_loop() is mine
        await asyncio.sleep(0)

    asyncio.run(outer())


class Handoff:
    def __init__(self) -> None:
        self.future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self.got = 0


def settle(handoff: Handoff) -> None:
    handoff.future.set_result(7)


async def receive(handoff: Handoff) -> None:
    handoff.got = await asyncio.wrap_future(handoff.future)


def test_an_async_task_wakes_for_a_future_a_thread_task_settles() -> None:
    report = explore([settle, receive], setup=Handoff, invariant=lambda h: h.got == 7)
    assert report.ok, report
    assert report.complete, report


async def schedules_a_callback(account: Account) -> None:
    asyncio.get_running_loop().call_soon(account.log.append, "callback")
    await asyncio.sleep(0)


async def schedules_a_function(account: Account) -> None:
    asyncio.get_running_loop().call_soon(lambda: account.log.append("own"))
    await asyncio.sleep(0)


@pytest.mark.parametrize("task", [schedules_a_callback, schedules_a_function])
def test_a_callback_of_the_codes_own_makes_the_report_incomplete(task: Any) -> None:
    report = explore([task, deposit], setup=Account)
    assert report.ok, report
    assert not report.complete
    assert any("callback of the code's own" in note for note in report.notes), report.notes
    bookkeeping = explore([gathered], setup=Account)
    assert not any("callback" in note for note in bookkeeping.notes), bookkeeping.notes


class Shared:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()


def overwrite(shared: Shared) -> None:
    shared.value = 100


async def increment(shared: Shared) -> None:
    seen = shared.value  # no await: other coroutines cannot run here, a thread can
    shared.value = seen + 1


def overwrite_locked(shared: Shared) -> None:
    with shared.lock:
        overwrite(shared)


async def increment_locked(shared: Shared) -> None:
    with shared.lock:  # a blocking acquire holds the loop, as it does for real
        await increment(shared)


def not_lost(shared: Shared) -> bool:
    return shared.value != 1


def test_a_thread_task_runs_between_a_coroutines_accesses() -> None:
    report = explore([overwrite, increment], setup=Shared, invariant=not_lost)
    assert not report.ok, report
    fixed = explore([overwrite_locked, increment_locked], setup=Shared, invariant=not_lost)
    assert fixed.ok, fixed
    assert fixed.complete, fixed


def work(shared: Shared) -> int:
    shared.value += 1
    return shared.value


async def uses_a_thread_pool(shared: Shared) -> None:
    with taskkit.open_executor("thread", max_workers=1) as ex:
        assert await ex.submit(work, shared) == 1


def test_an_async_task_can_use_a_thread_pool() -> None:
    report = explore([uses_a_thread_pool], setup=Shared, invariant=lambda s: s.value == 1)
    assert report.ok, report


async def blocks_the_loop(shared: Shared) -> None:
    threading.Event().wait()


def test_a_blocking_wait_no_thread_can_end_is_a_deadlock() -> None:
    report = explore([blocks_the_loop], setup=Shared)
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, Deadlock)
    assert "holds the event loop" in str(report.counterexample.error)


def bump(shared: Shared) -> None:
    shared.value = shared.value + 1


def bump_locked(shared: Shared) -> None:
    with shared.lock:
        bump(shared)


async def in_threads(shared: Shared) -> None:
    await asyncio.gather(asyncio.to_thread(bump, shared), asyncio.to_thread(bump, shared))


async def in_threads_locked(shared: Shared) -> None:
    await asyncio.gather(
        asyncio.to_thread(bump_locked, shared), asyncio.to_thread(bump_locked, shared)
    )


def test_to_thread_runs_the_function_as_a_task_of_the_run() -> None:
    def both(shared: Shared) -> bool:
        return shared.value == 2

    report = explore([in_threads], setup=Shared, invariant=both)
    assert not report.ok, report
    fixed = explore([in_threads_locked], setup=Shared, invariant=both)
    assert fixed.ok, fixed
    assert fixed.complete, fixed
