"""How a task's callable is invoked, the same way on every backend.

These functions are module-level so that the process backend can ship them
to workers by reference.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ChunkResult", "call", "run_chunk"]

# (results, index of the failing item or -1, its exception or None, seconds spent)
ChunkResult = tuple[list[Any], int, "BaseException | None", float]


def call(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Return ``fn(*args, **kwargs)``; an ``async def`` function is run to completion.

    This lets a coroutine function be submitted to the thread, process and
    serial backends too: it runs on a fresh event loop in the worker.
    """
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def run_chunk(fn: Callable[..., Any], items: Sequence[tuple[Any, ...]]) -> ChunkResult:
    """Call ``fn(*item)`` for each item, stopping at the first exception.

    Returns the results so far, the index of the item that raised (or -1),
    the exception, and the time spent, which ``map`` uses to size later chunks.
    """
    start = time.perf_counter()
    results: list[Any] = []
    append = results.append
    try:
        if inspect.iscoroutinefunction(fn):
            for item in items:
                append(asyncio.run(fn(*item)))
        else:
            for item in items:
                append(fn(*item))
    except Exception as exc:
        return results, len(results), exc, time.perf_counter() - start
    return results, -1, None, time.perf_counter() - start
