"""The asyncio face: ``Pipeline.arun()`` and ``Pipeline.alines()``, driven by the event loop.

The same engine and the same steps (``_steps``) as the blocking face; only the waiting
differs: this face's reactor hands the steps an awaitable's ``__await__()``, so they
yield to the event loop, and ``awaited`` makes them awaitable.  The parent's pipe ends
are watched with ``loop.add_reader`` (never handed to children: O_NONBLOCK is set on
the parent's own ends only).  Cancelling the awaiting task, as ``asyncio.timeout()``
does, stops the whole group before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import threading
import types
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, TypeVar, final

from . import _steps
from ._common import HIGH_WATER
from ._engine import DRAIN_GRACE
from ._results import Completed, Options, Stage
from ._steps import LinesSteps, Steps

__all__ = ["AsyncLines", "arun"]

T = TypeVar("T")


class _LoopReactor:
    """The steps' reactor for async calls: ``add_reader`` callbacks wake one waiter."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._loop.add_reader(fd, self._fire, callback)

    def remove(self, fd: int) -> None:
        self._loop.remove_reader(fd)

    def _fire(self, callback: Callable[[], None]) -> None:
        callback()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def wait(self, timeout: float | None) -> Generator[Any, None, None]:
        return self._wait(timeout).__await__()

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = waiter = self._loop.create_future()
        timer = None if timeout is None else self._loop.call_later(timeout, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def wait_feeder(self, finished: threading.Event) -> Generator[Any, None, None]:
        return self._wait_feeder(finished).__await__()

    async def _wait_feeder(self, finished: threading.Event) -> None:
        if not finished.is_set():
            await self._loop.run_in_executor(None, finished.wait, DRAIN_GRACE)

    def close(self) -> None:
        pass  # the loop is the caller's: each reader is removed as its fd is closed


@types.coroutine
def awaited(steps: Steps[T]) -> Generator[Any, Any, T]:
    """Await ``steps``: what a ``_LoopReactor`` yields in them goes to the event loop."""
    return (yield from steps)


async def arun(
    stages: Sequence[Stage], options: Options, *, check: bool, text: bool
) -> Completed[Any]:
    """Run the pipeline to its end on the running event loop; return (or raise) its outcome."""
    return await awaited(_steps.run(stages, options, _LoopReactor(), check=check, text=text))


@final
class AsyncLines(LinesSteps, AsyncIterator[str]):
    """The lines a pipeline's last stage writes, for ``async for``, as they arrive.

    Made by ``Pipeline.alines()``; the asyncio twin of ``Lines``, with the same rules:
    the pipeline starts on ``async with``, iteration checks the result at the end, and
    leaving the block early kills and reaps every stage and raises nothing.  Reading
    pauses while more than about a million characters of lines wait to be consumed.
    """

    _ENTERED_TWICE = "an AsyncLines object can be entered only once; call alines() again"
    _NOT_ENTERED = "use the lines inside `async with pipeline.alines() as lines:`"

    def _feed(self, data: bytes) -> None:
        self._splitter.feed(data)
        if self._splitter.size > HIGH_WATER:
            self._engine.pause_stdout(True)

    async def __aenter__(self) -> AsyncLines:
        await awaited(self._start(_LoopReactor))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncLines:
        return self

    async def __anext__(self) -> str:
        line = self._splitter.pop() if self._splitter else await awaited(self._next_line())
        if line is None:
            raise StopAsyncIteration
        return line

    async def aclose(self) -> None:
        """Kill and reap every stage unless the pipeline has already ended; raise nothing."""
        await awaited(self._close())
