"""A pipeline run's steps, written once for the blocking face and the asyncio face.

``run``/``arun`` and ``lines``/``alines`` do the same things in the same order; only
the waiting differs.  So the steps are generators that wait in one way only, with
``yield from reactor.wait(...)``, and each face brings its reactor::

    yield from reactor.wait(timeout)
      ├─ _sync:  waits on a selector, returns ()     -> the steps never yield:
      │                                                 blocking(steps) runs them through
      └─ _async: returns an awaitable's __await__()  -> the loop's futures pass through:
                                                        await awaited(steps)

Read ``yield from reactor.wait(...)`` as a blocking call or as an ``await``: a Ctrl-C
or a cancellation raised while waiting reaches the steps there, and they stop the
process group before it goes on, as with either written out.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar

from .._core._errors import UsageError
from . import _engine
from ._common import LineSplitter, completed, raise_for_outcome
from ._engine import DRAIN_GRACE, Engine
from ._results import Completed, Options, Stage

__all__ = ["LinesSteps", "Reactor", "Steps", "run"]

T = TypeVar("T")

#: Steps that return a ``T``; what they yield is their reactor's, for their driver.
Steps: TypeAlias = Generator[Any, Any, T]


class Reactor(_engine.Reactor, Protocol):
    """What the steps need of a face: the engine's reactor, and the two ways of waiting."""

    def wait(self, timeout: float | None) -> Iterable[Any]:
        """Wait up to ``timeout`` s (``None``: no limit) for watched fds; run their callbacks."""
        ...

    def wait_feeder(self, finished: threading.Event) -> Iterable[Any]:
        """Wait up to ``DRAIN_GRACE`` s for the input's thread to set ``finished``."""
        ...

    def close(self) -> None: ...


def _deadline(options: Options) -> float | None:
    return None if options.timeout is None else time.monotonic() + options.timeout


def _wait(
    engine: Engine, reactor: Reactor, deadline: float | None, until: Callable[[], bool]
) -> Steps[bool]:
    """Wait until ``until()`` is true; return False if ``deadline`` passes first."""
    while not until():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        yield from reactor.wait(engine.wait_timeout(deadline, now))
        engine.poll_exits()
    return True


def _wait_done(engine: Engine, reactor: Reactor, deadline: float | None) -> Steps[bool]:
    """Wait until every stage has exited and every pipe is drained, or ``deadline``."""
    return _wait(engine, reactor, deadline, lambda: engine.done)


def _terminate(engine: Engine, reactor: Reactor) -> Steps[None]:
    """SIGTERM the group, SIGKILL it after the grace period, then stop waiting on strays.

    A grandchild that left the group (a daemon calling setsid) can hold a pipe open
    forever; after SIGKILL the parent waits only ``DRAIN_GRACE`` for EOF.  If this is
    interrupted, ``Engine.close()`` still SIGKILLs and reaps.
    """
    engine.pause_stdout(False)  # keep draining, so no stage blocks on a full pipe
    engine.signal(signal.SIGTERM)
    if not (yield from _wait_done(engine, reactor, time.monotonic() + engine.options.kill_grace)):
        engine.signal(signal.SIGKILL)
        yield from _wait_done(engine, reactor, time.monotonic() + DRAIN_GRACE)


def _finish(engine: Engine, reactor: Reactor, *, timed_out: bool) -> Steps[None]:
    """Once the waiting is over: stop the group if time ran out, else let the input end."""
    if timed_out:
        yield from _terminate(engine, reactor)
    elif engine.feeder is not None:
        yield from reactor.wait_feeder(engine.feeder.finished)


def run(
    stages: Sequence[Stage], options: Options, reactor: Reactor, *, check: bool, text: bool
) -> Steps[Completed[Any]]:
    """Run the pipeline to its end and return (or raise) its outcome."""
    chunks: list[bytes] = []
    engine = Engine(stages, options, chunks.append)
    finished = False
    try:
        try:
            engine.start(reactor)  # a Ctrl-C held back during the spawn is raised here
            finished = yield from _wait_done(engine, reactor, _deadline(options))
            yield from _finish(engine, reactor, timed_out=not finished)
        except BaseException:  # Ctrl-C, a cancellation or an error of ours: stop the group
            yield from _terminate(engine, reactor)
            raise
    finally:
        engine.close()
        reactor.close()
    done = completed(engine, b"".join(chunks), text=text)
    raise_for_outcome(engine, done, check=check, timed_out=not finished)
    return done


class LinesSteps:
    """What ``Lines`` and ``AsyncLines`` are made of: their state, and their steps.

    Each face drives the steps with its reactor; a line already split off is handed
    out without a step.
    """

    #: The ``UsageError`` messages, in the face's own words.
    _ENTERED_TWICE: ClassVar[str]
    _NOT_ENTERED: ClassVar[str]

    def __init__(self, stages: Sequence[Stage], options: Options, *, check: bool) -> None:
        self._stages, self._options, self._check = tuple(stages), options, check
        self._splitter = LineSplitter(options.encoding, options.errors)
        self._engine = Engine(self._stages, options, self._feed)
        self._reactor: Reactor | None = None
        self._deadline: float | None = None
        self._state = "new"  # -> "running" -> "ended"
        self.result: Completed[str] | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the stages, in pipeline order."""
        return tuple(proc.pid for proc in self._engine.procs)

    def _feed(self, data: bytes) -> None:
        self._splitter.feed(data)

    def _start(self, reactor_class: Callable[[], Reactor]) -> Steps[None]:
        """Start the stages (``__enter__``); if that fails, stop and reap those started."""
        if self._state != "new":
            raise UsageError(self._ENTERED_TWICE)
        self._reactor = reactor = reactor_class()
        self._state = "ended"
        try:
            self._engine.start(reactor)
        except BaseException:
            try:
                yield from _terminate(self._engine, reactor)
            finally:
                self._engine.close()
                reactor.close()
            raise
        self._deadline = _deadline(self._options)
        self._state = "running"

    def _next_line(self) -> Steps[str | None]:
        """Wait for the next line; None once the pipeline has ended (and been checked)."""
        if self._state == "new":
            raise UsageError(self._NOT_ENTERED)
        engine, reactor = self._engine, self._reactor
        assert reactor is not None
        while not self._splitter:
            if self._state == "ended":
                return None
            engine.pause_stdout(False)
            if engine.done:
                yield from self._end(timed_out=False)
            elif not (yield from _wait(engine, reactor, self._deadline, self._line_or_done)):
                yield from self._end(timed_out=True)
        return self._splitter.pop()

    def _line_or_done(self) -> bool:
        return bool(self._splitter) or self._engine.done

    def _end(self, *, timed_out: bool) -> Steps[None]:
        assert self._reactor is not None
        self._state = "ended"
        try:
            yield from _finish(self._engine, self._reactor, timed_out=timed_out)
        finally:
            self._engine.close()
            self._reactor.close()
        self.result = completed(self._engine, "", text=True)
        raise_for_outcome(self._engine, self.result, check=self._check, timed_out=timed_out)

    def _close(self) -> Steps[None]:
        """Kill and reap every stage unless the pipeline has already ended; raise nothing."""
        if self._state != "running":
            return
        assert self._reactor is not None
        self._state = "ended"
        try:
            if not self._engine.done:
                yield from _terminate(self._engine, self._reactor)
        finally:
            self._engine.close()
            self._reactor.close()
        self.result = completed(self._engine, "", text=True)  # for inspection; not checked
