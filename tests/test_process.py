"""The process backend: what only it does (crashes, kills, pickling, shutdown, Ctrl-C).

Executors are shared per module where a test does not change them, because
every new worker process costs milliseconds; tests that kill things make their
own.  Faults that would hit the test runner itself (Ctrl-C, SIGKILL of the
parent) run in a child script.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import enum
import gc
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import taskkit
from taskkit import (
    ExecutorClosed,
    RemoteError,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
)

if TYPE_CHECKING:
    # Imported where used: a worker imports this module to run its functions, and
    # Hypothesis would add a second to each worker's first task.
    from hypothesis.strategies import SearchStrategy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

# ------------------------------------------------------------ task helpers


def square(x: int) -> int:
    return x * x


def add(x: int, y: int = 0) -> int:
    return x + y


def pid(_: object = None) -> int:
    return os.getpid()


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def segfault() -> None:
    ctypes.string_at(0)


def wait_for_file(path: str) -> str:
    """Block until ``path`` exists: a task that only ends when the test says so."""
    while not os.path.exists(path):
        time.sleep(0.005)
    return path


def sleep_forever(_: object = None) -> None:
    while True:
        time.sleep(60)


def spawn_grandchild_and_hang(path: str) -> None:
    child = subprocess.Popen(["sleep", "60"])
    Path(path).write_text(str(child.pid))
    sleep_forever()


def fail(message: str) -> None:
    raise ValueError(message)


def fail_at(x: int) -> int:
    if x == 7:
        raise KeyError(x)
    return x


class Unbuildable(Exception):
    """Pickles, but cannot be rebuilt: its __init__ needs two arguments."""

    def __init__(self, a: object, b: object) -> None:
        super().__init__(f"{a}-{b}")


def raise_unbuildable() -> None:
    raise Unbuildable(1, 2)


def return_lock() -> object:
    return threading.Lock()


def read_global() -> object:
    return _initialized.get("value")


_initialized: dict[str, object] = {}


def initialize(value: object) -> None:
    _initialized["value"] = value


def crash_once(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os._exit(9)
    return "second attempt"


def alive(pid_: int) -> bool:
    try:
        os.kill(pid_, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): count it as dead.
    try:
        with open(f"/proc/{pid_}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``predicate`` until it holds (a process's state has no event to wait on)."""
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.002)


def wait_dead(pids: list[int], seconds: float = 5.0) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        living = [p for p in pids if alive(p)]
        if not living:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ex() -> Iterator[taskkit.Executor]:
    """A shared two-worker pool for tests that leave it as they found it."""
    executor = taskkit.open_executor("process", max_workers=2)
    yield executor
    executor.shutdown(kill=True)


@pytest.fixture
def fresh() -> Iterator[taskkit.Executor]:
    """A pool of its own, for tests that kill, crash or shut down."""
    executor = taskkit.open_executor("process", max_workers=2)
    yield executor
    executor.shutdown(kill=True)


# ------------------------------------------------------------------ basics


def test_submit_returns_what_the_call_returns(ex: taskkit.Executor) -> None:
    assert 49 == ex.submit(square, 7).result()
    assert 5 == ex.submit(add, 2, y=3).result()
    assert os.getpid() != ex.submit(pid).result()


def test_lambdas_closures_and_local_functions(ex: taskkit.Executor) -> None:
    offset = 10

    def local(x: int) -> int:
        return x + offset

    assert 11 == ex.submit(lambda x: x + 1, 10).result()
    assert 13 == ex.submit(local, 3).result()
    assert [10, 11, 12] == list(ex.map(local, range(3)))


def test_async_function_runs_to_completion(ex: taskkit.Executor) -> None:
    async def coro(x: int) -> int:
        return x * 3

    assert 6 == ex.submit(coro, 2).result()


def test_map_ordered_unordered_and_several_iterables(ex: taskkit.Executor) -> None:
    assert [x * x for x in range(1000)] == list(ex.map(square, range(1000)))
    assert sorted(x * x for x in range(500)) == sorted(ex.map(square, range(500), ordered=False))
    assert [0, 2, 4] == list(ex.map(add, range(3), range(10)))
    assert [1, 4] == list(ex.map(square, [1, 2], chunksize=1))


def test_map_exception_surfaces_at_its_item(ex: taskkit.Executor) -> None:
    results = ex.map(fail_at, range(20), chunksize=3)
    assert list(range(7)) == [next(results) for _ in range(7)]
    with pytest.raises(KeyError) as info:
        next(results)
    assert "fail_at" in str(info.value.__cause__)


