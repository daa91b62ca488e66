"""Every error taskkit raises, in one place.

The tree::

    TaskkitError(Exception)
    ├── ExecutorClosed(RuntimeError)        submit after close()/shutdown()
    ├── BackendUnavailable(RuntimeError)    a backend whose extra is missing
    ├── InitializerFailed(BrokenExecutor)   a worker's initializer raised: the pool is broken
    ├── SchedulerStopped(RuntimeError)      the coroutine scheduler died of an internal error
    ├── UsageError(RuntimeError)            a call made where it cannot work
    │   └── BlockingCallError               a wait that would block the loop it waits for
    ├── TaskTimeout(TimeoutError)           a task overran its deadline
    ├── WorkerCrashed(RuntimeError)         the process running a task died
    ├── SerializationError(TypeError)       an argument or result would not pickle
    ├── RemoteError(RuntimeError)           a task's exception that could not be rebuilt
    ├── QueueClosed(Exception)              get() on a closed, drained queue
    ├── PipelineFailed(CalledProcessError)  a pipeline stage failed (pipefail)
    ├── PipelineTimeout(TimeoutExpired)     a pipeline overran its timeout
    └── Deadlock(RuntimeError)              no task can proceed (taskkit.testing)

Each error also subclasses the standard error it resembles, so existing
``except TimeoutError:`` or ``except subprocess.CalledProcessError:`` clauses
keep working.  Bad arguments raise the builtin ``ValueError`` or ``TypeError``
(see docs/errors.md for the few other standard errors taskkit keeps).  Errors
that cross a process boundary define ``__reduce__`` so they unpickle with the
same fields.
"""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .._pipeline import Completed, StageResult

__all__ = [
    "BackendUnavailable",
    "BlockingCallError",
    "Deadlock",
    "ExecutorClosed",
    "InitializerFailed",
    "PipelineFailed",
    "PipelineTimeout",
    "QueueClosed",
    "RemoteError",
    "RemoteTraceback",
    "SchedulerStopped",
    "SerializationError",
    "TaskTimeout",
    "TaskkitError",
    "UsageError",
    "WorkerCrashed",
    "describe_exit",
]


class TaskkitError(Exception):
    """Base class of every error taskkit raises."""

    # The attributes that rebuild the error, in its constructor's order: what pickling
    # hands back to the constructor when the error crosses a process boundary (a
    # worker's error on its way to the caller).  Empty: pickle it as Exception does.
    _rebuilt_from: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> str | tuple[Any, ...]:
        if not self._rebuilt_from:
            return super().__reduce__()
        return (type(self), tuple(getattr(self, name) for name in self._rebuilt_from))


class ExecutorClosed(TaskkitError, RuntimeError):
    """Work was submitted to an executor after ``close()`` or ``shutdown()``."""

    def __init__(self, message: str = "the executor is closed and accepts no new work") -> None:
        super().__init__(message)


class BackendUnavailable(TaskkitError, RuntimeError):
    """A backend was asked for that cannot run here (its extra is not installed)."""


class InitializerFailed(TaskkitError, concurrent.futures.BrokenExecutor):
    """A worker's ``initializer`` raised, so the pool cannot run tasks.

    Every task queued then, and every task submitted later, fails with this
    error (its ``__cause__`` is the initializer's exception), as the
    standard library's pools fail with ``BrokenExecutor``.

    Attributes:
        backend: the backend whose pool broke.
        reason: ``repr()`` of the initializer's exception.
    """

    _rebuilt_from = ("backend", "reason")

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(
            f"the {backend} pool's initializer failed: {reason}; the pool runs no tasks, "
            "open a new executor"
        )
        self.backend, self.reason = backend, reason


class SchedulerStopped(TaskkitError, RuntimeError):
    """The coroutine backend's scheduler stopped after an internal error.

    Its unfinished tasks fail with this error, and so does every later
    ``submit``; the cause is chained as ``__cause__``.
    """


class UsageError(TaskkitError, RuntimeError):
    """A taskkit call was made where it cannot work.

    For example ``join()`` on the executor's own event loop, ``result()`` of an
    unfinished coroutine task from inside the scheduler, or a pipeline's
    ``lines`` used outside their ``with`` block.  The message says what to do
    instead.  Bad *arguments* raise the builtin ``ValueError`` or ``TypeError``.
    """


class TaskTimeout(TaskkitError, TimeoutError):
    """A task did not finish within its per-task ``timeout``.

    Attributes:
        task: the task's name.
        timeout: the deadline, in seconds.
    """

    _rebuilt_from = ("task", "timeout", "detail")

    def __init__(self, task: str = "task", timeout: float | None = None, detail: str = "") -> None:
        limit = "its deadline" if timeout is None else f"its {timeout:g} s deadline"
        message = f"{task} did not finish within {limit}"
        if detail:
            message = f"{message}; {detail}"
        super().__init__(message)
        self.task, self.timeout, self.detail = task, timeout, detail


def describe_exit(exitcode: int | None) -> str:
    """Say in words why a process ended with ``exitcode`` (negative: killed by a signal)."""
    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"it exited with status {exitcode}"
    signum = -exitcode
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    causes = {
        signal.SIGKILL: "killed, often by the kernel's out-of-memory killer or by kill -9",
        signal.SIGSEGV: "a segmentation fault, usually in a C extension",
        signal.SIGBUS: "a bus error, usually in a C extension or a truncated memory map",
        signal.SIGABRT: "an abort, usually a failed assertion in C code",
        signal.SIGTERM: "terminated by another process",
        signal.SIGFPE: "an arithmetic fault in C code",
        signal.SIGILL: "an illegal instruction in C code",
    }
    cause = causes.get(signal.Signals(signum)) if name.startswith("SIG") else None
    return f"killed by {name}" + (f" ({cause})" if cause else "")


