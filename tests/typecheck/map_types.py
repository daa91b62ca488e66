"""``map`` and ``amap`` are typed by what the function returns, awaited for ``async def``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

import taskkit


async def double(x: int) -> int:
    return 2 * x


def square(x: int) -> int:
    return x * x


ex = taskkit.open_executor("thread")
view = ex.options(retries=1)
assert_type(ex.map(double, [1]), Iterator[int])
assert_type(ex.map(square, [1]), Iterator[int])
assert_type(ex.map(square, [1], return_exceptions=True), Iterator[int | BaseException])
assert_type(ex.amap(double, [1]), AsyncIterator[int])
assert_type(ex.amap(square, [1], progress=True), AsyncIterator[int])
assert_type(view.map(double, [1]), Iterator[int])
assert_type(view.amap(double, [1], return_exceptions=True), AsyncIterator[int | BaseException])
