"""The asyncio face: ``Pipeline.arun()`` and ``Pipeline.alines()``, driven by the event loop.

The same engine as the blocking face; only the waiting differs.  The parent's pipe ends
are watched with ``loop.add_reader`` (never handed to children: O_NONBLOCK is set on
the parent's own ends only).  Cancelling the awaiting task, as ``asyncio.timeout()``
does, stops the whole group before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, final

from .._core._errors import UsageError
from ._common import HIGH_WATER, LineSplitter, completed, raise_for_outcome
from ._engine import DRAIN_GRACE, Engine
from ._results import Completed, Options, Stage

__all__ = ["AsyncLines", "arun"]


class _LoopReactor:
    """The engine's reactor for async calls: ``add_reader`` callbacks wake one waiter."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
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

    async def wait(self, timeout: float | None) -> None:
        self._waiter = waiter = self._loop.create_future()
        timer = None if timeout is None else self._loop.call_later(timeout, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


async def _step(engine: Engine, reactor: _LoopReactor, deadline: float | None) -> bool:
    """Wait once for the pipeline to make progress; return False once ``deadline`` has passed."""
    now = time.monotonic()
    if deadline is not None and now >= deadline:
        return False
    await reactor.wait(engine.wait_timeout(deadline, now))
    engine.poll_exits()
    return True


async def _wait_done(engine: Engine, reactor: _LoopReactor, deadline: float | None) -> bool:
    while not engine.done:
        if not await _step(engine, reactor, deadline):
            return False
    return True


async def _terminate(engine: Engine, reactor: _LoopReactor) -> None:
    """SIGTERM the group, SIGKILL it after the grace period, then stop waiting on strays."""
    engine.pause_stdout(False)  # keep draining, so no stage blocks on a full pipe
    engine.signal(signal.SIGTERM)
    if not await _wait_done(engine, reactor, time.monotonic() + engine.options.kill_grace):
        engine.signal(signal.SIGKILL)
        await _wait_done(engine, reactor, time.monotonic() + DRAIN_GRACE)


async def _wait_feeder(engine: Engine) -> None:
    feeder = engine.feeder
    if feeder is not None and not feeder.finished.is_set():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, feeder.finished.wait, DRAIN_GRACE)


def _deadline(options: Options) -> float | None:
    return None if options.timeout is None else time.monotonic() + options.timeout


async def arun(
    stages: Sequence[Stage], options: Options, *, check: bool, text: bool
) -> Completed[Any]:
    """Run the pipeline to its end on the running event loop; return (or raise) its outcome."""
    chunks: list[bytes] = []
    engine = Engine(stages, options, chunks.append)
    reactor = _LoopReactor(asyncio.get_running_loop())
    finished = False
    try:
        try:
            engine.start(reactor)  # a Ctrl-C held back during the spawn is raised here
            finished = await _wait_done(engine, reactor, _deadline(options))
            if not finished:
                await _terminate(engine, reactor)
            else:
                await _wait_feeder(engine)
        except BaseException:  # cancellation included: stop the group, then propagate
            await _terminate(engine, reactor)
            raise
    finally:
        engine.close()
    done = completed(engine, b"".join(chunks), text=text)
    raise_for_outcome(engine, done, check=check, timed_out=not finished)
    return done


@final
class AsyncLines(AsyncIterator[str]):
    """The lines a pipeline's last stage writes, for ``async for``, as they arrive.

    Made by ``Pipeline.alines()``; the asyncio twin of ``Lines``, with the same rules:
    the pipeline starts on ``async with``, iteration checks the result at the end, and
    leaving the block early kills and reaps every stage and raises nothing.  Reading
    pauses while more than about a million characters of lines wait to be consumed.
    """

    def __init__(self, stages: Sequence[Stage], options: Options, *, check: bool) -> None:
        self._stages, self._options, self._check = tuple(stages), options, check
        self._splitter = LineSplitter(options.encoding, options.errors)
        self._engine = Engine(self._stages, options, self._feed)
        self._reactor: _LoopReactor | None = None
        self._deadline: float | None = None
        self._state = "new"  # -> "running" -> "ended"
        self.result: Completed[str] | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the stages, in pipeline order."""
        return tuple(proc.pid for proc in self._engine.procs)

    def _feed(self, data: bytes) -> None:
        self._splitter.feed(data)
        if self._splitter.size > HIGH_WATER:
            self._engine.pause_stdout(True)

    async def __aenter__(self) -> AsyncLines:
        if self._state != "new":
            raise UsageError("an AsyncLines object can be entered only once; call alines() again")
        self._reactor = _LoopReactor(asyncio.get_running_loop())
        self._state = "ended"
        try:
            self._engine.start(self._reactor)
        except BaseException:
            try:
                await _terminate(self._engine, self._reactor)
            finally:
                self._engine.close()
            raise
        self._deadline = _deadline(self._options)
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncLines:
        return self

    async def __anext__(self) -> str:
        if self._state == "new":
            raise UsageError("use the lines inside `async with pipeline.alines() as lines:`")
        assert self._reactor is not None
        while not self._splitter:
            if self._state == "ended":
                raise StopAsyncIteration
            self._engine.pause_stdout(False)
            if self._engine.done:
                await self._end(timed_out=False)
            elif not await _step(self._engine, self._reactor, self._deadline):
                await self._end(timed_out=True)
        return self._splitter.pop()

    async def _end(self, *, timed_out: bool) -> None:
        assert self._reactor is not None
        self._state = "ended"
        try:
            if timed_out:
                await _terminate(self._engine, self._reactor)
            else:
                await _wait_feeder(self._engine)
        finally:
            self._engine.close()
        self.result = completed(self._engine, "", text=True)
        raise_for_outcome(self._engine, self.result, check=self._check, timed_out=timed_out)

    async def aclose(self) -> None:
        """Kill and reap every stage unless the pipeline has already ended; raise nothing."""
        if self._state != "running":
            return
        assert self._reactor is not None
        self._state = "ended"
        try:
            if not self._engine.done:
                await _terminate(self._engine, self._reactor)
        finally:
            self._engine.close()
        self.result = completed(self._engine, "", text=True)  # for inspection; not checked