class WorkerCrashed(TaskkitError, RuntimeError):
    """The worker process running a task died before the task finished.

    Attributes:
        task: the task's name.
        pid: the worker's process id.
        exitcode: the worker's exit status; negative when killed by a signal.
        signal: the number of the signal that killed it, or ``None``.
        detail: why the parent killed it, if it did (it broke the protocol), else ``""``.
    """

    _rebuilt_from = ("task", "pid", "exitcode", "detail")

    def __init__(self, task: str, pid: int | None, exitcode: int | None, detail: str = "") -> None:
        how = describe_exit(exitcode) if exitcode is not None else "its exit status is unknown"
        if detail:  # the parent killed it, and says why
            message = f"worker {pid} running {task} was killed because {detail}"
        else:
            message = f"worker {pid} running {task} died ({how})"
        super().__init__(f"{message}; the pool replaced it and keeps running")
        self.task, self.pid, self.exitcode, self.detail = task, pid, exitcode, detail
        self.signal: int | None = -exitcode if exitcode is not None and exitcode < 0 else None


class SerializationError(TaskkitError, TypeError):
    """An argument or a result could not be serialised to cross a process boundary.

    Attributes:
        what: which value failed, e.g. ``"argument 2"``, ``"keyword 'key'"``, ``"result"``.
        type_name: the type of the value that failed.
    """

    _rebuilt_from = ("what", "type_name", "reason")

    def __init__(self, what: str, type_name: str, reason: str = "") -> None:
        message = f"{what} of type {type_name} cannot be serialised"
        if reason:
            message = f"{message}: {reason}"
        super().__init__(message)
        self.what, self.type_name, self.reason = what, type_name, reason


class RemoteError(TaskkitError, RuntimeError):
    """A task raised an exception that could not be rebuilt in the caller.

    Carries the original's type name, message and formatted traceback as text.
    """

    _rebuilt_from = ("type_name", "message", "traceback_text")

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        text = f"{type_name}: {message}"
        if traceback_text:
            text = f"{text}\n\nRemote traceback:\n{traceback_text}"
        super().__init__(text)
        self.type_name, self.message, self.traceback_text = type_name, message, traceback_text


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (a process's, a Dask worker's),
    chained as that exception's ``__cause__``, as ``concurrent.futures`` chains its own."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class QueueClosed(TaskkitError):
    """``get()`` on a closed queue with no items left, or ``put()`` after ``close()``."""

    def __init__(self, message: str = "the queue is closed") -> None:
        super().__init__(message)


class BlockingCallError(UsageError):
    """A call would have waited where waiting can never end, so it raised instead.

    On the thread of an executor's own event loop (the coroutine scheduler, the
    asyncio loop) a blocking wait stops every task of that loop, the one it waits
    for included: ``fut.result()``, ``q.get()`` or ``lock.acquire()`` there would
    hang.  So would ``join()`` or ``shutdown(wait=True)`` called from one of the
    executor's own tasks, which would wait for itself.  The message names what to
    use instead (``await fut``, ``await q.aget()``, ``async with``).
    """


class PipelineFailed(TaskkitError, subprocess.CalledProcessError):
    """A pipeline stage failed; the rightmost failing stage is reported, as pipefail does.

    Attributes:
        stage: the failing stage's ``StageResult``.
        result: the whole ``Completed`` pipeline result.
        returncode: the failing stage's return code (``-N`` if killed by signal N).
    """

    _rebuilt_from = ("stage", "result")

    def __init__(self, stage: StageResult[Any], result: Completed[Any]) -> None:
        subprocess.CalledProcessError.__init__(
            self, stage.returncode, list(stage.argv), result.stdout, stage.stderr
        )
        self.stage, self.result = stage, result

    def __str__(self) -> str:
        stage = self.stage
        tail = stage.stderr
        if isinstance(tail, bytes):
            tail = tail.decode("utf-8", "replace")
        tail = (tail or "").strip()
        lines = tail.splitlines()[-5:]
        message = (
            f"pipeline stage {stage.index} {list(stage.argv)!r} failed: "
            f"{describe_exit(stage.returncode)}"
        )
        if lines:
            message += "; its stderr ends with:\n  " + "\n  ".join(lines)
        return message


class PipelineTimeout(TaskkitError, subprocess.TimeoutExpired):
    """A pipeline did not finish within its timeout; every stage was killed.

    Attributes:
        result: the partial ``Completed`` result gathered before the kill.
    """

    _rebuilt_from = ("cmd", "timeout", "result")

    def __init__(self, argv: Any, timeout: float, result: Completed[Any] | None = None) -> None:
        stdout = result.stdout if result is not None else None
        subprocess.TimeoutExpired.__init__(self, argv, timeout, stdout)
        self.result = result

    def __str__(self) -> str:
        return (
            f"pipeline {self.cmd!r} did not finish within {self.timeout:g} s; "
            "every stage was killed"
        )


class Deadlock(TaskkitError, RuntimeError):
    """No task of a controlled run can proceed.

    Attributes:
        waiting: for each blocked task, a description of what it waits for.
    """

    def __init__(self, message: str, waiting: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.waiting = dict(waiting or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.waiting))
