"""The blocking face: ``Pipeline.run()`` and ``Pipeline.lines()``, driven by a selector."""

from __future__ import annotations

import selectors
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, final

from .._core._errors import UsageError
from ._common import LineSplitter, completed, raise_for_outcome
from ._engine import DRAIN_GRACE, Engine
from ._results import Completed, Options, Stage

__all__ = ["Lines", "run"]


class _SelectorReactor:
    """The engine's reactor for blocking calls: a selector waited on by the caller's thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def remove(self, fd: int) -> None:
        self._selector.unregister(fd)

    def wait(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(timeout):
            key.data()

    def close(self) -> None:
        self._selector.close()


def _step(engine: Engine, reactor: _SelectorReactor, deadline: float | None) -> bool:
    """Wait once for the pipeline to make progress; return False once ``deadline`` has passed."""
    now = time.monotonic()
    if deadline is not None and now >= deadline:
        return False
    reactor.wait(engine.wait_timeout(deadline, now))
    engine.poll_exits()
    return True


def _wait_done(engine: Engine, reactor: _SelectorReactor, deadline: float | None) -> bool:
    while not engine.done:
        if not _step(engine, reactor, deadline):
            return False
    return True


def _terminate(engine: Engine, reactor: _SelectorReactor) -> None:
    """SIGTERM the group, SIGKILL it after the grace period, then stop waiting on strays.

    A grandchild that left the group (a daemon calling setsid) can hold a pipe open
    forever; after SIGKILL the parent waits only ``DRAIN_GRACE`` for EOF.  If this is
    interrupted, ``Engine.close()`` still SIGKILLs and reaps.
    """
    engine.signal(signal.SIGTERM)
    if not _wait_done(engine, reactor, time.monotonic() + engine.options.kill_grace):
        engine.signal(signal.SIGKILL)
        _wait_done(engine, reactor, time.monotonic() + DRAIN_GRACE)


def _deadline(options: Options) -> float | None:
    return None if options.timeout is None else time.monotonic() + options.timeout


def run(stages: Sequence[Stage], options: Options, *, check: bool, text: bool) -> Completed[Any]:
    """Run the pipeline to its end and return (or raise) its outcome."""
    chunks: list[bytes] = []
    engine = Engine(stages, options, chunks.append)
    reactor = _SelectorReactor()
    finished = False
    try:
        try:
            engine.start(reactor)  # a Ctrl-C held back during the spawn is raised here
            finished = _wait_done(engine, reactor, _deadline(options))
            if not finished:
                _terminate(engine, reactor)
            elif engine.feeder is not None:
                engine.feeder.finished.wait(DRAIN_GRACE)
        except BaseException:  # Ctrl-C, or an error of ours: still stop the whole group
            _terminate(engine, reactor)
            raise
    finally:
        engine.close()
        reactor.close()
    done = completed(engine, b"".join(chunks), text=text)
    raise_for_outcome(engine, done, check=check, timed_out=not finished)
    return done


@final
class Lines(Iterator[str]):
    """The lines a pipeline's last stage writes, yielded as they arrive.

    Made by ``Pipeline.lines()``; the pipeline starts when the ``with`` block is entered.
    Iteration ends when the pipeline does, and then checks it as ``run(check=True)``
    would.  Leaving the block before that kills and reaps every stage and raises nothing.

    Attributes:
        result: the ``Completed`` once the pipeline has ended (its ``stdout`` is ``""``:
            the lines were handed out), else ``None``.
    """

    def __init__(self, stages: Sequence[Stage], options: Options, *, check: bool) -> None:
        self._stages, self._options, self._check = tuple(stages), options, check
        self._splitter = LineSplitter(options.encoding, options.errors)
        self._engine = Engine(self._stages, options, self._splitter.feed)
        self._reactor: _SelectorReactor | None = None
        self._deadline: float | None = None
        self._state = "new"  # -> "running" -> "ended"
        self.result: Completed[str] | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the stages, in pipeline order."""
        return tuple(proc.pid for proc in self._engine.procs)

    def __enter__(self) -> Lines:
        if self._state != "new":
            raise UsageError("a Lines object can be entered only once; call lines() again")
        self._reactor = reactor = _SelectorReactor()
        try:
            self._engine.start(reactor)
        except BaseException:
            self._state = "ended"
            try:
                _terminate(self._engine, reactor)
            finally:
                self._engine.close()
                reactor.close()
            raise
        self._deadline = _deadline(self._options)
        self._state = "running"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        if self._state == "new":
            raise UsageError("use the lines inside `with pipeline.lines() as lines:`")
        assert self._reactor is not None
        while not self._splitter:
            if self._state == "ended":
                raise StopIteration
            if self._engine.done:
                self._end(timed_out=False)
            elif not _step(self._engine, self._reactor, self._deadline):
                self._end(timed_out=True)
        return self._splitter.pop()

    def _end(self, *, timed_out: bool) -> None:
        assert self._reactor is not None
        self._state = "ended"
        try:
            if timed_out:
                _terminate(self._engine, self._reactor)
            elif self._engine.feeder is not None:
                self._engine.feeder.finished.wait(DRAIN_GRACE)
        finally:
            self._engine.close()
            self._reactor.close()
        self.result = completed(self._engine, "", text=True)
        raise_for_outcome(self._engine, self.result, check=self._check, timed_out=timed_out)

    def close(self) -> None:
        """Kill and reap every stage unless the pipeline has already ended; raise nothing."""
        if self._state != "running":
            return
        assert self._reactor is not None
        self._state = "ended"
        try:
            if not self._engine.done:
                _terminate(self._engine, self._reactor)
        finally:
            self._engine.close()
            self._reactor.close()
        self.result = completed(self._engine, "", text=True)  # for inspection; not checked
