"""The threads that run a run's tasks are reused, yet each execution starts as on new threads."""

from __future__ import annotations

import contextvars
import os
import threading

import pytest

from taskkit.testing import explore, replay

local = threading.local()


class Counted(threading.local):
    inits = 0

    def __init__(self) -> None:
        Counted.inits += 1
        self.seen = False


counted = Counted()
var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


class Log:
    def __init__(self) -> None:
        self.entries: list[tuple[object, ...]] = []
        self.shared = 0


def leaves_state_behind(log: Log) -> None:
    # what it finds first is what an earlier execution on this thread left behind
    log.entries.append((getattr(local, "value", None), counted.seen, var.get()))
    local.value = "left over"
    counted.seen = True
    var.set("left over")
    log.shared += 1  # a conflict between the two tasks: explore runs several executions


def test_thread_local_data_and_context_variables_are_fresh_in_every_execution() -> None:
    logs: list[Log] = []

    def record(log: Log) -> bool:
        logs.append(log)
        return True

    report = explore(
        [leaves_state_behind, leaves_state_behind],
        setup=Log,
        invariant=record,
        max_preemptions=1,
    )
    assert report.ok, report
    assert report.executions > 2
    entries = [entry for log in logs for entry in log.entries]
    assert len(entries) == 2 * report.executions
    assert set(entries) == {(None, False, "unset")}


def test_a_threading_local_subclass_is_initialised_again_in_every_execution() -> None:
    before = Counted.inits
    for _ in range(3):
        replay("").run([leaves_state_behind], (Log(),))
    assert Counted.inits == before + 3


def names(log: Log) -> None:
    me = threading.current_thread()
    log.entries.append((me.name, threading.get_ident(), getattr(me, "mark", None)))
    me.name = "renamed by the task"
    me.mark = "set by the task"  # type: ignore[attr-defined]


def test_each_task_runs_on_its_own_thread_named_after_it_in_every_execution() -> None:
    seen = []
    for _ in range(3):
        log = Log()
        replay("").run([names, names], (log,))
        seen.append(log.entries)
    for entries in seen:
        assert [(name, mark) for name, _, mark in entries] == [
            ("taskkit.testing T0", None),
            ("taskkit.testing T1", None),
        ]
        assert entries[0][1] != entries[1][1]
    assert threading.current_thread().name != "renamed by the task"


def current_thread(log: Log) -> None:
    log.entries.append((threading.current_thread(),))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")
def test_idle_workers_end_before_a_fork() -> None:
    log = Log()
    replay("").run([current_thread, current_thread], (log,))
    workers = [thread for (thread,) in log.entries]
    assert all(thread.is_alive() for thread in workers)  # idle, kept for the next run
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    assert not any(thread.is_alive() for thread in workers)


class Account:
    def __init__(self) -> None:
        self.balance = 0


def deposit(account: Account) -> None:
    account.balance = account.balance + 1


async def deposit_beside_a_thread(account: Account) -> None:
    # the thread starts in the middle of this step: what follows in the step may be
    # preempted by it, as on a real loop
    thread = threading.Thread(target=deposit, args=(account,))
    thread.start()
    seen = account.balance
    account.balance = seen + 1
    thread.join()


def test_a_thread_started_by_a_coroutine_in_the_middle_of_a_step_interleaves_with_it() -> None:
    report = explore([deposit_beside_a_thread], setup=Account, invariant=lambda a: a.balance == 2)
    assert not report.ok, report
