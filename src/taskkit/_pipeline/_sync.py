"""The blocking face: ``Pipeline.run()`` and ``Pipeline.lines()``, driven by a selector.

The steps are ``_steps``'; this face's reactor waits on a selector in the caller's
thread, so they never yield and ``blocking`` runs each through at once.
"""

from __future__ import annotations

import selectors
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast, final

from . import _steps
from ._engine import DRAIN_GRACE
from ._results import Completed, Options, Stage
from ._steps import LinesSteps, Steps

__all__ = ["Lines", "run"]

T = TypeVar("T")


class _SelectorReactor:
    """The steps' reactor for blocking calls: a selector waited on by the caller's thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def remove(self, fd: int) -> None:
        self._selector.unregister(fd)

    def wait(self, timeout: float | None) -> tuple[()]:
        for key, _ in self._selector.select(timeout):
            key.data()
        return ()  # waited already: nothing to yield

    def wait_feeder(self, finished: threading.Event) -> tuple[()]:
        finished.wait(DRAIN_GRACE)
        return ()

    def close(self) -> None:
        self._selector.close()


def blocking(steps: Steps[T]) -> T:
    """Run ``steps`` through: with a ``_SelectorReactor`` they wait without yielding."""
    try:
        next(steps)
    except StopIteration as stop:
        return cast("T", stop.value)
    raise AssertionError("a blocking pipeline step yielded")


def run(stages: Sequence[Stage], options: Options, *, check: bool, text: bool) -> Completed[Any]:
    """Run the pipeline to its end and return (or raise) its outcome."""
    return blocking(_steps.run(stages, options, _SelectorReactor(), check=check, text=text))


@final
class Lines(LinesSteps, Iterator[str]):
    """The lines a pipeline's last stage writes, yielded as they arrive.

    Made by ``Pipeline.lines()``; the pipeline starts when the ``with`` block is entered.
    Iteration ends when the pipeline does, and then checks it as ``run(check=True)``
    would.  Leaving the block before that kills and reaps every stage and raises nothing.

    Attributes:
        result: the ``Completed`` once the pipeline has ended (its ``stdout`` is ``""``:
            the lines were handed out), else ``None``.
    """

    _ENTERED_TWICE = "a Lines object can be entered only once; call lines() again"
    _NOT_ENTERED = "use the lines inside `with pipeline.lines() as lines:`"

    def __enter__(self) -> Lines:
        blocking(self._start(_SelectorReactor))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        line = self._splitter.pop() if self._splitter else blocking(self._next_line())
        if line is None:
            raise StopIteration
        return line

    def close(self) -> None:
        """Kill and reap every stage unless the pipeline has already ended; raise nothing."""
        blocking(self._close())