def test_map_is_lazy_with_bounded_memory(ex: taskkit.Executor) -> None:
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for i in range(300_000):
            pulled += 1
            yield i

    window = 2000
    total = 0
    most_ahead = 0
    rss_before = _rss()
    rss_most = rss_before
    for consumed, value in enumerate(ex.map(square, numbers(), window=window), 1):
        total += value
        most_ahead = max(most_ahead, pulled - consumed)
        if consumed % 20_000 == 0:
            rss_most = max(rss_most, _rss())
    assert sum(i * i for i in range(300_000)) == total
    # Never more than the window, plus the chunk being handed out, read ahead.
    assert most_ahead <= 2 * window
    assert rss_most - rss_before < 8 * 2**20


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("chunksize", [None, 1, 7])
def test_sliced_inputs_give_what_their_iterators_give(
    ex: taskkit.Executor, chunksize: int | None, ordered: bool
) -> None:
    # A range, list or tuple is read by slicing; any other iterable one item at a time.
    for data in (range(-5, 300, 3), range(90, -9, -4), list(range(120)), tuple(range(50)), [7], ()):
        expected = [x * x for x in data]
        sliced = list(ex.map(square, data, chunksize=chunksize, ordered=ordered))
        iterated = list(ex.map(square, iter(data), chunksize=chunksize, ordered=ordered))
        if not ordered:
            expected, sliced, iterated = sorted(expected), sorted(sliced), sorted(iterated)
        assert expected == sliced == iterated


def test_sliced_input_fails_at_its_item_and_counts_each_call_once(
    fresh: taskkit.Executor,
) -> None:
    results = fresh.map(fail_at, list(range(40)))
    assert list(range(7)) == [next(results) for _ in range(7)]
    with pytest.raises(KeyError) as info:
        next(results)
    assert "fail_at" in str(info.value.__cause__)
    assert fresh.join(timeout=20)
    stats = fresh.statistics()
    assert 1 == stats.failed
    assert 40 == stats.done + stats.failed + stats.cancelled


class Shade(enum.IntEnum):
    DARK = 1


def int_like(x: int) -> object:
    """Ints, and objects that pack as ints but are not exactly ``int``."""
    return [x, -x, x % 2 == 0, Shade.DARK][x % 4]


def some_none(x: int) -> int | None:
    return None if x % 50 == 0 else x


def plain_int(x: int) -> int:
    return [x, -x, 2**63 - 1 - x, -(2**63) + x][x % 4]


def wide_int(x: int) -> int:
    return 2**64 + x if x == 150 else x


def bool_at_end(x: int) -> object:
    return x == 299 or x


@pytest.mark.parametrize("fn", [int_like, some_none, plain_int, wide_int, bool_at_end])
def test_int_results_come_back_exactly(ex: taskkit.Executor, fn: Callable[[int], object]) -> None:
    # Chunks of plain ints travel packed as 64-bit integers; anything else must not.
    expected = [fn(x) for x in range(300)]
    for chunksize in (None, 100, 300):
        got = list(ex.map(fn, range(300), chunksize=chunksize))
        assert expected == got
        assert [type(value) for value in expected] == [type(value) for value in got]


def test_packed_results_before_a_failure_come_out_first(ex: taskkit.Executor) -> None:
    results = ex.map(fail_at_70, range(200), chunksize=100)
    assert list(range(70)) == [next(results) for _ in range(70)]
    with pytest.raises(KeyError):
        next(results)


def fail_at_70(x: int) -> int:
    if x == 70:
        raise KeyError(x)
    return x


def test_amap_hands_out_packed_results(ex: taskkit.Executor) -> None:
    async def collect() -> list[int]:
        return [value async for value in ex.amap(square, range(500), chunksize=250)]

    assert [x * x for x in range(500)] == asyncio.run(collect())


class Token:
    """A result a test can watch with a weak reference."""

    def __init__(self, value: int) -> None:
        self.value = value


def token(value: int) -> Token:
    return Token(value)


def test_consumed_results_are_freed_without_the_garbage_collector(
    ex: taskkit.Executor,
) -> None:
    # Results the consumer is done with go by reference counting: nothing in the
    # map (a chunk's future, its task) may keep them in a cycle until the next
    # collection, which would hold memory beyond the window.
    gc.disable()
    try:
        seen = [weakref.ref(result) for result in ex.map(token, range(600), chunksize=50)]
        assert [] == [ref for ref in seen if ref() is not None]
    finally:
        gc.enable()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_big_buffers_round_trip(ex: taskkit.Executor) -> None:
    data = os.urandom(3 * 2**20)
    assert data == ex.submit(bytes, data).result()
    np = pytest.importorskip("numpy")
    array = np.arange(2**20, dtype=np.float64)
    back = ex.submit(np.negative, array).result()
    assert (back == -array).all()


def test_statistics_count_processes(ex: taskkit.Executor) -> None:
    ex.submit(square, 1).result()
    stats = ex.statistics()
    assert stats.backend == "process"
    assert stats.max_workers == 2
    assert 1 <= stats.workers <= 2


