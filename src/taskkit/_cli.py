"""``python -m taskkit map MODULE:FUNCTION [INPUT ...]``: run a function over inputs from the shell.

In the spirit of GNU parallel and ``xargs -P``::

    arguments | --input FILE | stdin ──► Source: numbers each text, keeps it until reported
        ──► ex.options(timeout, retries).map(call, numbers, texts, return_exceptions=True)
        ──► (number, result) or CallFailed(number, error) or a bare error, as each call ends
        ──► Report: a result line (or JSON line) on stdout; failures summed up on stderr

``map`` yields outcomes without the inputs they belong to, so each call goes
through ``call_sync``/``call_async``: it loads FUNCTION in whichever process runs
it (from ``Target``, so every start method and Dask work), returns the input's
number with the result, and wraps the function's exception in ``CallFailed``
with that number.  An error raised outside the function (a per-call timeout, a
crashed worker, a result that cannot be pickled) carries no number: in input
order it belongs to the next input; as results finish, it is matched at the end
with the inputs that never reported (see ``Report.finish``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import count
from typing import IO, Any, TextIO

from ._backends import BackendName
from ._core._executor import is_async_callable

__all__ = ["CallFailed", "Target", "UsageError", "add_map_parser", "call_async", "call_sync", "run"]

PROG = "python -m taskkit map"

EPILOG = """\
examples:
  python -m taskkit map mymodule:work 1 2 3
      work("1"), work("2"), work("3") in worker processes; results as they finish
  seq 100 | python -m taskkit map mymodule:work -j 4 --keep-order
      one input per line of standard input, 4 calls at once, results in input order
  python -m taskkit map tools/resize.py:resize -a files.txt --backend thread
      a function in a file, on threads (for I/O-bound work), inputs read from files.txt
  find . -name '*.csv' -print0 | python -m taskkit map stats.py:summary -0 --json
      NUL-separated inputs; JSON lines {"input": ..., "result": ...} or {..., "error": ...}
  python -m taskkit map mymodule:fetch --timeout 10 --retries 2 --progress < urls.txt
      each call has 10 s, failures are tried twice more, a progress bar on stderr

Each input is passed to FUNCTION as one str argument (a line without its newline);
each result is printed with str() on a line of its own (a result of None prints
nothing).  A failing call does not stop the others: what failed is summed up on
standard error at the end.  Ctrl-C stops every running call at once.

