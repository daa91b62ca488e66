"""What the sync and async faces share: splitting stdout into lines, and ending a run."""

from __future__ import annotations

import codecs
import logging
from collections import deque
from typing import Any

from taskkit._core._errors import PipelineFailed, PipelineTimeout

from ._engine import Engine
from ._results import Completed, StageResult

__all__ = ["HIGH_WATER", "LineSplitter", "completed", "raise_for_outcome"]

_log = logging.getLogger("taskkit.pipeline")

HIGH_WATER = 1 << 20  # characters of undelivered lines before an async reader pauses stdout


class LineSplitter:
    """Decode stdout incrementally and cut it into lines, however long a line is.

    A line is yielded without its ``"\\n"`` (or ``"\\r\\n"``); an unterminated last line is
    yielded too.  Partial lines are kept as a list of pieces, so a line that arrives in a
    thousand chunks costs one join, not a thousand copies.
    """

    def __init__(self, encoding: str, errors: str) -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors)
        self._pieces: list[str] = []
        self._ready: deque[str] = deque()
        self.size = 0  # characters held in ready lines

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout; ``b""`` means EOF."""
        final = not data
        text = self._decoder.decode(data, final)
        if "\n" in text:
            parts = text.split("\n")
            self._pieces.append(parts[0])
            parts[0] = "".join(self._pieces)
            tail = parts.pop()
            self._pieces = [tail] if tail else []
            for line in parts:
                self._push(line)
        elif text:
            self._pieces.append(text)
        if final and self._pieces:
            self._push("".join(self._pieces))
            self._pieces = []

    def _push(self, line: str) -> None:
        if line.endswith("\r"):
            line = line[:-1]
        self._ready.append(line)
        self.size += len(line)

    def __bool__(self) -> bool:
        return bool(self._ready)

    def pop(self) -> str:
        line = self._ready.popleft()
        self.size -= len(line)
        return line


def completed(engine: Engine, stdout: bytes | str, *, text: bool) -> Completed[Any]:
    """Build the ``Completed`` of a closed engine; stderr decoded when ``text``."""
    stages: tuple[StageResult[Any], ...] = engine.results()
    if text:
        encoding, errors = engine.options.encoding, engine.options.errors
        stages = tuple(
            StageResult(
                s.index, s.argv, s.pid, s.returncode, s.stderr.decode(encoding, errors), s.ok
            )
            for s in stages
        )
        if isinstance(stdout, bytes):
            stdout = stdout.decode(encoding, errors)
    return Completed(stages, stdout)


def raise_for_outcome(
    engine: Engine, done: Completed[Any], *, check: bool, timed_out: bool
) -> None:
    """Raise what the run's end calls for: timeout first, then a broken input, then pipefail."""
    if timed_out:
        timeout = engine.options.timeout
        _log.warning("%s timed out after %s s", engine.describe(), timeout)
        raise PipelineTimeout(engine.describe(), timeout if timeout is not None else 0.0, done)
    if engine.feeder is not None and engine.feeder.error is not None:
        _log.warning("%s: writing its input failed: %r", engine.describe(), engine.feeder.error)
        raise engine.feeder.error
    if done.failed is not None:
        failed = done.failed
        _log.log(
            logging.WARNING if check else logging.INFO,
            "%s: stage %d %s exited with status %s",
            engine.describe(),
            failed.index,
            failed.argv[0] if failed.argv else "?",
            failed.returncode,
        )
    if check and done.failed is not None:
        raise PipelineFailed(done.failed, done)
