"""What a pipeline run reports: one ``StageResult`` per stage, gathered in a ``Completed``."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, AnyStr, Generic, TypeAlias, final

__all__ = ["Completed", "Input", "Options", "Stage", "StageResult", "stage_ok"]

#: What ``run(input=...)`` accepts: bytes or str (str is encoded with ``encoding``), a binary
#: file (handed to the first stage as its stdin when it has a file descriptor), or an
#: iterable of bytes chunks (a generator works; it is consumed on a helper thread).
Input: TypeAlias = bytes | bytearray | memoryview | str | IO[bytes] | Iterable[bytes] | None


@final
@dataclass(frozen=True)
class Stage:
    """One program of a pipeline, as ``cmd()`` or ``shell()`` described it."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str | None], ...] = ()  # merged into os.environ; None removes a key
    ok_codes: frozenset[int] = frozenset({0})
    outlive_parent: bool = False  # keep running if the Python process that started it dies


@final
@dataclass(frozen=True)
class Options:
    """How one run of a pipeline behaves; built from the keywords of ``run`` and its twins."""

    input: Input = None
    timeout: float | None = None
    encoding: str = "utf-8"
    errors: str = "replace"
    stderr_limit: int | None = 1 << 20
    kill_grace: float = 2.0
    pty: bool = False
    unbuffered: bool = False


def stage_ok(returncode: int, ok_codes: frozenset[int], last: bool) -> bool:
    """Tell whether a stage that ended with ``returncode`` succeeded.

    A stage before the last one that died of SIGPIPE (or, run by a shell, exited with
    128 + SIGPIPE) did so because a later stage stopped reading, as ``head`` does: the
    shell's ``set -o pipefail`` would report it, but it is the normal way such a
    pipeline ends, so it counts as ok.
    """
    if returncode in ok_codes:
        return True
    return not last and returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


@final
@dataclass(frozen=True)
class StageResult(Generic[AnyStr]):
    """How one stage of a pipeline ended.

    Attributes:
        index: the stage's position, 0 for the first program.
        argv: the program and its arguments.
        pid: the process id the stage ran as.
        returncode: its exit status, or ``-N`` if signal N killed it.
        stderr: what it wrote to stderr (the last ``stderr_limit`` bytes of it); ``bytes``,
            or ``str`` when the run asked for ``text=True``.
        ok: whether the status counts as success: in the stage's ``ok_codes``, or a
            SIGPIPE death of a stage whose reader stopped reading.
    """

    index: int
    argv: tuple[str, ...]
    pid: int
    returncode: int
    stderr: AnyStr
    ok: bool

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed the stage, or ``None`` if it exited."""
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode)
        except ValueError:
            return None


@final
@dataclass(frozen=True)
class Completed(Generic[AnyStr]):
    """A finished pipeline: every stage's result and the last stage's stdout.

    Attributes:
        stages: one ``StageResult`` per stage, in pipeline order.
        stdout: what the last stage wrote (``bytes``, or ``str`` with ``text=True``).
    """

    stages: tuple[StageResult[AnyStr], ...]
    stdout: AnyStr

    @property
    def returncodes(self) -> list[int]:
        """Every stage's exit status, in order, as bash's ``PIPESTATUS`` lists them."""
        return [stage.returncode for stage in self.stages]

    @property
    def failed(self) -> StageResult[AnyStr] | None:
        """The rightmost stage that is not ok (as ``set -o pipefail`` picks), or ``None``."""
        for stage in reversed(self.stages):
            if not stage.ok:
                return stage
        return None
