"""What only the thread backend does: abandoning and replacing a stuck thread."""

from __future__ import annotations

import concurrent.futures
import gc
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import taskkit
from taskkit._backends.thread._executor import ThreadExecutor


def test_a_timed_out_thread_is_replaced_so_others_keep_running() -> None:
    release = threading.Event()
    with taskkit.open_executor("thread", max_workers=1) as ex:
        stuck = ex.options(timeout=0.05).submit(release.wait)
        with pytest.raises(taskkit.TaskTimeout, match="abandoned"):
            stuck.result(timeout=10)
        # The only worker is still stuck, yet new work runs on its replacement.
        assert ex.submit(pow, 2, 2).result(timeout=10) == 4
        assert ex.statistics().workers == 1
        release.set()


def test_a_late_result_of_an_abandoned_call_is_dropped() -> None:
    release = threading.Event()
    finished = threading.Event()

    def late() -> str:
        release.wait()
        finished.set()
        return "late"

    with taskkit.open_executor("thread", max_workers=2) as ex:
        fut = ex.options(timeout=0.05).submit(late)
        assert isinstance(fut.exception(timeout=10), taskkit.TaskTimeout)
        release.set()
        assert finished.wait(10)
    assert isinstance(fut.exception(), taskkit.TaskTimeout)


def test_threads_start_lazily_up_to_max_workers() -> None:
    barrier = threading.Barrier(3)
    with taskkit.open_executor("thread", max_workers=3) as ex:
        assert ex.statistics().workers == 0
        futures = [ex.submit(barrier.wait, 10) for _ in range(3)]
        assert sorted(f.result(timeout=10) for f in futures) == [0, 1, 2]
        assert ex.statistics().workers == 3


def test_cancel_of_a_running_thread_task_is_refused() -> None:
    started, release = threading.Event(), threading.Event()

    def work() -> int:
        started.set()
        release.wait()
        return 1

    with taskkit.open_executor("thread", max_workers=1) as ex:
        fut = ex.submit(work)
        assert started.wait(10)
        assert not fut.cancel()
        release.set()
        assert fut.result(timeout=10) == 1


def test_initializer_runs_in_each_thread() -> None:
    names: list[str] = []
    lock = threading.Lock()

    def init(tag: str) -> None:
        with lock:
            names.append(tag + threading.current_thread().name)

    with taskkit.open_executor("thread", max_workers=1, initializer=init, initargs=("w:",)) as ex:
        ex.submit(int).result(timeout=10)
    assert len(names) == 1
    assert re.fullmatch(r"w:taskkit-thread-\d+_0", names[0])


def test_threads_are_named_after_their_executor_as_the_stdlib_names_them() -> None:
    barrier = threading.Barrier(2)

    def name() -> str:
        barrier.wait(10)
        return threading.current_thread().name

    with taskkit.open_executor("thread", max_workers=2) as first:
        names = sorted(f.result(timeout=10) for f in [first.submit(name), first.submit(name)])
    prefix = names[0].rsplit("_", 1)[0]
    assert re.fullmatch(r"taskkit-thread-\d+", prefix)
    assert names == [f"{prefix}_0", f"{prefix}_1"]
    with taskkit.open_executor("thread", max_workers=1) as second:
        other = second.submit(threading.current_thread).result(timeout=10).name
    assert not other.startswith(prefix + "_")  # another executor, another prefix
    with taskkit.open_executor("thread", max_workers=1, thread_name_prefix="Loader") as named:
        assert named.submit(threading.current_thread).result(timeout=10).name == "Loader_0"


def test_a_failing_initializer_fails_the_work_instead_of_hanging() -> None:
    def init() -> None:
        raise OSError("no config")

    with taskkit.open_executor("thread", max_workers=1, initializer=init) as ex:
        fut = ex.submit(int)
        with pytest.raises(taskkit.InitializerFailed, match="initializer failed") as info:
            fut.result(timeout=10)
    assert isinstance(info.value.__cause__, OSError)
    assert isinstance(info.value, concurrent.futures.BrokenExecutor)  # a RuntimeError too


