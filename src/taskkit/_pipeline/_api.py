"""The public face of pipelines: ``cmd``, ``shell`` and ``Pipeline``."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, final, overload

from ._async import AsyncLines, arun
from ._engine import describe
from ._results import Completed, Input, Options, Stage
from ._sync import Lines, run

__all__ = ["Pipeline", "cmd", "shell"]

StrPath = str | os.PathLike[str]


def _options(
    input: Input,
    timeout: float | None,
    encoding: str,
    errors: str,
    stderr_limit: int | None,
    kill_grace: float,
    pty: bool,
    unbuffered: bool,
    /,
) -> Options:
    """Check the keywords of a run at once, before any process starts.

    Passed in the order of the keywords (and of ``Options``' fields).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    if kill_grace < 0:
        raise ValueError(f"kill_grace must be >= 0, not {kill_grace!r}")
    if stderr_limit is not None and stderr_limit < 0:
        raise ValueError(f"stderr_limit must be >= 0 or None, not {stderr_limit!r}")
    codecs.lookup(encoding)  # LookupError now rather than after the run
    codecs.lookup_error(errors)
    return Options(input, timeout, encoding, errors, stderr_limit, kill_grace, pty, unbuffered)


@final
class Pipeline:
    """Programs whose stdout feeds the next one's stdin, like ``a | b | c`` in a shell.

    Build one with ``cmd()`` or ``shell()`` and join them with ``|``; a single ``cmd()``
    is a one-stage pipeline.  A pipeline is an immutable description: each ``run()``,
    ``lines()``, ``arun()`` or ``alines()`` starts fresh processes.

    Every stage's stdin is the previous stage's stdout through an OS pipe; the first
    stage reads ``input=`` (or ``/dev/null``); the last stage's stdout is captured.  Each
    stage's stderr is captured separately.  The stages run in a process group of their
    own, so a timeout, a cancellation or leaving ``lines()`` early stops whatever they
    started too (and Ctrl-C at a terminal reaches taskkit, which then stops them).
    """

    __slots__ = ("_stages",)

    def __init__(self, *parts: Pipeline) -> None:
        """Join ``parts`` into one pipeline: ``Pipeline(a, b)`` is ``a | b``."""
        if not parts:
            raise ValueError("a pipeline needs at least one stage; build one with cmd() or shell()")
        for part in parts:
            if not isinstance(part, Pipeline):
                raise TypeError(f"Pipeline() joins pipelines, not {type(part).__name__}")
        self._stages: tuple[Stage, ...] = tuple(s for part in parts for s in part._stages)

    @classmethod
    def _of(cls, stage: Stage) -> Pipeline:
        pipeline = cls.__new__(cls)
        pipeline._stages = (stage,)
        return pipeline

    def __or__(self, other: Pipeline) -> Pipeline:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return Pipeline(self, other)

    @property
    def argv(self) -> tuple[tuple[str, ...], ...]:
        """Each stage's program and arguments, in order."""
        return tuple(stage.argv for stage in self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self._stages == other._stages

    def __hash__(self) -> int:
        return hash(self._stages)

    def __str__(self) -> str:
        return describe(self._stages)

    def __repr__(self) -> str:
        return f"<Pipeline {describe(self._stages)!r}>"

    # -- run ----------------------------------------------------------------------------

    @overload
    def run(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: Literal[False] = False,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[bytes]: ...

    @overload
    def run(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: Literal[True],
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[str]: ...

    @overload
    def run(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: bool,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[Any]: ...

    def run(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: bool = False,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[Any]:
        """Run the pipeline to its end: ``(cmd("ls") | cmd("wc", "-l")).run()`` runs ``ls | wc -l``.

        Args:
            input: what the first stage reads: ``bytes``; ``str`` (encoded with
                ``encoding``); a binary file (one with a file descriptor becomes the
                stage's stdin directly); or an iterable of ``bytes`` chunks.  It is
                written on a helper thread, so a large input never blocks the reading
                of outputs; a stage that exits before reading all of it is fine.
                ``None`` (the default) gives the first stage ``/dev/null``.
            timeout: seconds for the whole pipeline.  When they pass, the process
                group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds, and
                ``PipelineTimeout`` is raised with the partial result.
            check: raise ``PipelineFailed`` if a stage is not ok (pipefail).
            text: decode stdout and every stderr with ``encoding`` and ``errors``.
            encoding: the codec for ``text``, for ``str`` input, and for ``lines()``.
            errors: the codec error handler; ``"replace"`` never raises on bad bytes.
            stderr_limit: bytes of each stage's stderr to keep (the end of it);
                ``None`` keeps all of it.  Stderr is always read to its end, whatever
                its size, so no stage blocks writing it.
            kill_grace: seconds between SIGTERM and SIGKILL when the pipeline is stopped.
            pty: give the last stage a pseudo-terminal for stdout instead of a pipe, so
                programs that buffer output written to pipes write each line at once.
            unbuffered: set ``PYTHONUNBUFFERED=1`` for every stage (Python children
                then write output at once).

        Returns:
            ``Completed``: ``stdout`` of the last stage, and one ``StageResult`` per stage.

        Raises:
            PipelineFailed: ``check`` is true and a stage failed; the rightmost failing
                stage is reported, as ``set -o pipefail`` does.  A stage killed by
                SIGPIPE because a later stage stopped reading is not a failure.
            PipelineTimeout: ``timeout`` passed; every stage has been killed and reaped.
            FileNotFoundError: a program is not on PATH; no stage was started.
        """
        options = _options(
            input, timeout, encoding, errors, stderr_limit, kill_grace, pty, unbuffered
        )
        return run(self._stages, options, check=check, text=text)

    @overload
    async def arun(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: Literal[False] = False,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[bytes]: ...

    @overload
    async def arun(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: Literal[True],
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[str]: ...

    @overload
    async def arun(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: bool,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[Any]: ...

    async def arun(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        text: bool = False,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Completed[Any]:
        """Run the pipeline on the running loop; ``await p.arun()`` returns what ``p.run()`` does.

        Takes the same arguments as ``run()`` and gives the same guarantees.  Cancelling
        the awaiting task (``asyncio.timeout()``, ``TaskGroup``) stops the process group
        as a timeout does (SIGTERM, SIGKILL after ``kill_grace``) and reaps every stage
        before the cancellation propagates.
        """
        options = _options(
            input, timeout, encoding, errors, stderr_limit, kill_grace, pty, unbuffered
        )
        return await arun(self._stages, options, check=check, text=text)

    # -- lines --------------------------------------------------------------------------

    def lines(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> Lines:
        """Yield the last stage's stdout line by line while the pipeline runs.

        ``with p.lines() as lines: for line in lines: ...``.  Lines come without their
        line ending, decoded with ``encoding`` and ``errors``, however long they are.
        When the pipeline ends the result is checked as ``run(check=True)`` would (the
        ``for`` loop raises ``PipelineFailed``); ``timeout`` is checked while iterating.
        Leaving the block early kills and reaps every stage and raises nothing.

        A line reaches you as soon as the child writes it, but many programs hold output
        written to a pipe in a buffer (Python's is 8 KiB) and write it only when full or
        at exit.  Use ``unbuffered=True`` for Python children, ``pty=True`` for programs
        that flush each line when writing to a terminal, or the program's own option
        (``grep --line-buffered``, ``stdbuf -oL``).  Takes the arguments of ``run()``
        except ``text``.
        """
        options = _options(
            input, timeout, encoding, errors, stderr_limit, kill_grace, pty, unbuffered
        )
        return Lines(self._stages, options, check=check)

    def alines(
        self,
        *,
        input: Input = None,
        timeout: float | None = None,
        check: bool = True,
        encoding: str = "utf-8",
        errors: str = "replace",
        stderr_limit: int | None = 1 << 20,
        kill_grace: float = 2.0,
        pty: bool = False,
        unbuffered: bool = False,
    ) -> AsyncLines:
        """Yield lines as ``lines()`` does: ``async with p.alines() as lines: async for ...``."""
        options = _options(
            input, timeout, encoding, errors, stderr_limit, kill_grace, pty, unbuffered
        )
        return AsyncLines(self._stages, options, check=check)


def _stage(
    argv: list[str],
    cwd: StrPath | None,
    env: Mapping[str, str | None] | None,
    ok_codes: Iterable[int],
    outlive_parent: bool,
) -> Pipeline:
    codes = frozenset(ok_codes)
    if not all(isinstance(code, int) for code in codes):
        raise TypeError(f"ok_codes must be integers, not {sorted(map(repr, codes))}")
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise TypeError(
                f"env entries must be str to str (or None to remove), not {key!r}: {value!r}"
            )
    return Pipeline._of(
        Stage(
            argv=tuple(argv),
            cwd=None if cwd is None else os.fspath(cwd),
            env=tuple((env or {}).items()),
            ok_codes=codes,
            outlive_parent=bool(outlive_parent),
        )
    )


def cmd(
    program: StrPath,
    *args: StrPath,
    cwd: StrPath | None = None,
    env: Mapping[str, str | None] | None = None,
    ok_codes: Iterable[int] = (0,),
    outlive_parent: bool = False,
) -> Pipeline:
    """Describe one program run with ``args``, with no shell: ``cmd("ls", "-l")``.

    Args:
        program: the program, found on PATH unless it contains a ``/``.
        args: its arguments, each passed as it is (no quoting, no globbing).
        cwd: the directory to run it in (``str`` or a path).
        env: variables added to (or, with ``None`` as the value, removed from) the
            parent's environment for this program.
        ok_codes: exit statuses that count as success.
        outlive_parent: keep the program running if the Python process that started
            it dies (by default, on Linux, it is killed with SIGKILL then).

    Returns:
        A one-stage ``Pipeline``; join it to others with ``|``.
    """
    argv = []
    for position, arg in enumerate((program, *args)):
        if not isinstance(arg, (str, os.PathLike)):
            raise TypeError(
                f"cmd() argument {position} is {type(arg).__name__} {arg!r}; pass str"
                f" (e.g. str({arg!r}))"
            )
        value = os.fspath(arg)
        if not isinstance(value, str):
            raise TypeError(f"cmd() argument {position} is a bytes path; pass str")
        argv.append(value)
    if not argv[0]:
        raise ValueError("cmd() needs a program name")
    return _stage(argv, cwd, env, ok_codes, outlive_parent)


def shell(
    script: str,
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str | None] | None = None,
    ok_codes: Iterable[int] = (0,),
    outlive_parent: bool = False,
) -> Pipeline:
    """Describe a ``/bin/sh -c script`` stage: the only way taskkit runs a shell.

    Use it when you want shell syntax (globs, redirections, ``&&``); quote any value
    you put into ``script`` with ``shlex.quote``, or pass it through ``env`` and write
    ``"$NAME"`` in the script.  Takes ``cmd()``'s keywords and pipes like it.
    """
    if not isinstance(script, str):
        raise TypeError(f"shell() takes the script as one str, not {type(script).__name__}")
    return _stage(["/bin/sh", "-c", script], cwd, env, ok_codes, outlive_parent)