exit status: 0 every call succeeded, 1 some call failed, 2 usage error,
130 interrupted, 141 standard output closed."""

# The failures the summary lists one by one; the rest are counted.
_SUMMARY_LINES = 20


class UsageError(Exception):
    """The command line asks for something that cannot run (exit status 2)."""


class _OutputClosed(BaseException):
    """Standard output was closed (``... | head``): leave the executor as Ctrl-C does.

    A ``BaseException`` so that leaving the ``with`` block kills the running
    calls instead of waiting for them, as for ``KeyboardInterrupt``.
    """


# ------------------------------------------------------------------ the function


@dataclass(frozen=True)
class Target:
    """FUNCTION in MODULE, where MODULE is a module name or a path to a ``.py`` file.

    Attributes:
        module: the module's dotted name, or the path of its file.
        function: the function's name in the module (dotted for a method: ``Class.method``).
        root: the directory the command ran in, where names and paths are looked up.
    """

    module: str
    function: str
    root: str

    @classmethod
    def parse(cls, spec: str, root: str) -> Target:
        """Read ``MODULE:FUNCTION``."""
        module, sep, function = spec.rpartition(":")
        if not sep or not module or not function:
            raise UsageError(
                "expected MODULE:FUNCTION (e.g. mymodule:work or path/to/file.py:work), "
                f"got {spec!r}"
            )
        return cls(module, function, root)

    @property
    def is_path(self) -> bool:
        """True if ``module`` names a file rather than an importable module."""
        return self.module.endswith(".py") or os.sep in self.module or "/" in self.module

    def load(self) -> Callable[..., Any]:
        """Import the module (once per process) and return the function.

        Raises:
            UsageError: the module cannot be imported, or has no such callable.
        """
        loaded = _functions.get(self)
        if loaded is None:
            loaded = _functions[self] = self._load()
        return loaded

    def _load(self) -> Callable[..., Any]:
        try:
            module = self._import()
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"cannot import {self.module}: {_describe(exc)}") from None
        found: Any = module
        for part in self.function.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                raise UsageError(f"{self.module} has no function {self.function!r}") from None
        if not callable(found):
            raise UsageError(
                f"{self.module}:{self.function} is a {type(found).__name__}, not a function"
            )
        return found  # type: ignore[no-any-return]

    def _import(self) -> Any:
        if not self.is_path:
            # As `python -m` does: modules in the directory the command ran in come first.
            if self.root not in sys.path:
                sys.path.insert(0, self.root)
            return importlib.import_module(self.module)
        path = os.path.join(self.root, self.module)
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {self.module}")
        # As `python path/to/file.py` does: the file's directory is searched for its imports.
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in sys.path:
            sys.path.insert(0, directory)
        # A name of its own, so that a file called json.py does not replace the json module;
        # registered, so that what the file defines pickles by reference.
        stem = os.path.splitext(os.path.basename(path))[0]
        name = f"__taskkit_map_{stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {self.module}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


# The functions loaded in this process, by target: each worker imports the module once.
_functions: dict[Target, Callable[..., Any]] = {}


class CallFailed(Exception):
    """The function failed on input number ``index``; ``error`` says how, in words.

    Words, not the exception itself: any exception can be described, not every one
    can be pickled back from a worker process.
    """

    def __init__(self, index: int, error: str) -> None:
        super().__init__(index, error)
        self.index, self.error = index, error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.index, self.error))


def call_sync(target: Target, index: int, text: str) -> tuple[int, Any]:
    """Return ``(index, FUNCTION(text))``; a failure is raised as ``CallFailed``."""
    try:
        return index, target.load()(text)
    except Exception as exc:
        raise CallFailed(index, _describe(exc)) from exc


async def call_async(target: Target, index: int, text: str) -> tuple[int, Any]:
    """``call_sync`` for an ``async def`` FUNCTION: return ``(index, await FUNCTION(text))``."""
    try:
        return index, await target.load()(text)
    except Exception as exc:
        raise CallFailed(index, _describe(exc)) from exc


def _task_number(error: BaseException) -> int | None:
    """N, for an error about the task named ``FUNCTION#N`` (``TaskTimeout``, ``WorkerCrashed``)."""
    _, sep, number = str(getattr(error, "task", "")).rpartition("#")
    return int(number) if sep and number.isdigit() else None