# -------------------------------------------------------------- exceptions


def test_exception_keeps_type_message_and_remote_traceback(ex: taskkit.Executor) -> None:
    with pytest.raises(ValueError, match="boom") as info:
        ex.submit(fail, "boom").result()
    cause = info.value.__cause__
    assert cause is not None
    assert "in fail" in str(cause)
    assert "Traceback" in str(cause)


def test_exception_that_cannot_be_rebuilt_becomes_remote_error(ex: taskkit.Executor) -> None:
    with pytest.raises(RemoteError) as info:
        ex.submit(raise_unbuildable).result()
    assert "Unbuildable" in str(info.value)
    assert "1-2" in str(info.value)
    assert "raise_unbuildable" in info.value.traceback_text


# ----------------------------------------------------------- serialisation


def test_unpicklable_argument_fails_at_submit_naming_it(ex: taskkit.Executor) -> None:
    with pytest.raises(SerializationError, match=r"argument 2 of type lock"):
        ex.submit(add, 1, threading.Lock())
    with pytest.raises(SerializationError, match=r"keyword 'y' of type lock"):
        ex.submit(add, 1, y=threading.Lock())
    assert 3 == ex.submit(add, 1, 2).result()


def test_unpicklable_result_fails_only_that_future(ex: taskkit.Executor) -> None:
    before = set(ex.map(pid, range(50), chunksize=1))
    with pytest.raises(SerializationError, match="result of type lock"):
        ex.submit(return_lock).result()
    assert ex.submit(pid).result() in before  # no worker was replaced


def test_serialization_error_pickles() -> None:
    error = SerializationError("argument 1", "lock", "no")
    assert str(error) == str(pickle.loads(pickle.dumps(error)))


# ------------------------------------------------------------------ crashes


@pytest.mark.parametrize(
    ("fn", "arg", "expect"),
    [
        (exit_hard, 3, "exited with status 3"),
        (kill_self, signal.SIGKILL, "SIGKILL"),
        (kill_self, signal.SIGTERM, "SIGTERM"),
        (segfault, None, "SIGSEGV"),
    ],
    ids=["os._exit", "SIGKILL (as the OOM killer sends)", "SIGTERM", "segfault"],
)
def test_crash_fails_only_its_task(
    fresh: taskkit.Executor, fn: object, arg: object, expect: str
) -> None:
    gate = f"/tmp/taskkit-gate-{os.getpid()}-{time.monotonic_ns()}"
    running = fresh.submit(wait_for_file, gate)
    queued = [fresh.submit(square, i) for i in range(5)]
    crash = fresh.submit(fn, arg) if arg is not None else fresh.submit(fn)  # type: ignore[operator]
    with pytest.raises(WorkerCrashed, match=expect) as info:
        crash.result(timeout=20)
    assert info.value.pid is not None
    if expect.startswith("SIG"):
        assert info.value.signal is not None
    else:
        assert info.value.exitcode == 3
    later = fresh.submit(square, 12)
    Path(gate).touch()
    try:
        assert gate == running.result(timeout=20)
        assert [i * i for i in range(5)] == [f.result(timeout=20) for f in queued]
        assert 144 == later.result(timeout=20)
    finally:
        os.unlink(gate)
    assert fresh.statistics().failed == 1


def test_crash_message_names_pid_status_and_cause(fresh: taskkit.Executor) -> None:
    with pytest.raises(WorkerCrashed) as info:
        fresh.submit(kill_self, signal.SIGKILL).result(timeout=20)
    message = str(info.value)
    assert str(info.value.pid) in message
    assert "out-of-memory" in message
    assert "replaced" in message


def test_retries_apply_to_crashes(fresh: taskkit.Executor, tmp_path: Path) -> None:
    marker = str(tmp_path / "crashed")
    future = fresh.options(retries=1).submit(crash_once, marker)
    assert "second attempt" == future.result(timeout=20)
    assert 1 == fresh.statistics().retried


def test_crash_inside_map_chunk(fresh: taskkit.Executor) -> None:
    results = fresh.map(exit_hard, [5], chunksize=1)
    with pytest.raises(WorkerCrashed):
        list(results)
    assert [0, 1, 4] == list(fresh.map(square, range(3)))


# --------------------------------------------------- timeouts and cancelling


