"""Hypothesis properties of map and as_completed, on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import taskkit


def triple(x: int) -> int:
    return 3 * x


@pytest.fixture(scope="module", params=["serial", "thread"])
def shared_executor(request: pytest.FixtureRequest) -> Iterator[taskkit.Executor]:
    with taskkit.open_executor(request.param, max_workers=3) as ex:
        yield ex


@given(
    xs=st.lists(st.integers(-1000, 1000), max_size=60),
    window=st.none() | st.integers(1, 20),
    chunksize=st.none() | st.integers(1, 25),
)
def test_map_equals_builtin_map(
    shared_executor: taskkit.Executor, xs: list[int], window: int | None, chunksize: int | None
) -> None:
    assert list(map(triple, xs)) == list(
        shared_executor.map(triple, xs, window=window, chunksize=chunksize)
    )


@given(
    xs=st.lists(st.integers(-1000, 1000), max_size=60),
    window=st.none() | st.integers(1, 20),
    chunksize=st.none() | st.integers(1, 25),
)
def test_unordered_map_is_a_permutation(
    shared_executor: taskkit.Executor, xs: list[int], window: int | None, chunksize: int | None
) -> None:
    results = shared_executor.map(triple, xs, window=window, chunksize=chunksize, ordered=False)
    assert sorted(map(triple, xs)) == sorted(results)


@given(xs=st.lists(st.integers(), max_size=30), repeat=st.lists(st.integers(0, 29), max_size=10))
def test_as_completed_yields_each_future_once(
    shared_executor: taskkit.Executor, xs: list[int], repeat: list[int]
) -> None:
    futures = [shared_executor.submit(triple, x) for x in xs]
    extra = [futures[i] for i in repeat if i < len(futures)]
    seen = list(taskkit.as_completed(futures + extra, timeout=30))
    assert len(seen) == len(set(futures))
    assert set(seen) == set(futures)
