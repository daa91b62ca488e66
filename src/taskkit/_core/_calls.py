"""How a task's callable is invoked, the same way on every backend.

These functions are module-level so that the process backend can ship them
to workers by reference.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from itertools import starmap
from types import CoroutineType
from typing import Any, Protocol

__all__ = [
    "ChunkResult",
    "call",
    "run_calls",
    "run_chunk",
    "run_chunk_concurrently",
    "run_to_completion",
]

# What a map chunk reports: (results, failures, retried, seconds spent).
# ``results`` has one entry per call that ended, in input order; a call that failed
# (after its retries) has ``None`` there and ``(index, exception)`` in ``failures``.
# Unless the map keeps going past errors, the chunk stops at its first failure, so
# ``len(results)`` calls ran and the rest were never started.  ``retried`` counts
# the re-runs of failing calls; ``seconds`` is what ``map`` sizes later chunks by.
ChunkResult = tuple[list[Any], list[tuple[int, BaseException]], int, float]


def call(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Return ``fn(*args, **kwargs)``; an ``async def`` function is run to completion.

    This lets a coroutine function be submitted to the thread, process and
    serial backends too: it runs on a fresh event loop in the worker.
    """
    result = fn(*args, **kwargs)
    if isinstance(result, CoroutineType):
        import asyncio  # only now: a process worker runs without it until a task needs it

        return asyncio.run(result)
    return result


def run_chunk(
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    retries: int = 0,
    keep_going: bool = False,
) -> ChunkResult:
    """Call ``fn(*item)`` for each item, as ``submit`` would call it once per item.

    A failing call is re-run alone up to ``retries`` times; if it still fails, the
    chunk stops there, or, with ``keep_going``, records the failure and goes on.
    """
    if inspect.iscoroutinefunction(fn):
        fn = functools.partial(run_to_completion, fn)

    def run_from(start: int, results: list[Any]) -> None:
        # C-level iteration, and list.extend keeps what was appended before an
        # exception, so len(results) is the failing index.
        results.extend(starmap(fn, items[start:] if start else items))

    return run_calls(run_from, lambda index: fn(*items[index]), retries, keep_going)


def run_to_completion(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` for an ``async def`` function: its coroutine run on a fresh event loop."""
    import asyncio  # only now: a process worker runs without it until a task needs it

    return asyncio.run(fn(*args))


def run_calls(
    run_from: Callable[[int, list[Any]], None],
    call_at: Callable[[int], Any],
    retries: int,
    keep_going: bool,
) -> ChunkResult:
    """Drive a chunk's calls: the fast loop ``run_from(start, results)``, and each failure.

    ``run_from`` appends the results of the calls from index ``start`` on and stops
    at the first exception; ``call_at(index)`` makes one call again.  Shared by
    every chunk runner (the process workers' ``run_column`` too).
    """
    start = time.perf_counter()
    results: list[Any] = []
    failures: list[tuple[int, BaseException]] = []
    retried = 0
    while True:
        try:
            run_from(len(results), results)
        except Exception as exc:
            error: BaseException = exc
        else:
            break
        # Retried outside the except block, so a retry's error is not chained to the last.
        index = len(results)
        for _ in range(retries):
            retried += 1
            try:
                value = call_at(index)
            except Exception as exc:
                error = exc
            else:
                results.append(value)
                break
        else:
            results.append(None)
            failures.append((index, error))
            if not keep_going:
                break
    return results, failures, retried, time.perf_counter() - start


class _Spawned(Protocol):
    def cancel(self) -> Any: ...

    def __await__(self) -> Generator[Any, Any, Any]: ...


async def _attempts(fn: Callable[..., Any], item: tuple[Any, ...], retries: int) -> Any:
    """Await ``fn(*item)``, re-running it up to ``retries`` times; return (retried, value)."""
    for attempt in range(retries + 1):
        try:
            return attempt, await fn(*item)
        except Exception:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _raise(error: Exception) -> Any:
    raise error


async def run_chunk_concurrently(
    fn: Callable[..., Any],
    items: Sequence[tuple[Any, ...]],
    spawn: Callable[[Coroutine[Any, Any, Any]], _Spawned],
    retries: int = 0,
    keep_going: bool = False,
) -> ChunkResult:
    """A map chunk of an async function: every call is its own task, all at once.

    ``spawn`` starts a coroutine as a task of the running scheduler (asyncio's
    ``loop.create_task``, or the coroutine backend's ``spawn``).  Returns what
    ``run_chunk`` returns; unless ``keep_going``, the calls after the first
    failing one (in input order) are cancelled.  Backends run such a chunk only
    where ``max_workers`` sets no limit, since all its calls run at once.
    """
    tasks: list[_Spawned] = []
    try:
        for item in items:
            try:
                # Without retries, the call's own coroutine is the task, as a submit makes.
                coro = _attempts(fn, item, retries) if retries else fn(*item)
            except Exception as exc:  # the call failed before its coroutine existed
                coro = _raise(exc)
            tasks.append(spawn(coro))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    results: list[Any] = []
    failures: list[tuple[int, BaseException]] = []
    retried = 0
    try:
        for i, task in enumerate(tasks):
            try:
                value = await task
            except Exception as exc:
                retried += retries
                results.append(None)
                failures.append((i, exc))
                if not keep_going:
                    for rest in tasks[i + 1 :]:
                        rest.cancel()
                    return results, failures, retried, 0.0
            else:
                if retries:
                    attempts, value = value
                    retried += attempts
                results.append(value)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    # The calls ran concurrently, so the chunk's wall time says nothing about the cost of
    # one call: report none, and map grows later chunks to its fair-share cap.
    return results, failures, retried, 0.0
