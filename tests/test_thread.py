"""What only the thread backend does: abandoning and replacing a stuck thread."""

from __future__ import annotations

import threading

import pytest

import taskkit


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
    assert names == ["w:taskkit-thread-1"]


def test_a_failing_initializer_fails_the_work_instead_of_hanging() -> None:
    def init() -> None:
        raise OSError("no config")

    with taskkit.open_executor("thread", max_workers=1, initializer=init) as ex:
        fut = ex.submit(int)
        with pytest.raises(RuntimeError, match="initializer failed"):
            fut.result(timeout=10)


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
