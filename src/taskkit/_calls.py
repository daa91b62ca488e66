"""How a task's callable is invoked, the same way on every backend.

These functions are module-level so that the process backend can ship them
to workers by reference.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from itertools import starmap
from types import CoroutineType
from typing import Any, Protocol

__all__ = ["ChunkResult", "call", "run_chunk", "run_chunk_concurrently"]

# (results, index of the failing item or -1, its exception or None, seconds spent)
ChunkResult = tuple[Sequence[Any], int, "BaseException | None", float]


def call(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Return ``fn(*args, **kwargs)``; an ``async def`` function is run to completion.

    This lets a coroutine function be submitted to the thread, process and
    serial backends too: it runs on a fresh event loop in the worker.
    """
    result = fn(*args, **kwargs)
    if isinstance(result, CoroutineType):
        return asyncio.run(result)
    return result


def run_chunk(fn: Callable[..., Any], items: Sequence[tuple[Any, ...]]) -> ChunkResult:
    """Call ``fn(*item)`` for each item, stopping at the first exception.

    Returns the results so far, the index of the item that raised (or -1),
    the exception, and the time spent, which ``map`` uses to size later chunks.
    """
    start = time.perf_counter()
    results: list[Any] = []
    try:
        if inspect.iscoroutinefunction(fn):
            for item in items:
                results.append(asyncio.run(fn(*item)))
        else:
            # C-level iteration, and list.extend keeps what was appended
            # before an exception, so len(results) is the failing index.
            results.extend(starmap(fn, items))
    except Exception as exc:
        return results, len(results), exc, time.perf_counter() - start
    return results, -1, None, time.perf_counter() - start


class _Spawned(Protocol):
    def cancel(self) -> Any: ...

    def __await__(self) -> Generator[Any, Any, Any]: ...


async def run_chunk_concurrently(
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    spawn: Callable[[Coroutine[Any, Any, Any]], _Spawned],
) -> ChunkResult:
    """A map chunk of an async function: every call is its own task, all at once.

    ``spawn`` starts a coroutine as a task of the running scheduler (asyncio's
    ``loop.create_task``, or the coroutine backend's ``spawn``).  Returns what
    ``run_chunk`` returns: the results before the first failing call (in input
    order), its index and exception; the calls after it are cancelled.
    """
    tasks: list[_Spawned] = []
    error: Exception | None = None
    for item in items:
        try:
            tasks.append(spawn(fn(*item)))
        except Exception as exc:
            error = exc
            break
    results: list[Any] = []
    try:
        for i, task in enumerate(tasks):
            try:
                results.append(await task)
            except Exception as exc:
                for rest in tasks[i + 1 :]:
                    rest.cancel()
                return results, i, exc, 0.0
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    if error is not None:
        return results, len(results), error, 0.0
    # The calls ran concurrently, so the chunk's wall time says nothing about the cost of
    # one call: report none, and map grows later chunks to its fair-share cap.
    return results, -1, None, 0.0
