"""Log records: what a user debugging a pool sees with logging turned on."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable

import pytest

import taskkit
from taskkit import PipelineFailed, TaskTimeout, WorkerCrashed, cmd

pytestmark = pytest.mark.timeout(60)


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_taskkit_logs_nowhere_until_the_application_says_where() -> None:
    handlers = logging.getLogger("taskkit").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def flaky(counter: Callable[[], int]) -> str:
    if counter() < 2:
        raise OSError("transient")
    return "ok"


def test_a_retry_is_logged_with_its_attempt_and_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskkit")
    counter = itertools.count().__next__
    with taskkit.open_executor("thread", max_workers=1) as ex:
        f = ex.options(retries=2, name="fetch").submit(flaky, counter)
        assert f.result(timeout=30) == "ok"
    lines = records(caplog, "taskkit.thread")
    assert lines == [
        "fetch: attempt 1 of 3 failed (OSError: transient); running it again",
        "fetch: attempt 2 of 3 failed (OSError: transient); running it again",
    ]


def test_nothing_is_logged_for_a_retry_when_the_level_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="taskkit")
    counter = itertools.count().__next__
    with taskkit.open_executor("thread", max_workers=1) as ex:
        assert ex.options(retries=2).submit(flaky, counter).result(timeout=30) == "ok"
    assert records(caplog, "taskkit.thread") == []


def exit_with(status: int) -> None:
    os._exit(status)


def test_a_worker_crash_is_logged_with_its_pid_status_and_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskkit")
    with taskkit.open_executor("process", max_workers=1) as ex:
        f = ex.options(name="crasher").submit(exit_with, 3)
        with pytest.raises(WorkerCrashed) as info:
            f.result(timeout=30)
        pid = info.value.pid
    lines = records(caplog, "taskkit.process")
    assert f"worker {pid} exited with status 3 while it ran crasher" in lines
    assert f"worker {pid} started (" in "\n".join(lines)
    crash = next(r for r in caplog.records if "while it ran crasher" in r.getMessage())
    assert crash.levelno == logging.WARNING


def test_a_deadline_that_kills_a_worker_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taskkit")
    with taskkit.open_executor("process", max_workers=1) as ex:
        f = ex.options(timeout=0.2, name="sleeper").submit(time.sleep, 30)
        with pytest.raises(TaskTimeout):
            f.result(timeout=30)
    lines = records(caplog, "taskkit.process")
    assert lines[0] == (
        "sleeper overran its 0.2 s deadline: its worker process (and its process group) "
        "was killed and replaced"
    )


def test_a_failed_pipeline_stage_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskkit")
    with pytest.raises(PipelineFailed):
        (cmd("false") | cmd("true")).run()
    (lines,) = [records(caplog, "taskkit.pipeline")]
    assert len(lines) == 1
    assert lines[0].endswith("stage 0 false exited with status 1")


async def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # never awaits: the loop cannot cancel it at its deadline


def test_an_overrun_found_when_the_task_ends_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taskkit")
    with taskkit.open_executor("asyncio") as ex:
        f = ex.options(timeout=0.05, name="hog").submit(hold_the_loop, 0.2)
        with pytest.raises(TaskTimeout):
            f.result(timeout=30)
    (line,) = records(caplog, "taskkit.asyncio")
    assert line.startswith("hog overran its 0.05 s deadline: it held the event loop's thread")
