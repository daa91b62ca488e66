"""Task events: ``ex.add_listener(fn)`` sees every change of every task's state, in order.

Every submitted task gets ``"submitted"`` first and exactly one terminal event last, on
every backend and under every outcome (a value, an error, retries, a timeout, a crashed
worker, a cancellation); a Hypothesis property checks it over random batches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskkit
from taskkit import TaskEvent


class Recorder:
    """A listener that keeps every event (listeners may be called from many threads)."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            self.events.append(event)

    def by_task(self) -> dict[int, list[TaskEvent]]:
        tasks: dict[int, list[TaskEvent]] = defaultdict(list)
        for event in self.events:
            tasks[event.number].append(event)
        return dict(tasks)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def ok(x: int) -> int:
    return x


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def fail_first(marker: str) -> str:
    """Fail on the first attempt (in any process), succeed on the next."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise OSError("transient")
    return "ok"


def die() -> None:
    os._exit(3)


@pytest.fixture
def thread_ex() -> Iterator[taskkit.Executor]:
    with taskkit.open_executor("thread", max_workers=2) as ex:
        yield ex


def test_a_task_that_returns(thread_ex: taskkit.Executor) -> None:
    seen = Recorder()
    thread_ex.add_listener(seen)
    future = thread_ex.submit(ok, 1)
    assert future.result(timeout=10) == 1
    thread_ex.join(timeout=10)
    submitted, started, succeeded = seen.events
    assert [e.kind for e in seen.events] == ["submitted", "started", "succeeded"]
    assert {e.number for e in seen.events} == {submitted.number}
    assert submitted.task == future.name == f"ok#{submitted.number}"
    assert isinstance(started.worker, str)
    assert started.worker.startswith("taskkit-thread-")
    assert (succeeded.attempt, succeeded.calls, succeeded.error) == (1, 1, None)
    assert succeeded.terminal
    assert not started.terminal
    assert submitted.time <= started.time <= succeeded.time
    assert {e.backend for e in seen.events} == {"thread"}


def test_retries_and_a_failure(thread_ex: taskkit.Executor, tmp_path: Any) -> None:
    seen = Recorder()
    thread_ex.add_listener(seen)
    view = thread_ex.options(retries=1)
    assert view.submit(fail_first, str(tmp_path / "m")).result(timeout=10) == "ok"
    with pytest.raises(ValueError):
        view.submit(boom, 2).result(timeout=10)
    thread_ex.join(timeout=10)
    first, second = seen.by_task().values()
    assert [e.kind for e in first] == ["submitted", "started", "retried", "started", "succeeded"]
    assert isinstance(first[2].error, OSError)
    assert [e.attempt for e in first] == [1, 1, 2, 2, 2]
    assert [e.kind for e in second] == ["submitted", "started", "retried", "started", "failed"]
    assert isinstance(second[-1].error, ValueError)


def test_a_task_cancelled_before_it_started(thread_ex: taskkit.Executor) -> None:
    gate = threading.Event()
    blockers = [thread_ex.submit(gate.wait) for _ in range(2)]  # both workers busy
    seen = Recorder()
    thread_ex.add_listener(seen)
    waiting = thread_ex.submit(ok, 3)
    assert waiting.cancel()
    gate.set()
    for blocker in blockers:
        blocker.result(timeout=10)
    thread_ex.join(timeout=10)
    events = seen.by_task()[seen.events[0].number]
    assert [e.kind for e in events] == ["submitted", "cancelled"]
    # The blockers were submitted before the listener: it sees the rest of their events.
    rest = [e.kind for e in seen.events if e.number != events[0].number]
    assert sorted(rest) == ["succeeded", "succeeded"]


def test_process_backend_names_the_worker_pid_and_its_faults() -> None:
    seen = Recorder()
    with taskkit.open_executor("process", max_workers=1) as ex:
        ex.add_listener(seen)
        assert ex.submit(os.getpid).result(timeout=60) > 0
        with pytest.raises(taskkit.WorkerCrashed):
            ex.submit(die).result(timeout=60)
        with pytest.raises(taskkit.TaskTimeout):
            ex.options(timeout=0.2).submit(time.sleep, 60).result(timeout=60)
        ex.join(timeout=60)
    pid_task, crash, overrun = seen.by_task().values()
    assert [e.kind for e in pid_task] == ["submitted", "started", "succeeded"]
    assert isinstance(pid_task[1].worker, int)
    assert [e.kind for e in crash][-1] == "worker crashed"
    assert isinstance(crash[-1].error, taskkit.WorkerCrashed)
    assert [e.kind for e in overrun][-1] == "timed out"
    assert isinstance(overrun[-1].error, taskkit.TaskTimeout)


def test_a_map_chunk_is_one_task_of_many_calls(thread_ex: taskkit.Executor) -> None:
    seen = Recorder()
    thread_ex.add_listener(seen)
    assert list(thread_ex.map(ok, range(100), chunksize=25)) == list(range(100))
    thread_ex.join(timeout=10)
    terminal = [e for e in seen.events if e.terminal]
    assert sum(e.calls for e in terminal) == 100
    assert all(e.calls == 25 for e in terminal)


def test_a_failing_listener_is_logged_and_changes_nothing(
    thread_ex: taskkit.Executor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: TaskEvent) -> None:
        raise RuntimeError("listener bug")

    seen = Recorder()
    thread_ex.add_listener(broken)
    thread_ex.add_listener(seen)
    with caplog.at_level(logging.ERROR, logger="taskkit.events"):
        assert thread_ex.submit(ok, 5).result(timeout=10) == 5
        thread_ex.join(timeout=10)
    assert seen.kinds() == ["submitted", "started", "succeeded"]
    assert "listener bug" in caplog.text
    assert all(r.name == "taskkit.events" for r in caplog.records)


def test_remove_listener(thread_ex: taskkit.Executor) -> None:
    seen = Recorder()
    thread_ex.add_listener(seen)
    thread_ex.submit(ok, 1).result(timeout=10)
    thread_ex.join(timeout=10)
    thread_ex.remove_listener(seen)
    thread_ex.submit(ok, 2).result(timeout=10)
    thread_ex.join(timeout=10)
    assert len(seen.events) == 3
    with pytest.raises(ValueError, match="not a listener"):
        thread_ex.remove_listener(seen)
    with pytest.raises(TypeError, match="must be callable"):
        thread_ex.add_listener(42)  # type: ignore[arg-type]


def test_no_listener_no_reporting(thread_ex: taskkit.Executor) -> None:
    ledger = thread_ex._ledger  # type: ignore[attr-defined]
    assert ledger.observed is False
    seen = Recorder()
    thread_ex.add_listener(seen)
    assert ledger.observed is True
    thread_ex.remove_listener(seen)
    assert ledger.observed is False


# ------------------------------------------------------- the property, on every backend

OUTCOMES = st.lists(st.sampled_from(["ok", "boom", "retry", "cancel"]), min_size=1, max_size=12)


async def aok(x: int) -> int:
    return x


async def aboom(x: int) -> int:
    raise ValueError(f"boom {x}")


def check_lifecycles(seen: Recorder, submitted: int) -> None:
    """Every task: "submitted" first, one terminal event, last; started before an end by
    a value or an error of its own."""
    tasks = seen.by_task()
    assert len(tasks) == submitted
    for events in tasks.values():
        kinds = [e.kind for e in events]
        assert kinds[0] == "submitted", kinds
        assert sum(e.terminal for e in events) == 1, kinds
        assert events[-1].terminal, kinds
        if kinds[-1] in ("succeeded", "failed"):
            assert "started" in kinds, kinds
        assert kinds.count("started") <= kinds.count("retried") + 1, kinds


@pytest.mark.slow
@given(outcomes=OUTCOMES)
def test_every_submitted_task_gets_exactly_one_terminal_event(
    backend: str,
    events_executor: Callable[[str], taskkit.Executor],
    outcomes: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ex = events_executor(backend)
    is_async = backend in ("asyncio", "coroutine")
    good, bad = (aok, aboom) if is_async else (ok, boom)
    seen = Recorder()
    ex.add_listener(seen)
    try:
        futures = []
        marker_dir = tmp_path_factory.mktemp("m")
        for i, outcome in enumerate(outcomes):
            if outcome == "retry" and not is_async:
                futures.append(ex.options(retries=1).submit(fail_first, str(marker_dir / str(i))))
            elif outcome == "boom":
                futures.append(ex.submit(bad, i))
            else:
                futures.append(ex.submit(good, i))
            if outcome == "cancel":
                futures[-1].cancel()
        assert ex.join(timeout=60)
    finally:
        ex.remove_listener(seen)
    check_lifecycles(seen, len(outcomes))
    terminal = [e.kind for e in seen.events if e.terminal]
    assert terminal.count("cancelled") == sum(f.cancelled() for f in futures)
    assert terminal.count("succeeded") == sum(
        f.done() and not f.cancelled() and f.exception() is None for f in futures
    )


@pytest.fixture
def events_executor(
    open_closed_after: Callable[..., taskkit.Executor],
) -> Callable[[str], taskkit.Executor]:
    """One executor per test, shared by its Hypothesis examples."""
    opened: dict[str, taskkit.Executor] = {}

    def get(backend: str) -> taskkit.Executor:
        if backend not in opened:
            opened[backend] = open_closed_after(backend)
        return opened[backend]

    return get


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_statistics_say_which_task_each_worker_runs(
    backend: str, open_closed_after: Callable[..., taskkit.Executor]
) -> None:
    ex = open_closed_after(backend, max_workers=2)
    seen = Recorder()
    ex.add_listener(seen)
    started, release = ex.event(), ex.event()
    future = ex.options(name="holder").submit(hold, started, release)
    assert started.wait(timeout=60)
    running_on = ex.statistics().running_on
    release.set()
    pid = future.result(timeout=60)
    (start,) = [e for e in seen.events if e.kind == "started"]
    assert running_on == {start.worker: "holder"}
    if backend == "process":
        assert start.worker == pid
    ex.join(timeout=60)
    assert ex.statistics().running_on == {}


def hold(started: taskkit.Event, release: taskkit.Event) -> int:
    started.set()
    release.wait()
    return os.getpid()


def own_comm() -> str:
    with open("/proc/self/comm") as comm:
        return comm.read().strip()


@pytest.mark.skipif(not os.path.exists("/proc/self/comm"), reason="Linux names processes here")
@pytest.mark.parametrize("start_method", ["forkserver", "fork", "spawn"])
def test_worker_processes_say_what_they_are(start_method: str) -> None:
    with taskkit.ProcessExecutor(max_workers=2, start_method=start_method) as ex:
        seen = Recorder()
        ex.add_listener(seen)
        names = {ex.submit(own_comm).result(timeout=60) for _ in range(4)}
        ex.join(timeout=60)
        pids = {e.worker for e in seen.events if e.kind == "started"}
        assert names <= {"taskkit-w1", "taskkit-w2"}
        for pid in pids:  # what ps, top and pgrep show for the pids the events name
            with open(f"/proc/{pid}/comm") as comm:
                assert comm.read().strip() in {"taskkit-w1", "taskkit-w2"}


def test_every_call_of_a_map_ends_in_a_terminal_event(
    make_executor: Callable[..., taskkit.Executor], backend: str
) -> None:
    ex = make_executor()
    seen = Recorder()
    ex.add_listener(seen)
    fn = aok if backend in ("asyncio", "coroutine") else ok
    assert list(ex.map(fn, range(30))) == list(range(30))
    assert ex.join(timeout=60)
    terminal = [e for e in seen.events if e.terminal]
    assert sum(e.calls for e in terminal) == 30 == ex.statistics().done
