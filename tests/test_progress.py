"""Progress bars wherever results are awaited: map, amap, as_completed, join.

Each entry point takes ``progress=True``, a label, a dict of tqdm options, or a bar of the
caller's own; the bar appears when iteration starts and knows its total where it can.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import taskkit
from taskkit._core import _progress

pytest.importorskip("tqdm")


class Bar:
    """A bar of the caller's own: records what taskkit does to it."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.steps: list[int] = []
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.steps.append(n)

    def close(self) -> None:
        self.closed = True

    @property
    def count(self) -> int:
        return sum(self.steps)


@pytest.fixture
def made_bars(monkeypatch: pytest.MonkeyPatch) -> list[Bar]:
    """The bars taskkit makes, recorded instead of drawn (with the options they were made with)."""
    made: list[Bar] = []

    def make(**options: Any) -> Bar:
        bar = Bar(options.get("total"))
        bar.options = options  # type: ignore[attr-defined]
        made.append(bar)
        return bar

    monkeypatch.setattr(_progress, "_tqdm", lambda: make)
    return made


def square(x: int) -> int:
    return x * x


@pytest.fixture
def ex() -> Iterator[taskkit.Executor]:
    with taskkit.open_executor("thread", max_workers=4) as executor:
        yield executor


def test_map_bar_appears_when_iteration_starts(ex: taskkit.Executor) -> None:
    out = io.StringIO()
    results = ex.map(square, range(3), progress={"file": out, "desc": "squares"})
    assert out.getvalue() == ""  # nothing drawn at the call
    assert next(results) == 0
    assert "squares" in out.getvalue()
    assert list(results) == [1, 4]
    assert "3/3" in out.getvalue()