def test_timeout_kills_the_task_and_its_children(fresh: taskkit.Executor, tmp_path: Path) -> None:
    path = str(tmp_path / "grandchild")
    # Each worker imports this module once, when it first unpickles one of its
    # functions: a second or more on a busy machine, which would count against the
    # deadline below.  Both workers do that here first.
    gate = str(tmp_path / "gate")
    warming = [fresh.submit(wait_for_file, gate) for _ in range(2)]
    wait_until(lambda: all(f.running() for f in warming))
    Path(gate).touch()
    assert [gate, gate] == [f.result(timeout=30) for f in warming]
    other = fresh.submit(square, 3)
    future = fresh.options(timeout=1.0).submit(spawn_grandchild_and_hang, path)
    with pytest.raises(TaskTimeout, match="killed"):
        future.result(timeout=20)
    grandchild = int(Path(path).read_text())
    assert [] == wait_dead([grandchild])
    assert 9 == other.result()
    assert 16 == fresh.submit(square, 4).result(timeout=20)
    assert 1 == fresh.statistics().timed_out


def test_cancel_running_task_kills_its_worker(fresh: taskkit.Executor) -> None:
    worker = fresh.submit(pid).result()
    future = fresh.submit(sleep_forever)
    wait_until(future.running)
    assert future.cancel() is True
    assert future.cancelled()
    assert 25 == fresh.submit(square, 5).result(timeout=20)
    stats = fresh.statistics()
    assert stats.cancelled == 1
    del worker


# ---------------------------------------------------------- worker options


def test_initializer_and_initargs() -> None:
    with taskkit.open_executor(
        "process", max_workers=1, initializer=initialize, initargs=("hello",)
    ) as executor:
        assert "hello" == executor.submit(read_global).result()


def test_failing_initializer_fails_tasks_without_hanging() -> None:
    with (
        taskkit.open_executor(
            "process", max_workers=1, initializer=fail, initargs=("no init",)
        ) as executor,
        pytest.raises(RuntimeError, match="initializer failed"),
    ):
        executor.submit(square, 2).result(timeout=20)


def test_max_tasks_per_child_replaces_workers() -> None:
    with taskkit.open_executor("process", max_workers=1, max_tasks_per_child=2) as executor:
        pids = [executor.submit(pid).result(timeout=20) for _ in range(6)]
    assert 3 == len(set(pids))


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_start_methods(method: str) -> None:
    with taskkit.open_executor("process", max_workers=1, start_method=method) as executor:
        assert [1, 4] == list(executor.map(square, [1, 2]))
        assert 7 == executor.submit(lambda: 7).result()


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="start_method"):
        taskkit.open_executor("process", start_method="vfork")
    with pytest.raises(ValueError, match="max_tasks_per_child"):
        taskkit.open_executor("process", max_tasks_per_child=0)
    with pytest.raises(TypeError, match="initializer"):
        taskkit.open_executor("process", initializer=3)


def test_workers_start_lazily() -> None:
    executor = taskkit.open_executor("process", max_workers=2)
    try:
        assert 0 == executor.statistics().workers
    finally:
        executor.shutdown()


# ----------------------------------------------------------------- shutdown


def test_close_join_the_pool_idiom() -> None:
    executor = taskkit.open_executor("process", max_workers=2)
    futures = [executor.submit(square, i) for i in range(4)]
    executor.close()
    with pytest.raises(ExecutorClosed):
        executor.submit(square, 1)
    assert executor.join(timeout=30)
    assert [0, 1, 4, 9] == [f.result() for f in futures]
    executor.shutdown()
    assert 0 == executor.statistics().workers


def test_shutdown_cancel_pending() -> None:
    executor = taskkit.open_executor("process", max_workers=1)
    gate = f"/tmp/taskkit-gate-{os.getpid()}-{time.monotonic_ns()}"
    first = executor.submit(wait_for_file, gate)
    rest = [executor.submit(square, i) for i in range(5)]
    wait_until(first.running)
    threading.Timer(0.2, Path(gate).touch).start()
    executor.shutdown(wait=True, cancel_pending=True)
    os.unlink(gate)
    assert gate == first.result()
    assert all(f.cancelled() for f in rest)


def test_shutdown_kill_stops_everything_and_closes() -> None:
    executor = taskkit.open_executor("process", max_workers=2)
    pids = list(executor.map(pid, range(40), chunksize=1))
    running = [executor.submit(sleep_forever) for _ in range(2)]
    queued = executor.submit(square, 2)
    wait_until(lambda: all(f.running() for f in running))
    executor.shutdown(kill=True)
    assert all(f.cancelled() for f in running)
    assert queued.cancelled()
    with pytest.raises(ExecutorClosed):
        executor.submit(square, 1)
    assert [] == wait_dead(sorted(set(pids)))
    assert 0 == executor.statistics().workers


def test_with_block_waits_for_work() -> None:
    with taskkit.open_executor("process", max_workers=2) as executor:
        futures = [executor.submit(square, i) for i in range(10)]
    assert all(f.done() for f in futures)


# ---------------------------------------------- faults in a child interpreter

