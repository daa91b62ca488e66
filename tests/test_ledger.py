"""The task ledger's one seam: every state change of a task passes through ``transition``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

import taskkit
from taskkit._core import _ledger


def _record(ex: taskkit.Executor) -> list[tuple[str, str]]:
    """Observe ``ex``'s ledger: (task name, event) for each transition, in order."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def listen(event: taskkit.TaskEvent) -> None:
        with lock:
            seen.append((event.task, event.kind))

    ex.add_listener(listen)  # the ledger's transitions, as task events
    return seen


def _events(seen: list[tuple[str, str]], name: str) -> list[str]:
    return [event for task, event in seen if task == name]


def fails_first(flag: list[int]) -> str:
    flag.append(1)
    if len(flag) == 1:
        raise ValueError("first attempt")
    return "ok"


@pytest.mark.parametrize("backend", ["serial", "thread", "coroutine", "asyncio"])
def test_a_task_is_submitted_started_and_succeeds(backend: str) -> None:
    with taskkit.open_executor(backend) as ex:  # type: ignore[call-overload]
        seen = _record(ex)
        assert 4 == ex.options(name="pow").submit(pow, 2, 2).result(timeout=30)
    assert [_ledger.SUBMITTED, _ledger.STARTED, _ledger.SUCCEEDED] == _events(seen, "pow")


def test_a_retried_task_starts_again_and_a_failing_one_fails() -> None:
    with taskkit.open_executor("thread", max_workers=1) as ex:
        seen = _record(ex)
        ex.options(retries=1, name="flaky").submit(fails_first, []).result(timeout=30)
        with pytest.raises(ZeroDivisionError):
            ex.options(name="broken").submit(divmod, 1, 0).result(timeout=30)
    assert [
        _ledger.SUBMITTED,
        _ledger.STARTED,
        _ledger.RETRIED,
        _ledger.STARTED,
        _ledger.SUCCEEDED,
    ] == _events(seen, "flaky")
    assert [_ledger.SUBMITTED, _ledger.STARTED, _ledger.FAILED] == _events(seen, "broken")


def test_a_cancelled_and_a_timed_out_task() -> None:
    release = threading.Event()
    with taskkit.open_executor("thread", max_workers=1) as ex:
        seen = _record(ex)
        blocker = ex.options(timeout=0.2, name="overrun").submit(release.wait, 30)
        queued = ex.options(name="queued").submit(pow, 2, 2)
        assert queued.cancel()
        with pytest.raises(taskkit.TaskTimeout):
            blocker.result(timeout=30)
        release.set()
    assert [_ledger.SUBMITTED, _ledger.CANCELLED_EVENT] == _events(seen, "queued")
    assert [_ledger.SUBMITTED, _ledger.STARTED, _ledger.TIMED_OUT] == _events(seen, "overrun")


def crash() -> None:
    os._exit(9)


def test_a_task_whose_worker_died() -> None:
    with taskkit.open_executor("process", max_workers=1) as ex:
        seen = _record(ex)
        with pytest.raises(taskkit.WorkerCrashed):
            ex.options(name="crash").submit(crash).result(timeout=60)
    assert [_ledger.SUBMITTED, _ledger.STARTED, _ledger.WORKER_CRASHED] == _events(seen, "crash")


def test_unobserved_the_seam_is_not_called() -> None:
    calls: list[object] = []
    with taskkit.open_executor("thread") as ex:
        ledger: Any = ex._ledger  # type: ignore[attr-defined]
        record: Callable[..., None] = lambda *args: calls.append(args)  # noqa: E731
        ledger.transition = record
        ex.submit(pow, 2, 2).result(timeout=30)
    assert [] == calls