def _describe(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# -------------------------------------------------------------------- the inputs


class Source:
    """The input texts, numbered as ``map`` reads them, each kept until its outcome is reported.

    ``len()`` works when the number of inputs is known, so the progress bar has a total.
    """

    def __init__(self, texts: Iterable[str], length: int | None) -> None:
        self._texts, self._length = texts, length
        self.unreported: dict[int, str] = {}

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the number of inputs is not known in advance")
        return self._length

    def __iter__(self) -> Iterator[str]:
        for index, text in enumerate(self._texts):
            self.unreported[index] = text
            yield text

    def numbers(self) -> Iterable[int]:
        """The inputs' numbers, to map in step with the texts."""
        return count() if self._length is None else range(self._length)


def _lines(stream: IO[str]) -> Iterator[str]:
    with stream:
        for line in stream:
            yield line[:-1] if line.endswith("\n") else line


def _null_separated(stream: IO[str]) -> Iterator[str]:
    with stream:
        rest = ""
        while chunk := stream.read(65536):
            items = (rest + chunk).split("\0")
            rest = items.pop()
            yield from items
        if rest:
            yield rest


def _open_source(args: argparse.Namespace, stdin: TextIO | None) -> Source:
    """The inputs the command line names: its arguments, ``--input`` files, or standard input."""
    if args.inputs and args.input:
        raise UsageError("give inputs as arguments or with --input, not both")
    if args.inputs:
        texts: list[str] = args.inputs
        return Source(texts, len(texts))
    names: list[str] = args.input or []
    if not names:
        if stdin is None or stdin.isatty():
            raise UsageError(
                "no inputs: give them as arguments, with --input FILE, or on standard input"
            )
        names = ["-"]
    if names.count("-") > 1:
        raise UsageError("standard input can be read only once")
    streams: list[IO[str]] = []
    for name in names:
        if name == "-":
            if stdin is None:
                raise UsageError("standard input is closed")
            streams.append(stdin)
            continue
        try:
            streams.append(open(name, encoding="utf-8"))  # noqa: SIM115 - closed by the reader
        except OSError as exc:
            for stream in streams:
                stream.close()
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    split = _null_separated if args.null else _lines
    return Source((text for stream in streams for text in split(stream)), None)


# ------------------------------------------------------------------- the outcome


class Report:
    """Writes each outcome as it arrives, and sums up the failures at the end."""

    def __init__(self, source: Source, ordered: bool, as_json: bool, out: TextIO) -> None:
        self._source, self._ordered, self._json, self._out = source, ordered, as_json, out
        self._next = 0  # in input order: the input the next outcome belongs to
        self._unmatched: list[BaseException] = []  # as they finish: errors with no number
        self.calls = 0
        self.failed = 0
        self._listed: list[tuple[str, str]] = []

    def add(self, outcome: Any) -> None:
        """Account for one outcome of ``map(call_sync, ...)``."""
        if isinstance(outcome, CallFailed):
            self._report(outcome.index, error=outcome.error)
        elif isinstance(outcome, BaseException):
            if self._ordered:
                self._report(self._next, error=_describe(outcome))
            else:
                self._unmatched.append(outcome)
        else:
            index, result = outcome
            self._report(index, result=result)

    def finish(self) -> None:
        """Report the errors raised outside the function, once every other outcome is in."""
        # What is left unreported is exactly the inputs those errors belong to.  A call that
        # is a task of its own (as with a per-call timeout) is named FUNCTION#N, numbered in
        # submission order, which is input order: sorted by N, the errors pair exactly.
        # Otherwise (workers died running chunks) they pair in the order they came, which
        # can swap the messages of two crashes.
        errors = self._unmatched
        numbered = [(number, e) for e in errors if (number := _task_number(e)) is not None]
        if len(numbered) == len(errors):
            errors = [error for _, error in sorted(numbered, key=lambda pair: pair[0])]
        for index, error in zip(sorted(self._source.unreported), errors, strict=False):
            self._report(index, error=_describe(error))
        self._unmatched = []

    def _report(self, index: int, *, result: Any = None, error: str | None = None) -> None:
        text = self._source.unreported.pop(index)
        self._next = index + 1
        self.calls += 1
        if error is not None:
            self.failed += 1
            if len(self._listed) < _SUMMARY_LINES:
                self._listed.append((text, error))
        if self._json:
            record = {"input": text}
            if error is None:
                record["result"] = result
            else:
                record["error"] = error
            line = json.dumps(record, ensure_ascii=False, default=repr)
        elif error is None and result is not None:
            line = str(result)
        else:
            return
        try:
            self._out.write(line + "\n")
        except BrokenPipeError:
            raise _OutputClosed from None

    def summary(self) -> str:
        """What failed, for standard error; empty if nothing did."""
        if not self.failed:
            return ""
        lines = [f"{PROG}: {self.failed} of {self.calls} calls failed:"]
        # One line each: the first of the error's message.
        lines += [f"  {text!r}: {error.partition(chr(10))[0]}" for text, error in self._listed]
        if self.failed > len(self._listed):
            lines.append(f"  ... and {self.failed - len(self._listed)} more")
        return "\n".join(lines)


# ------------------------------------------------------------------ the command


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _chunksize(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def add_map_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``map`` subcommand to ``python -m taskkit``'s subparsers, and return its parser.

    Parse with the returned parser's ``parse_intermixed_args``, so that options may
    follow the inputs (``map mod:fn 1 2 3 -j 2``).
    """
    from . import BACKENDS

    parser = commands.add_parser(
        "map",
        help="run MODULE:FUNCTION on each input, concurrently (like GNU parallel)",
        description="Run FUNCTION on each input concurrently and print each result on a line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="a module importable from here, or a path to a .py file, and a function in it",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="the inputs (default: standard input)"
    )
    parser.add_argument(
        "-a",
        "--input",
        action="append",
        metavar="FILE",
        help="read inputs from FILE, one per line ('-' for standard input); may repeat",
    )
    parser.add_argument(
        "-0",
        "--null",
        action="store_true",
        help="inputs read from files or standard input end with NUL, not newline",
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="where calls run (default: process, for CPU-bound functions; "
        "asyncio for an async def function); 'thread' suits I/O-bound ones",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="calls run at once (default: the backend's, the number of CPUs for processes)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="deadline of each call (attempt)"
    )
    parser.add_argument(
        "--retries", type=_count, default=0, metavar="N", help="re-runs of a failing call"
    )
    parser.add_argument(
        "-k",
        "--keep-order",
        action="store_true",
        help="print results in input order (default: as they finish)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON lines: {"input": ..., "result": ...} or {"input": ..., "error": ...}',
    )
    parser.add_argument(
        "--chunksize",
        type=_chunksize,
        default=1,
        metavar="N|auto",
        help="inputs sent to a worker at once (default: 1, each input alone; "
        "'auto' batches many tiny calls, as map does)",
    )
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar on standard error (tqdm)"
    )
    parser.set_defaults(command="map")
    return parser  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    """Run the ``map`` subcommand; return its exit status."""
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; every running call was stopped", file=sys.stderr)
        return 130
    except _OutputClosed:
        # Python would report the closed pipe again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def _run(args: argparse.Namespace) -> int:
    import taskkit

    target = Target.parse(args.target, os.getcwd())
    fn = target.load()
    source = _open_source(args, sys.stdin)
    if args.progress:
        try:
            import tqdm  # noqa: F401 - map imports it; fail here, before any call runs
        except ImportError:
            raise UsageError('--progress needs tqdm: pip install "taskkit[progress]"') from None
    is_async = is_async_callable(fn)
    backend: BackendName = args.backend or ("asyncio" if is_async else "process")
    call: Any = functools.partial(call_async if is_async else call_sync, target)
    call.__qualname__ = target.function  # tasks are named after the function, FUNCTION#N
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(line_buffering=True)  # each result reaches a pipe as soon as it is ready
    report = Report(source, args.keep_order, args.json, out)
    try:
        executor = taskkit.open_executor(backend, max_workers=args.jobs)
    except (ValueError, taskkit.BackendUnavailable) as exc:
        raise UsageError(str(exc)) from None
    with executor:
        outcomes = executor.options(timeout=args.timeout, retries=args.retries).map(
            call,
            source.numbers(),
            source,
            ordered=args.keep_order,
            chunksize=args.chunksize,
            progress=args.progress,
            return_exceptions=True,
        )
        try:
            for outcome in outcomes:
                report.add(outcome)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the input: {_describe(exc)}") from None
        report.finish()
    try:
        out.flush()
    except BrokenPipeError:
        raise _OutputClosed from None
    summary = report.summary()
    if summary:
        print(summary, file=sys.stderr)
    return 1 if report.failed else 0