_CHILD_PRELUDE = """
import os, sys, time
import taskkit

def spin(_=None):
    while True:
        time.sleep(60)

def getpid(_=None):
    return os.getpid()
"""


def _run_child(body: str) -> subprocess.Popen[str]:
    script = _CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell's foreground job would be
    )


def _read_pids(child: subprocess.Popen[str]) -> list[int]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("pids"), line + (child.stderr.read() if child.stderr else "")
    return [int(p) for p in line.split()[1:]]


def test_one_ctrl_c_stops_everything() -> None:
    child = _run_child(
        """
        if __name__ == "__main__":
            with taskkit.open_executor("process", max_workers=2) as ex:
                pids = set(ex.map(getpid, range(40), chunksize=1))
                futures = [ex.submit(spin) for _ in range(4)]
                while not all(f.running() for f in futures[:2]):
                    time.sleep(0.01)
                print("pids", *pids, flush=True)
                futures[0].result()
        """
    )
    try:
        pids = _read_pids(child)
        start = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, stderr = child.communicate(timeout=20)
        assert time.monotonic() - start < 5
        assert child.returncode != 0
        assert "KeyboardInterrupt" in stderr
        assert "resource_tracker" not in stderr
        assert "leaked" not in stderr
        assert [] == wait_dead(pids)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def test_ctrl_c_without_with_block_still_stops() -> None:
    child = _run_child(
        """
        ex = taskkit.open_executor("process", max_workers=2)
        futures = [ex.submit(spin) for _ in range(2)]
        pids = set()
        while not all(f.running() for f in futures):
            time.sleep(0.01)
        print("pids", *ex._process.manager._workers, flush=True)
        futures[0].result()
        """
    )
    try:
        pids = _read_pids(child)
        os.killpg(child.pid, signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
        assert "KeyboardInterrupt" in stderr
        assert [] == wait_dead(pids)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@pytest.mark.skipif(not os.path.exists("/proc/self/comm"), reason="Linux names processes here")
def test_a_worker_sets_its_whole_title_where_setproctitle_is_installed(tmp_path: Path) -> None:
    (tmp_path / "setproctitle.py").write_text(
        "import sys\ndef setproctitle(title):\n    print('title:', title)\n"
    )
    code = (
        "from taskkit._backends.process._worker import set_title\n"
        "set_title('taskkit worker 3 of process executor 1', 'taskkit-w3')\n"
        "print('comm:', open('/proc/self/comm').read().strip())\n"
    )
    src = str(Path(taskkit.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(tmp_path)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "title: taskkit worker 3 of process executor 1",
        "comm: taskkit-w3",
    ]


def loaded_modules() -> list[str]:
    return sorted(sys.modules)


def test_a_spawned_worker_imports_only_what_running_tasks_needs() -> None:
    # Each worker started by spawn imports what it needs afresh: neither the coroutine
    # scheduler, the shared-state primitives, the pipelines, the parent's executor, the
    # executor core (futures, ledger) nor asyncio (imported when a task is async).
    # (Asked by a builtin, shipped by reference: loaded_modules would import this module.)
    with taskkit.ProcessExecutor(max_workers=1, start_method="spawn") as ex:
        loaded = set(ex.submit(eval, "sorted(__import__('sys').modules)").result(timeout=60))
        assert "asyncio" in ex.submit(loaded_modules).result(timeout=60)  # this module's
    assert "taskkit._backends.process._worker" in loaded
    unneeded = (
        "taskkit._backends.coroutine",
        "taskkit._primitives",
        "taskkit._pipeline",
        "taskkit._backends.process._executor",
        "taskkit._core._executor",
        "taskkit._core._future",
        "taskkit._core._ledger",
        "taskkit._core._compat",
        "asyncio",
        "ssl",
    )
    assert sorted(m for m in unneeded if m in loaded) == []


@pytest.mark.parametrize("method", ["forkserver", "fork", "spawn"])
def test_workers_exit_when_parent_is_killed(method: str) -> None:
    child = _run_child(
        f"""
        ex = taskkit.open_executor("process", max_workers=2, start_method={method!r})
        busy = ex.submit(spin)
        while not busy.running():
            time.sleep(0.01)
        ex.submit(getpid).result()
        print("pids", *ex._process.manager._workers, flush=True)
        time.sleep(60)
        """
    )
    try:
        pids = _read_pids(child)
        assert len(pids) == 2
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert [] == wait_dead(pids, seconds=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.communicate()


def test_main_module_functions_work_with_every_start_method() -> None:
    script = _CHILD_PRELUDE + textwrap.dedent(
        """
        def triple(x):
            return 3 * x

        class Point:
            def __init__(self, x):
                self.x = x

        def norm(p):
            return abs(p.x)

        if __name__ == "__main__":
            for method in ("fork", "forkserver", "spawn"):
                with taskkit.open_executor("process", max_workers=1, start_method=method) as ex:
                    assert ex.submit(triple, 2).result() == 6
                    assert list(ex.map(triple, range(3))) == [0, 3, 6]
                    assert ex.submit(norm, Point(-4)).result() == 4
                    assert ex.submit(lambda: 9).result() == 9
            print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "ok" in done.stdout, done.stderr
    assert "Warning" not in done.stderr, done.stderr


# ------------------------------------------------------------ the wire format


@pytest.mark.parametrize(
    "value",
    [0, -(2**70), 1.5, "text", b"bytes", True, None, 2j, (1, "a", None, False), ()],
    ids=repr,
)
def test_plain_values_round_trip_with_their_exact_types(value: object) -> None:
    from taskkit._backends.process import _wire

    stream, buffers = _wire.dumps(value)
    copy = _wire.loads(stream, buffers)
    assert copy == value
    assert type(copy) is type(value)


def test_a_reused_pickler_starts_clean_after_a_failure() -> None:
    from taskkit._backends.process import _wire

    shared = [1, 2]
    with pytest.raises(TypeError, match="lock"):
        _wire.dumps([shared, threading.Lock()])  # even cloudpickle cannot pickle a lock
    # No memo or stream left over from the failed message.
    stream, buffers = _wire.dumps([shared, shared])
    first, second = _wire.loads(stream, buffers)
    assert first == [1, 2]
    assert first is second


def test_picklers_are_not_shared_between_threads() -> None:
    from taskkit._backends.process import _wire

    errors: list[str] = []
    start = threading.Barrier(4)

    def churn(n: int) -> None:
        start.wait()
        for i in range(2000):
            value = [n, i, {"k": (n, i)}]
            stream, buffers = _wire.dumps(value)
            if _wire.loads(stream, buffers) != value:
                errors.append(f"thread {n} item {i}")

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# ------------------------------------------- every shutdown lets the program exit

_EXIT_CHILD = """
import atexit, sys, time
import taskkit

def main(method, wait, cancel_pending, kill):
    ex = taskkit.open_executor("process", max_workers=2, start_method=method)
    assert ex.submit(abs, -1).result(timeout=60) == 1
    futures = [ex.submit(time.sleep, 0.2) for _ in range(6)]
    while sum(f.running() for f in futures) < 2:
        time.sleep(0.002)

    def report():  # runs after taskkit's own exit hook
        states = [
            "cancelled" if f.cancelled() else "done" if f.done() else "unsettled" for f in futures
        ]
        print("states", *states, flush=True)

    atexit.register(report)
    ex.shutdown(wait=wait, cancel_pending=cancel_pending, kill=kill)
    if wait:
        assert all(f.done() for f in futures)
    print("returned", flush=True)

if __name__ == "__main__":
    main(sys.argv[1], *(flag == "1" for flag in sys.argv[2:]))
"""

_SHUTDOWN_FORMS = [
    (wait, cancel_pending, kill)
    for wait in (False, True)
    for cancel_pending in (False, True)
    for kill in (False, True)
]


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_form_of_shutdown_lets_the_program_exit(method: str, tmp_path: Path) -> None:
    """Issue 19: after shutdown(), running tasks finish (or are killed), every future
    settles and the interpreter exits, for each wait/cancel_pending/kill and start method.

    The eight forms run as eight child interpreters at once, each with a hard limit.
    """
    script = tmp_path / "shutdown_child.py"
    script.write_text(_EXIT_CHILD)
    children = {
        form: subprocess.Popen(
            [sys.executable, str(script), method, *("1" if flag else "0" for flag in form)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for form in _SHUTDOWN_FORMS
    }
    problems = []
    try:
        for (wait, cancel_pending, kill), child in children.items():
            form = f"shutdown(wait={wait}, cancel_pending={cancel_pending}, kill={kill})"
            try:
                stdout, stderr = child.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                problems.append(f"{form}: the program never exited")
                continue
            if child.returncode != 0 or "returned" not in stdout or stderr:
                problems.append(f"{form}: exit {child.returncode}\n{stdout}{stderr}")
                continue
            states = stdout.split("states", 1)[1].split()
            running, pending = states[:2], states[2:]
            assert len(pending) == 4
            expect_running = "cancelled" if kill else "done"
            expect_pending = "cancelled" if kill or cancel_pending else "done"
            if running != [expect_running] * 2 or pending != [expect_pending] * 4:
                problems.append(f"{form}: futures ended {states}")
    finally:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
    assert [] == problems


def test_the_poll_fallback_runs_and_shuts_down_cleanly() -> None:
    """Where select.epoll is missing, the manager waits with select.poll (issue 14)."""
    script = textwrap.dedent(
        """
        import select
        del select.epoll  # as on a platform without it
        import taskkit
        from taskkit._backends.process import _executor as process

        def square(x):
            return x * x

        if __name__ == "__main__":
            assert not process._HAS_EPOLL
            with taskkit.open_executor("process", max_workers=2) as ex:
                assert ex.submit(square, 3).result(timeout=60) == 9
                assert list(ex.map(square, range(50), chunksize=3)) == [x * x for x in range(50)]
                futures = [ex.submit(square, i) for i in range(20)]
                assert [f.result(timeout=60) for f in futures] == [i * i for i in range(20)]
            print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "ok" in done.stdout, done.stderr
    assert "" == done.stderr


class Holder:
    def triple(self, x: int) -> int:
        return 3 * x


def test_a_settled_task_keeps_no_reference_to_its_function(ex: taskkit.Executor) -> None:
    """Issue 14: once settled and handed over, the parent holds nothing of the call."""
    assert 1 == ex.submit(square, 1).result(timeout=30)  # a worker is idle: the send is direct
    holder = Holder()
    alive = weakref.ref(holder)
    future = ex.submit(holder.triple, 2)
    settled = threading.Event()
    future.add_done_callback(lambda _: settled.set())
    assert settled.wait(timeout=30)  # settled by the manager thread, not read here
    assert 6 == future.result()
    del holder, future
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_timeout_counts_from_when_the_task_starts_not_the_worker(method: str) -> None:
    """Issue 14.7: a worker's start-up (its initializer included) is not the task's time."""
    with taskkit.open_executor(
        "process",
        max_workers=1,
        start_method=method,
        initializer=time.sleep,
        initargs=(1.0,),  # a slow start, twice the task's deadline
    ) as executor:
        future = executor.options(timeout=0.5).submit(abs, -3)
        assert 3 == future.result(timeout=60)
        assert 0 == executor.statistics().timed_out


# ------------------------------------------ a worker that breaks the protocol


def _own_socket() -> int:
    """In a task: the worker's end of its socket to the parent."""
    frame = sys._getframe()
    while frame.f_code.co_name != "_serve":
        assert frame.f_back is not None
        frame = frame.f_back
    return int(frame.f_locals["fd"])


def write_then_return(garbage: bytes, value: int) -> int:
    os.write(_own_socket(), garbage)
    return value


def _settles(future: taskkit.Future[object], seconds: float = 60) -> bool:
    concurrent.futures.wait([future], timeout=seconds)
    return future.done()


def _shuts_down(executor: taskkit.Executor, seconds: float = 60) -> bool:
    stopper = threading.Thread(target=executor.shutdown, daemon=True)
    stopper.start()
    stopper.join(seconds)
    return not stopper.is_alive()


_HEADER = struct.Struct("!cIQ")


@pytest.mark.parametrize(
    ("garbage", "what"),
    [
        (b"x", "unknown type"),
        (b"R", "buffers"),  # a known type: the reply that follows is then misframed
        (_HEADER.pack(b"R", 0, 1 << 40), "more than this machine's memory"),
        (_HEADER.pack(b"C", 1 << 30, 0), "buffers"),
        (_HEADER.pack(b"I", 0, 1) + b"N", "initializer failed after"),
    ],
    ids=["stray byte", "stray tag byte", "bogus length", "bogus buffer count", "forged I"],
)
def test_a_worker_that_breaks_the_protocol_is_replaced(garbage: bytes, what: str) -> None:
    """Issue 15.3: bad bytes from a worker fail its task only; the pool goes on."""
    executor = taskkit.open_executor("process", max_workers=2)
    try:
        gate = f"/tmp/taskkit-gate-{os.getpid()}-{time.monotonic_ns()}"
        bystander = executor.submit(wait_for_file, gate)
        wait_until(bystander.running)
        liar = executor.submit(write_then_return, garbage, 7)
        assert _settles(liar)
        with pytest.raises(WorkerCrashed, match="broke the protocol") as info:
            liar.result()
        assert what in str(info.value)
        assert 9 == executor.submit(square, 3).result(timeout=60)
        Path(gate).touch()
        try:
            assert gate == bystander.result(timeout=60)
        finally:
            os.unlink(gate)
    finally:
        assert _shuts_down(executor)


def test_a_worker_that_stops_half_way_through_a_message_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskkit._backends.process import _executor as process

    monkeypatch.setattr(process, "_STALL_SECONDS", 0.3)
    executor = taskkit.open_executor("process", max_workers=1)
    try:
        truncated = _HEADER.pack(b"R", 0, 1000) + b"\x80\x05"
        liar = executor.submit(write_then_return, truncated, 7)
        assert _settles(liar)
        with pytest.raises(WorkerCrashed, match="unfinished"):
            liar.result()
        assert 9 == executor.submit(square, 3).result(timeout=60)
    finally:
        assert _shuts_down(executor)


def _frames() -> SearchStrategy[bytes]:
    """What a broken worker might write: garbage, truncated and oversized frames."""
    from hypothesis import strategies as st

    tags = st.sampled_from([b"R", b"E", b"C", b"I", b"A", b"T", b"\x00"])
    truncated = st.builds(
        lambda tag, length, cut, body: (_HEADER.pack(tag, 0, length) + body)[: _HEADER.size + cut],
        tags,
        st.integers(1, 4096),
        st.integers(0, 64),
        st.binary(min_size=64, max_size=64),
    )
    oversized = st.builds(
        lambda tag, count, length: _HEADER.pack(tag, count, length),
        tags,
        st.integers(0, 2**32 - 1),
        st.integers(2**40, 2**64 - 1),
    )
    return st.one_of(st.binary(min_size=1, max_size=64), truncated, oversized)


def test_garbage_from_workers_never_strands_a_future(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection on the wire: whatever a worker writes, every future settles,
    the pool keeps working and shutdown returns."""
    import hypothesis

    from taskkit._backends.process import _executor as process

    monkeypatch.setattr(process, "_STALL_SECONDS", 0.3)
    executor = taskkit.open_executor("process", max_workers=2)

    @hypothesis.settings(max_examples=25)
    @hypothesis.given(garbage=_frames())
    @hypothesis.example(garbage=_HEADER.pack(b"I", 0, 1))  # found by this test: it broke the pool
    def garbage_is_contained(garbage: bytes) -> None:
        liar = executor.submit(write_then_return, garbage, 7)
        honest = executor.submit(square, 5)
        later = executor.submit(square, 4)
        for future in (liar, honest, later):
            assert _settles(future)
        # A task that lands on the liar's worker after the garbage was framed as
        # a reply can get the rest of it: it fails with WorkerCrashed (or is handed
        # a well-formed forged reply); any other error would mean a broken pool.
        for future in (honest, later):
            error = future.exception()
            assert error is None or isinstance(error, (WorkerCrashed, SerializationError))
            assert error is not None or isinstance(future.result(), int)

    try:
        garbage_is_contained()
        assert 9 == executor.submit(square, 3).result(timeout=60)
    finally:
        assert _shuts_down(executor)
    assert 0 == executor.statistics().workers


# ------------------------------------------- results whose unpickling raises


class ExitsWhenLoaded:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (sys.exit, ("a result that exits when unpickled",))


def exits_when_loaded() -> ExitsWhenLoaded:
    return ExitsWhenLoaded()


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


class InterruptsWhenLoaded:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_raise_interrupt, ())


def interrupts_when_loaded() -> InterruptsWhenLoaded:
    return InterruptsWhenLoaded()


@pytest.mark.parametrize("reader", ["manager", "caller"])
def test_a_result_that_raises_systemexit_when_unpickled_settles(reader: str) -> None:
    """Issue 15.5: the future settles with a SerializationError, the pool survives."""
    executor = taskkit.open_executor("process", max_workers=1)
    try:
        assert 1 == executor.submit(abs, -1).result(timeout=60)
        future = executor.submit(exits_when_loaded)
        if reader == "manager":
            assert _settles(future)
        with pytest.raises(SerializationError, match="SystemExit") as info:
            future.result(timeout=60)
        assert isinstance(info.value.__cause__, SystemExit)
        assert 4 == executor.submit(square, 2).result(timeout=60)
    finally:
        assert _shuts_down(executor)


def test_an_interrupt_while_a_result_is_unpickled_settles_the_future() -> None:
    """A KeyboardInterrupt while the result is unpickled: the future settles, the pool
    survives, and when the main thread was the one reading, the interrupt reaches it."""
    script = textwrap.dedent(
        """
        import taskkit, sys
        sys.path.insert(0, {tests!r})
        from test_process import interrupts_when_loaded

        if __name__ == "__main__":
            with taskkit.open_executor("process", max_workers=1) as ex:
                assert ex.submit(abs, -1).result(timeout=60) == 1
                future = ex.submit(interrupts_when_loaded)
                try:
                    future.result(timeout=60)
                except KeyboardInterrupt:
                    print("interrupted")  # the main thread read the reply
                except taskkit.SerializationError:
                    print("failed")  # the manager thread read it
                assert future.done()
                error = future.exception()
                assert isinstance(error, taskkit.SerializationError), repr(error)
                assert isinstance(error.__cause__, KeyboardInterrupt)
                assert ex.submit(abs, -2).result(timeout=60) == 2
            print("ok")
        """
    ).format(tests=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split()[-1:] == ["ok"], done.stdout + done.stderr
    assert "" == done.stderr
