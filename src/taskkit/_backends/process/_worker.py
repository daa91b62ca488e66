"""The loop each worker process runs: receive a task, run it, send back how it ended.

::

    parent ──S(initializer, initargs, max_tasks)──► worker   (first message, once)
    parent ◄──A (ready: the initializer ran)───────────────┘
    parent ──T(fn, args, kwargs)──────────────────► worker ── runs fn ──┐
    parent ◄──R(value) / E(exception, its text, its traceback)──────────┘
    parent ──Q, or end of file─────────────────────► worker exits

The worker puts itself in its own process group, so the parent can kill a
task together with every process it started, and kills that group itself as
soon as the parent's end of its socket closes (the parent exited or was
killed), busy or idle.  A result that cannot be pickled fails only that task
(``SerializationError``); the worker carries on.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import select
import signal
import sys
import threading
from collections.abc import Sequence
from types import FunctionType
from typing import Any

from ..._core._calls import ChunkResult, call, run_calls, run_chunk
from ..._core._compat_mp import run_multiprocessing_exit_hooks
from ..._core._errors import SerializationError
from . import _wire

__all__ = ["run_column", "set_title", "worker_main"]

_NOTHING: _wire.Payload = (b"", [])


def run_column(
    fn: Any, xs: Sequence[Any], retries: int = 0, keep_going: bool = False
) -> ChunkResult:
    """``run_chunk`` for a map over one iterable: ``fn(x)`` for each ``x`` of ``xs``.

    The parent sends such chunks as a plain list of values (or a ``range``)
    rather than a list of 1-tuples.  Both loops below keep the results made
    before an exception, so the failing item's index is still known.
    """
    if inspect.iscoroutinefunction(fn):
        return run_chunk(fn, [(x,) for x in xs], retries, keep_going)

    def run_from(start: int, results: list[Any]) -> None:
        rest = xs[start:] if start else xs
        if type(fn) is FunctionType:
            # Python 3.11+ runs a Python function called from Python code
            # without a C call per item, and specialises results.append: up
            # to a fifth faster than map() when the function is tiny.
            for x in rest:
                results.append(fn(x))
        else:
            results.extend(map(fn, rest))  # a builtin: no bytecode per item at all

    return run_calls(run_from, lambda index: fn(xs[index]), retries, keep_going)


def _die_with_parent(fd: int) -> None:
    """Kill this worker's process group as soon as the parent's end of ``fd`` closes.

    A daemon thread sleeps in poll() asking for no events, so it wakes only
    on hang-up: when the parent exits or is killed (even by SIGKILL) the
    kernel closes its end, and the worker and whatever its task started die
    at once, busy or idle.  (PR_SET_PDEATHSIG would not do: under forkserver
    a worker's parent is the fork server, which outlives a killed caller.)
    """

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
        while True:
            try:
                events = poller.poll()
            except InterruptedError:  # pragma: no cover - retried by Python anyway
                continue
            if events:
                break
        try:
            if os.getpgid(0) == os.getpid():  # never the caller's group
                os.killpg(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="taskkit-parent-watch", daemon=True).start()


def _setproctitle_installed() -> bool:
    try:
        return importlib.util.find_spec("setproctitle") is not None
    except (ImportError, ValueError):
        return False


# Looked for once, where this module is imported (the parent under fork, the fork server,
# which preloads it, or the spawned worker itself), and only imported by a worker that
# names itself: a failed import in each new worker searched the whole sys.path again and,
# under fork, touched enough of the parent's objects to copy about 90 of its pages.
_HAS_SETPROCTITLE = _setproctitle_installed()


def set_title(title: str, short: str) -> None:
    """Name this process where tools that list processes look.

    Linux: ``/proc/self/comm`` (what ``top``, ``ps -o comm`` and ``pgrep`` show) becomes
    ``short`` (the kernel keeps 15 bytes).  With the ``setproctitle`` package installed
    (not a dependency of taskkit), the whole command line ``ps aux`` shows becomes
    ``title``.  Where neither works, nothing changes.
    """
    if _HAS_SETPROCTITLE:
        try:
            from setproctitle import setproctitle  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            setproctitle(title)
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, short[:15].encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def worker_main(conn: Any, close_fds: tuple[int, ...], title: str = "", short: str = "") -> None:
    """Serve tasks from ``conn`` (a ``multiprocessing`` connection), then exit the process.

    The process ends with ``os._exit`` after multiprocessing's own clean-up and
    a flush of stdout and stderr: a forked worker must not run the exit hooks
    it inherited from the parent (they would try to shut down the parent's
    executors, whose locks may have been copied while held).
    """
    if title:
        set_title(title, short)
    try:
        _serve(conn, close_fds)
    finally:
        try:
            run_multiprocessing_exit_hooks()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None:
                        stream.flush()
                except Exception:
                    pass
            os._exit(0)


def _serve(conn: Any, close_fds: tuple[int, ...]) -> None:
    for fd in close_fds:
        # Under fork the child inherits the parent's ends of its siblings'
        # sockets; closing them lets each sibling see end of file when the
        # parent goes away.
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        os.setpgid(0, 0)
    except OSError:  # pragma: no cover - already a group leader
        pass
    fd = conn.fileno()
    _die_with_parent(fd)
    reader = _wire.Reader(fd, _wire.TO_WORKER)
    max_tasks = 0
    done = 0
    while True:
        try:
            message = reader.recv()
        except (OSError, EOFError, _wire.ProtocolError):
            return  # trust nothing but the parent's own messages
        if message is None:
            return
        tag, stream, buffers = message
        if tag == _wire.TASK:
            reply = _run(stream, buffers)
            del stream, buffers, message
            try:
                _wire.send(fd, *reply)
            except OSError:
                return
            done += 1
            if max_tasks and done >= max_tasks:
                return
        elif tag == _wire.SETUP:
            initializer, initargs, max_tasks = _wire.loads(stream, buffers)
            if initializer is not None:
                try:
                    initializer(*initargs)
                except BaseException as exc:
                    try:
                        _wire.send(fd, _wire.INIT_FAILED, _wire.encode_error(exc))
                    except OSError:
                        pass
                    return
            try:
                _wire.send(fd, _wire.READY, _NOTHING)
            except OSError:
                return
        else:  # QUIT
            return


def _run(stream: bytes | bytearray, buffers: list[bytearray]) -> tuple[bytes, _wire.Payload]:
    try:
        fn, args, kwargs = _wire.loads(stream, buffers)
    except BaseException as exc:
        error = SerializationError(
            "the task", "bytes", f"the worker could not unpickle it: {exc!r}"
        )
        error.__cause__ = exc
        return _wire.ERROR, _wire.encode_error(error)
    try:
        value = call(fn, args, kwargs)
    except BaseException as exc:
        del fn, args, kwargs
        return _wire.ERROR, _wire.encode_error(exc)
    if fn is run_column or fn is run_chunk:
        return _chunk_reply(value)
    del fn, args, kwargs
    try:
        return _wire.RESULT, _wire.dumps(value)
    except BaseException as exc:
        error = SerializationError("result", type(value).__qualname__, _short(exc))
        return _wire.ERROR, _wire.encode_error(error)


def _chunk_reply(value: ChunkResult) -> tuple[bytes, _wire.Payload]:
    """Send a map chunk's results; its exception, if any, travels as an encoded error."""
    results, failures, retried, elapsed = value
    encoded = [(index, _wire.encode_error(exc)[0]) for index, exc in failures]
    packed = _wire.pack_ints(results)
    if packed is not None:
        return _wire.CHUNK, _wire.dumps((packed, encoded, retried, elapsed))
    try:
        return _wire.CHUNK, _wire.dumps((results, encoded, retried, elapsed))
    except BaseException as error:
        # Find the first result that will not pickle and fail from there.
        for index, item in enumerate(results):
            try:
                _wire.dumps(item)
            except BaseException:
                failure = SerializationError(
                    f"result of map item {index} in this chunk",
                    type(item).__qualname__,
                    _short(error),
                )
                encoded = [(i, e) for i, e in encoded if i < index]
                encoded.append((index, _wire.encode_error(failure)[0]))
                results = [*results[:index], None]
                return _wire.CHUNK, _wire.dumps((results, encoded, retried, elapsed))
        failure = SerializationError("map chunk result", "tuple", _short(error))
        return _wire.ERROR, _wire.encode_error(failure)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
