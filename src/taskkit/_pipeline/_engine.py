"""Start a pipeline's processes and move its bytes; shared by the sync and async faces.

Data flow for ``cmd("a") | cmd("b") | cmd("c")``::

    input ─(feeder thread)─▶ pipe ─▶ a ──pipe──▶ b ──pipe──▶ c ─▶ pipe (or pty) ─▶ sink
                                     │ fd 2      │ fd 2      │ fd 2
                                     ▼           ▼           ▼
                                  stderr[0]   stderr[1]   stderr[2]     (bounded tails)
    pidfd(a), pidfd(b), pidfd(c) ─▶ exited[i]  (readable once the stage has exited)

The stages talk through OS pipes: no byte between two stages passes through Python.
The parent closes every end it handed to a child right after the spawn, so a stage
sees EOF or SIGPIPE exactly when its neighbour is gone.  What the parent keeps is drawn
at the edges: the write end of the first stage's stdin (owned by the feeder thread,
blocking), and the read ends of the last stdout, of every stderr, and the pidfds,
which are non-blocking and watched by a reactor: a selector for ``run``/``lines``, the
event loop for ``arun``/``alines``.  O_NONBLOCK belongs to an open file description and
each pipe end is its own description, so the children's ends stay blocking.

When the parent dies (SIGKILL, a crash) it can no longer stop its stages, so on Linux
each stage asks the kernel, before it execs, for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), unless it was made with ``outlive_parent=True``.  The
kernel means the parent *thread*: so stages are started by one long-lived thread,
``taskkit-pipeline-spawner``, never by the caller's thread, which may end long before
the pipeline does (a ``lines()`` handed to another thread, a pool thread).

All stages share one process group led by stage 0, so one ``killpg`` reaches the
stages and whatever they started.  No stage is reaped before ``close()``, and stage 0
last: while it is unreaped the group id cannot be reused, so a ``killpg`` cannot hit
an unrelated group.  (Without pidfds, before Linux 5.3, exits are polled by reaping.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import Any, Protocol

from ._results import Input, Options, Stage, StageResult, stage_ok

__all__ = ["DRAIN_GRACE", "Engine", "Reactor"]

_READ_SIZE = 1 << 16  # a pipe holds 64 KiB by default; one read can empty it
_WRITE_SIZE = 1 << 18  # between two writes the feeder checks whether to stop
_POLL_INTERVAL = 0.01  # how often exits are polled where pidfds are missing
DRAIN_GRACE = 0.25  # after SIGKILL, how long to wait for EOF on pipes strays may hold


class Reactor(Protocol):
    """Calls a callback when a file descriptor becomes readable."""

    def add(self, fd: int, callback: Callable[[], None]) -> None: ...

    def remove(self, fd: int) -> None: ...


def _chunks(source: Input, encoding: str) -> Iterator[bytes | bytearray | memoryview]:
    """Turn an ``input=`` value that needs feeding into byte chunks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield source
    elif isinstance(source, str):
        yield source.encode(encoding)
    elif hasattr(source, "read"):
        while chunk := source.read(_WRITE_SIZE):  # type: ignore[union-attr]
            yield chunk.encode(encoding) if isinstance(chunk, str) else chunk
    elif source is not None:
        for chunk in source:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"input iterables must yield bytes, not {type(chunk).__name__}")
            yield chunk