def test_after_a_failing_initializer_later_work_fails_at_once_and_shutdown_returns() -> None:
    # A child interpreter: before the fix, the later task never settled, and
    # shutdown, the with block and the interpreter's exit all hung on it.
    script = textwrap.dedent(
        """
        import taskkit

        def init():
            raise OSError("no config")

        ex = taskkit.open_executor("thread", max_workers=1, initializer=init)
        first = ex.submit(int)
        assert isinstance(first.exception(timeout=10), taskkit.InitializerFailed)
        later = ex.submit(int)
        error = later.exception(timeout=10)
        assert isinstance(error, taskkit.InitializerFailed), error
        assert isinstance(error.__cause__, OSError)
        ex.shutdown(wait=True)
        with taskkit.open_executor("thread", max_workers=2, initializer=init) as ex2:
            futures = [ex2.submit(int) for _ in range(20)]
        assert all(isinstance(f.exception(0), taskkit.InitializerFailed) for f in futures)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_initializer_failed_pickles_with_its_fields() -> None:
    error = taskkit.InitializerFailed("thread", "OSError('no config')")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is taskkit.InitializerFailed
    assert (str(copy), vars(copy)) == (str(error), vars(error))


def test_a_settled_task_does_not_keep_its_function_alive() -> None:
    class Owner:
        def method(self) -> None:
            pass

    collected = threading.Event()
    with taskkit.open_executor("thread", max_workers=1) as ex:
        owner = Owner()
        ref = weakref.ref(owner, lambda _: collected.set())
        ex.submit(owner.method).result(timeout=10)  # the future is dropped at once
        del owner
        gc.collect()
        # The thread is idle now, waiting for work: it must not hold the last task.
        assert collected.wait(10), f"still referenced by {gc.get_referrers(ref())!r}"


def test_async_functions_run_to_completion_on_threads() -> None:
    async def double(x: int) -> int:
        return 2 * x

    with taskkit.open_executor("thread") as ex:
        assert ex.submit(double, 4).result(timeout=10) == 8
        assert list(ex.map(double, range(3))) == [0, 2, 4]


def test_progress_bar_needs_tqdm_or_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with taskkit.open_executor("thread") as ex:
        assert list(ex.map(pow, range(3), [2] * 3, progress=True)) == [0, 1, 4]
    assert "3/3" in capsys.readouterr().err
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with (
        taskkit.open_executor("thread") as ex,
        pytest.raises(ImportError, match=r"taskkit\[progress\]"),
    ):
        ex.map(pow, range(3), [2] * 3, progress=True)


def test_serial_runs_in_order_in_the_caller() -> None:
    order: list[int] = []
    caller = threading.current_thread()

    def record(i: int) -> bool:
        order.append(i)
        return threading.current_thread() is caller

    with taskkit.open_executor("serial") as ex:
        futures = [ex.submit(record, i) for i in range(5)]
        assert all(f.done() for f in futures)  # finished inside submit()
        assert all(f.result() for f in futures)
        assert list(ex.map(record, range(5, 8))) == [True] * 3
    assert order == list(range(8))


def test_serial_map_computes_each_result_when_reached() -> None:
    calls: list[int] = []

    def note(i: int) -> int:
        calls.append(i)
        return i

    with taskkit.open_executor("serial") as ex:
        results = ex.map(note, range(100))
        assert next(results) == 0
        assert len(calls) <= 2


def test_each_retry_gets_its_own_deadline() -> None:
    release = threading.Event()
    attempts: list[int] = []

    def hangs_the_first_time() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            release.wait()
        return len(attempts)

    with taskkit.open_executor("thread", max_workers=2) as ex:
        fut = ex.options(timeout=0.1, retries=1).submit(hangs_the_first_time)
        assert 2 == fut.result(timeout=10)
        stats = ex.statistics()
        assert (stats.retried, stats.timed_out, stats.done) == (1, 0, 1)
        release.set()


def test_a_retry_that_overruns_again_fails_with_task_timeout() -> None:
    release = threading.Event()
    with taskkit.open_executor("thread", max_workers=1) as ex:
        fut = ex.options(timeout=0.05, retries=2).submit(release.wait)
        with pytest.raises(taskkit.TaskTimeout):
            fut.result(timeout=10)
        assert ex.statistics().retried == 2
        release.set()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), 1e300, float("-inf")])
def test_nan_and_absurd_timeouts_are_rejected_with_the_other_bad_ones(bad: float) -> None:
    with taskkit.open_executor("thread") as ex, pytest.raises(ValueError, match="timeout"):
        ex.options(timeout=bad)


def test_an_infinite_timeout_means_no_deadline_and_the_deadline_thread_survives() -> None:
    # In a child interpreter: the deadline thread is shared by the whole process,
    # and before the fix timeout=inf killed it (OverflowError: timestamp out of range).
    script = textwrap.dedent(
        """
        import logging, math, threading
        import taskkit
        from taskkit._core._timer import call_at, call_later

        logging.basicConfig()  # taskkit logs nowhere until the application says where

        died = []
        threading.excepthook = lambda args: died.append(args.exc_type.__name__)
        assert taskkit.TaskOptions(timeout=math.inf).timeout is None
        with taskkit.open_executor("thread", max_workers=2) as ex:
            assert ex.options(timeout=math.inf).submit(pow, 2, 3).result(timeout=10) == 8
        call_at(math.inf, lambda: None)       # the clock itself copes with inf
        call_later(0, lambda: 1 / 0)          # a failing callback is logged, not fatal
        for _ in range(2):
            fired = threading.Event()
            call_later(0.01, fired.set)
            assert fired.wait(10), "the deadline thread stopped"
        with taskkit.open_executor("thread", max_workers=2) as ex:
            release = threading.Event()
            stuck = ex.options(timeout=0.05).submit(release.wait)
            assert isinstance(stuck.exception(timeout=10), taskkit.TaskTimeout)
            release.set()
        assert died == [], died
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "ZeroDivisionError" in done.stderr  # logged, where the application's logging says


def test_max_workers_zero_is_refused_with_the_stdlib_message() -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        taskkit.open_executor("thread", max_workers=0)
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ThreadExecutor(max_workers=0)


def test_the_interpreter_exit_waits_for_work_left_by_shutdown_without_wait() -> None:
    # As concurrent.futures does: shutdown(wait=False) returns at once, but the
    # program's exit still lets the running and the queued tasks finish.
    script = textwrap.dedent(
        """
        import threading, time
        import taskkit

        go = threading.Event()

        def slow(word):
            go.wait()
            time.sleep(0.3)  # still running when the main thread ends
            print(word, flush=True)

        ex = taskkit.open_executor("thread", max_workers=1)
        ex.submit(slow, "running")
        ex.submit(slow, "queued")
        ex.shutdown(wait=False)
        go.set()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["running", "queued"]