def test_a_label_names_the_bar(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    assert list(ex.map(square, [1, 2], progress="squares")) == [1, 4]
    (bar,) = made_bars
    assert bar.options == {"total": 2, "unit": "call", "desc": "squares"}  # type: ignore[attr-defined]
    assert bar.count == 2
    assert bar.closed


def test_tqdm_options_override_the_defaults(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    list(ex.map(square, iter([1, 2]), progress={"unit": "img", "leave": False}))
    (bar,) = made_bars
    assert bar.options == {"total": None, "unit": "img", "leave": False}  # type: ignore[attr-defined]


def test_a_bar_of_your_own_gets_a_total_and_stays_open(ex: taskkit.Executor) -> None:
    bar = Bar()
    assert list(ex.map(square, range(4), progress=bar)) == [0, 1, 4, 9]
    assert (bar.total, bar.count, bar.closed) == (4, 4, False)
    given = Bar(total=100)  # one bar over several batches: its total is kept
    list(ex.map(square, range(4), progress=given))
    list(ex.map(square, range(4), progress=given))
    assert (given.total, given.count) == (100, 8)


def test_a_bar_made_by_taskkit_is_closed_when_the_caller_stops_early(
    ex: taskkit.Executor, made_bars: list[Bar]
) -> None:
    results = ex.map(square, range(100), progress=True)
    assert next(results) == 0
    results.close()  # type: ignore[attr-defined]
    (bar,) = made_bars
    assert bar.closed


def test_a_failing_call_closes_the_bar(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    with pytest.raises(ZeroDivisionError):
        list(ex.map(lambda x: 1 // x, [1, 0, 1], progress=True))
    assert made_bars[0].closed


@pytest.mark.parametrize("bad", [3, 0.5, object(), ["desc"]])
def test_a_bad_progress_value_fails_at_the_call_before_any_call_runs(
    ex: taskkit.Executor, bad: object
) -> None:
    with pytest.raises(TypeError, match="progress must be"):
        ex.map(square, range(3), progress=bad)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="progress must be"):
        taskkit.as_completed([], progress=bad)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="progress must be"):
        ex.join(progress=bad)  # type: ignore[arg-type]
    assert ex.statistics().submitted == 0


@pytest.mark.parametrize("off", [False, None])
def test_no_bar_when_progress_is_off(
    ex: taskkit.Executor, made_bars: list[Bar], off: bool | None
) -> None:
    assert list(ex.map(square, range(3), progress=off)) == [0, 1, 4]  # type: ignore[call-overload]
    assert made_bars == []


def test_amap_bar(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    async def main() -> list[int]:
        results = ex.amap(square, range(5), progress="async squares")
        assert made_bars == []  # not before iteration starts
        return [y async for y in results]

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    (bar,) = made_bars
    assert (bar.total, bar.count, bar.closed) == (5, 5, True)


def test_as_completed_counts_distinct_futures(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    futures = [ex.submit(square, i) for i in range(3)]
    done = list(taskkit.as_completed(futures + futures[:1], progress="tasks"))
    assert sorted(f.result() for f in done) == [0, 1, 4]
    (bar,) = made_bars
    assert (bar.total, bar.count, bar.closed) == (3, 3, True)
    assert bar.options["unit"] == "task"  # type: ignore[attr-defined]


def test_as_completed_with_progress_still_times_out(ex: taskkit.Executor) -> None:
    gate = threading.Event()
    future = ex.submit(gate.wait)
    bar = Bar()
    with pytest.raises(TimeoutError):
        list(taskkit.as_completed([future], timeout=0.01, progress=bar))
    gate.set()
    assert future.result(timeout=10) is True
    assert bar.count == 0


class GateBar(Bar):
    """A bar that opens ``gate`` when taskkit gives it its total, i.e. once join() has begun."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "total" and value is not None:
            self.gate.set()


def test_join_bar_ends_full(ex: taskkit.Executor) -> None:
    gate = threading.Event()
    for _ in range(4):
        ex.submit(gate.wait)
    bar = GateBar(gate)
    assert ex.join(timeout=60, progress=bar) is True
    assert (bar.total, bar.count) == (4, 4)


def test_join_total_grows_with_tasks_submitted_while_it_waits(ex: taskkit.Executor) -> None:
    gate = threading.Event()

    def parent() -> None:
        gate.wait()
        for _ in range(3):
            ex.submit(square, 2)

    ex.submit(parent)
    bar = GateBar(gate)
    assert ex.join(timeout=60, progress=bar) is True
    assert (bar.total, bar.count) == (4, 4)


def test_join_that_times_out_returns_false_and_closes_its_bar(
    ex: taskkit.Executor, made_bars: list[Bar]
) -> None:
    gate = threading.Event()
    ex.submit(gate.wait)
    assert ex.join(timeout=0.05, progress=True) is False
    (bar,) = made_bars
    assert bar.closed
    assert bar.count == 0
    gate.set()


def test_join_with_nothing_to_wait_for(ex: taskkit.Executor, made_bars: list[Bar]) -> None:
    assert ex.join(progress=True) is True
    (bar,) = made_bars
    assert (bar.total, bar.count, bar.closed) == (0, 0, True)


def test_every_backend_moves_the_bar(
    backend: str, make_executor: Callable[..., taskkit.Executor]
) -> None:
    executor = make_executor()
    fn: Callable[[int], Any] = square if backend not in ("asyncio", "coroutine") else asquare
    mapped = Bar()
    assert list(executor.map(fn, range(4), progress=mapped)) == [0, 1, 4, 9]
    assert mapped.count == 4
    futures = [executor.submit(fn, i) for i in range(3)]
    completed = Bar()
    assert len(list(taskkit.as_completed(futures, progress=completed))) == 3
    assert completed.count == 3
    executor.submit(fn, 5)
    joined = Bar()
    assert executor.join(timeout=60, progress=joined) is True
    assert joined.count == joined.total


async def asquare(x: int) -> int:
    return x * x


def test_progress_needs_tqdm_or_names_the_extra(
    ex: taskkit.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    for call in (
        lambda: ex.map(square, range(3), progress="label"),
        lambda: taskkit.as_completed([], progress=True),
        lambda: ex.join(progress={"desc": "x"}),
    ):
        with pytest.raises(ImportError, match=r"taskkit\[progress\]"):
            call()
    ex.map(square, range(3), progress=Bar())  # a bar of your own needs no tqdm