def _file_descriptor(source: Input) -> int | None:
    """Return the fd of a real file passed as ``input=``, or ``None`` if it has none."""
    if isinstance(source, (bytes, bytearray, memoryview, str)) or not hasattr(source, "read"):
        return None
    try:
        return int(source.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # io.BytesIO raises UnsupportedOperation
        return None


class _Feeder:
    """Write ``input=`` into the first stage's stdin on a thread of its own.

    Blocking writes on a separate thread mean a slow consumer or a slow generator never
    holds up the reads of stdout and stderr, which is what would deadlock otherwise.
    A stage that exits before reading all its input is normal (``head``): the write
    fails with EPIPE and the feeder stops quietly.
    """

    def __init__(self, fd: int, source: Input, encoding: str) -> None:
        self._fd, self._source, self._encoding = fd, source, encoding
        self._stop = False
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="taskkit-pipeline-input", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            for chunk in _chunks(self._source, self._encoding):
                view = memoryview(chunk).cast("B")
                while view and not self._stop:
                    written = os.write(self._fd, view[:_WRITE_SIZE])
                    view = view[written:]
                if self._stop:
                    break
        except BrokenPipeError:
            pass  # the first stage stopped reading: not an error
        except BaseException as exc:  # re-raised by the caller of run()
            self.error = exc
        finally:
            os.close(self._fd)  # EOF for the first stage
            self.finished.set()

    def stop(self) -> None:
        self._stop = True


def _signal_defaults_needed() -> bool:
    """Tell whether this thread blocks signals that a child would inherit."""
    return bool(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def _child_setup(
    pgid: int | None, unblock: bool, parent: int
) -> None:  # pragma: no cover - runs in the child
    if pgid is not None:
        os.setpgid(0, pgid)
    if unblock:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if parent:
        _die_with_parent(parent)


_PR_SET_PDEATHSIG = 1
_prctl: Any = None  # libc's prctl, looked up in the parent: the child only calls it


def _parent_death_signal_available() -> bool:
    global _prctl
    if not sys.platform.startswith("linux"):
        return False
    if _prctl is None:
        import ctypes

        try:
            function = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
        else:
            function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
            function.restype = ctypes.c_int
            _prctl = function
    return bool(_prctl)


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0)
    if os.getppid() != parent:
        # The parent died between the fork and the prctl: too late for the kernel to tell.
        os.kill(os.getpid(), signal.SIGKILL)


class _Spawner:
    """The long-lived thread that starts every stage that must die with its parent.

    ``PR_SET_PDEATHSIG`` fires when the thread that forked the child exits, not the
    process: a stage forked by a short-lived thread would be killed with that thread.
    A daemon thread lives until the process ends.  It is started on first use, and
    again in a forked child (threads do not survive a fork).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Any = None
        self._pid = 0

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the spawner thread; return once it has, raising what it raised."""
        import queue

        with self._lock:
            if self._pid != os.getpid():
                requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
                thread = threading.Thread(
                    target=self._serve,
                    args=(requests,),
                    name="taskkit-pipeline-spawner",
                    daemon=True,
                )
                try:
                    thread.start()
                except RuntimeError:  # the interpreter is exiting: no new threads
                    fn()
                    return
                self._requests, self._pid = requests, os.getpid()
            requests = self._requests
        done = threading.Event()
        outcome: list[BaseException] = []
        requests.put((fn, done, outcome))
        done.wait()
        if outcome:
            raise outcome[0]

    @staticmethod
    def _serve(requests: Any) -> None:
        while True:
            fn, done, outcome = requests.get()
            try:
                fn()
            except BaseException as exc:
                outcome.append(exc)
            finally:
                done.set()


_spawner = _Spawner()


_DEFERRED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back Python signal handlers (Ctrl-C's KeyboardInterrupt) while stages start.

    A handler that raises inside ``Popen()`` after the fork, but before Popen has stored
    the child's pid, loses the child: it runs on and nobody can stop or reap it.  So the
    handlers only record signals here, and run once every stage is known.  Python runs
    handlers in the main thread only, so other threads need nothing; children are not
    affected (exec resets caught signals to their default).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []
    saved: dict[int, Callable[[int, FrameType | None], Any]] = {}
    for sig in _DEFERRED_SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            saved[sig] = handler
            signal.signal(sig, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for signum, frame in pending:
            saved[signum](signum, frame)  # e.g. raises KeyboardInterrupt now


def _merged_env(stage: Stage, unbuffered: bool) -> dict[str, str] | None:
    if not stage.env and not unbuffered:
        return None
    env = dict(os.environ)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    for key, value in stage.env:
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _check_program(stage: Stage, env: dict[str, str] | None, where: str) -> None:
    """Raise ``FileNotFoundError`` naming the program if it is not on PATH.

    Checked for every stage before any starts, so a typo in the last stage does not
    leave the first one running (or half-done: it may be ``rm``).
    """
    program = stage.argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        return  # a path: exec reports it, relative to cwd
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    if shutil.which(program, path=path) is not None:
        return
    message = f"program {program!r} not found on PATH ({where})"
    if any(ch.isspace() for ch in program):
        message += f"; to pass arguments write cmd{tuple(program.split())!r} or use shell()"
    raise FileNotFoundError(errno.ENOENT, message, program)


class Engine:
    """One run of a pipeline: its processes, the parent's pipe ends, and what they said.

    The engine never blocks except in ``close()`` (reaping processes that are known to
    have exited or have been sent SIGKILL).  A driver calls ``start``, then waits on
    the reactor until ``done``, calling ``poll_exits`` after each wait.
    """

    def __init__(
        self, stages: Sequence[Stage], options: Options, sink: Callable[[bytes], None]
    ) -> None:
        self.stages, self.options = tuple(stages), options
        self._sink = sink  # receives stdout chunks, then b"" at EOF
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pgid = 0
        self._stderr = [bytearray() for _ in self.stages]
        self._handlers: dict[int, Callable[[], None]] = {}  # every parent fd still watched
        self._pidfds: dict[int, int] = {}  # stage index -> pidfd
        self._exited = [False] * len(self.stages)
        self.polling = False  # True where pidfds are missing: exits are polled
        self.feeder: _Feeder | None = None
        self._stdout_fd = -1
        self._stdout_paused = False
        self._reactor: Reactor | None = None
        self._closed = False

    # -- start --------------------------------------------------------------------------

    def start(self, reactor: Reactor) -> None:
        """Spawn every stage, wired by pipes, then watch the parent's ends with ``reactor``."""
        if os.name != "posix":
            raise NotImplementedError("taskkit pipelines need a POSIX system (Linux, macOS, BSD)")
        self._reactor = reactor
        opts = self.options
        envs = [_merged_env(stage, opts.unbuffered) for stage in self.stages]
        for index, (stage, env) in enumerate(zip(self.stages, envs, strict=True)):
            _check_program(stage, env, f"stage {index} of {self.describe()!r}")
        with _signals_deferred():
            if any(not stage.outlive_parent for stage in self.stages) and (
                _parent_death_signal_available()
            ):
                _spawner.call(lambda: self._spawn(envs, os.getpid()))
            else:
                self._spawn(envs, 0)

    def _spawn(self, envs: list[dict[str, str] | None], parent: int) -> None:
        """Start the stages; ``parent``: this process's pid if stages die with it, else 0."""
        opts = self.options
        unblock = _signal_defaults_needed()
        child_ends: list[int] = []  # closed by the parent once every stage has started
        parent_ends: list[tuple[int, Callable[[], None]]] = []
        feed_fd = -1
        try:
            stdin_fd = _file_descriptor(opts.input)
            if stdin_fd is None and opts.input is not None:
                stdin_fd, feed_fd = os.pipe()
                child_ends.append(stdin_fd)
            self._stdout_fd, last_out = os.openpty() if opts.pty else os.pipe()
            child_ends.append(last_out)
            parent_ends.append((self._stdout_fd, self._on_stdout))
            if opts.pty:
                import tty  # POSIX only; imported here so taskkit imports everywhere

                tty.setraw(last_out)  # no "\n" -> "\r\n" translation, no echo
            for index, (stage, env) in enumerate(zip(self.stages, envs, strict=True)):
                if index == len(self.stages) - 1:
                    out, next_in = last_out, -1
                else:
                    next_in, out = os.pipe()
                    child_ends += [next_in, out]
                err_read, err_write = os.pipe()
                child_ends.append(err_write)
                parent_ends.append((err_read, self._stderr_reader(index, err_read)))
                self.procs.append(
                    subprocess.Popen(
                        stage.argv,
                        stdin=subprocess.DEVNULL if stdin_fd is None else stdin_fd,
                        stdout=out,
                        stderr=err_write,
                        cwd=stage.cwd,
                        env=env,
                        close_fds=True,
                        restore_signals=True,  # SIGPIPE and SIGXFSZ back to default
                        **self._group_options(
                            index, unblock, 0 if stage.outlive_parent else parent
                        ),
                    )
                )
                if index == 0:
                    self.pgid = self.procs[0].pid
                stdin_fd = next_in
        except BaseException:
            for fd, _ in parent_ends:
                os.close(fd)
            if feed_fd >= 0:
                os.close(feed_fd)
            self._abort_start()
            raise
        finally:
            for fd in child_ends:
                os.close(fd)
        if feed_fd >= 0:
            self.feeder = _Feeder(feed_fd, opts.input, opts.encoding)
        for fd, handler in parent_ends:
            os.set_blocking(fd, False)
            self._watch(fd, handler)
        for index, proc in enumerate(self.procs):
            self._watch_exit(index, proc)

    def _group_options(self, index: int, unblock: bool, parent: int) -> dict[str, Any]:
        pgid = 0 if index == 0 else self.pgid
        options: dict[str, Any] = {}
        if sys.version_info >= (3, 11):
            options["process_group"] = pgid
            if unblock or parent:
                options["preexec_fn"] = lambda: _child_setup(None, unblock, parent)
        else:  # no process_group before 3.11: join the group from the child
            options["preexec_fn"] = lambda: _child_setup(pgid, unblock, parent)
        return options

    def _abort_start(self) -> None:
        """Kill and reap the stages already started when a later one failed to start."""
        self.signal(signal.SIGKILL)
        for proc in reversed(self.procs):
            proc.wait()
        self.pgid = 0  # reaped: never signal that group again
        self._exited = [True] * len(self._exited)
        self._closed = True

    def _watch(self, fd: int, handler: Callable[[], None]) -> None:
        assert self._reactor is not None
        self._handlers[fd] = handler
        self._reactor.add(fd, handler)

    def _unwatch(self, fd: int) -> None:
        assert self._reactor is not None
        if self._handlers.pop(fd, None) is not None and not (
            fd == self._stdout_fd and self._stdout_paused
        ):
            self._reactor.remove(fd)
        os.close(fd)

    def _watch_exit(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll instead
            self.polling = True
            return
        self._pidfds[index] = pidfd

        def on_exit() -> None:
            self._exited[index] = True
            del self._pidfds[index]
            self._unwatch(pidfd)

        self._watch(pidfd, on_exit)

    # -- reading ------------------------------------------------------------------------

    def _on_stdout(self) -> None:
        try:
            data = os.read(self._stdout_fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # a pty reports EIO once the child side is closed
                raise
            data = b""
        if data:
            self._sink(data)
            return
        self._unwatch(self._stdout_fd)
        self._stdout_fd = -1
        self._sink(b"")

    def _stderr_reader(self, index: int, fd: int) -> Callable[[], None]:
        buffer, limit = self._stderr[index], self.options.stderr_limit

        def on_stderr() -> None:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._unwatch(fd)
                return
            buffer.extend(data)
            if limit is not None and len(buffer) > 2 * limit + _READ_SIZE:
                del buffer[: len(buffer) - limit]  # amortised: trimmed once per `limit` bytes

        return on_stderr

    def pause_stdout(self, paused: bool) -> None:
        """Stop or resume reading stdout (backpressure for a slow async consumer)."""
        if paused == self._stdout_paused or self._stdout_fd not in self._handlers:
            self._stdout_paused = paused
            return
        assert self._reactor is not None
        self._stdout_paused = paused
        if paused:
            self._reactor.remove(self._stdout_fd)
        else:
            self._reactor.add(self._stdout_fd, self._handlers[self._stdout_fd])

    # -- state --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once every stage has exited and every pipe the parent reads is at EOF."""
        return not self._handlers and all(self._exited[: len(self.procs)])

    def poll_exits(self) -> None:
        """Notice exits where no pidfd reports them (a no-op on Linux >= 5.3)."""
        if self.polling:
            for index, proc in enumerate(self.procs):
                if index not in self._pidfds and proc.poll() is not None:
                    self._exited[index] = True

    def wait_timeout(self, deadline: float | None, now: float) -> float | None:
        """Return how long the driver may wait for the reactor, ``<= 0`` once past ``deadline``."""
        timeout = None if deadline is None else deadline - now
        if self.polling and not all(self._exited):
            timeout = _POLL_INTERVAL if timeout is None else min(timeout, _POLL_INTERVAL)
        return timeout

    def describe(self) -> str:
        return describe(self.stages)

    # -- stopping -----------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group, and to each stage that left it."""
        if self.pgid:
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs:
            # A stage may have left the group (setsid).  Not Popen.send_signal: it polls,
            # which could reap stage 0 before the group is done with.  An unreaped pid
            # (alive or zombie) is still ours, so os.kill cannot hit a stranger.
            if proc.returncode is None:
                try:
                    os.kill(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def close(self) -> None:
        """Close the parent's ends and reap every stage; SIGKILL whatever still runs.

        Safe to call more than once.  Every path out of a run ends here, so no stage is
        left running or unreaped.
        """
        if self._closed:
            return
        self._closed = True
        self.poll_exits()
        if not all(self._exited):
            self.signal(signal.SIGKILL)
        for fd in list(self._handlers):
            self._unwatch(fd)
        self._pidfds.clear()
        if self.feeder is not None:
            self.feeder.stop()
        for proc in reversed(self.procs):  # stage 0, the group leader, last
            proc.wait()
        self._exited = [True] * len(self.procs)

    def results(self) -> tuple[StageResult[bytes], ...]:
        """Return every stage's result; call after ``close()``."""
        last = len(self.stages) - 1
        limit = self.options.stderr_limit
        results = []
        for index, (stage, proc) in enumerate(zip(self.stages, self.procs, strict=True)):
            err = self._stderr[index]
            if limit is not None and len(err) > limit:
                err = err[len(err) - limit :]
            assert proc.returncode is not None
            results.append(
                StageResult(
                    index=index,
                    argv=stage.argv,
                    pid=proc.pid,
                    returncode=proc.returncode,
                    stderr=bytes(err),
                    ok=stage_ok(proc.returncode, stage.ok_codes, index == last),
                )
            )
        return tuple(results)


def describe(stages: Iterable[Stage]) -> str:
    """Write the pipeline as a shell would show it: ``ls -l | wc -l``."""
    return " | ".join(shlex.join(stage.argv) for stage in stages)
