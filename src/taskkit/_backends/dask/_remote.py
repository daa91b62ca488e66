"""What runs on a Dask worker, and how its outcome travels back.

Every task is shipped as one pickled payload (``_serialize.dumps_bytes``) to
``run_payload``, a function that lives in taskkit (installed on the workers)::

    client: dumps_bytes((fn, args, kwargs)) ──► client.submit(run_payload, payload, ...)
                                                            │ (the scheduler sees only bytes)
    worker: run_payload: loads ──► call(fn, ...) ──► dumps_bytes((True, value))
                                              └─► dumps_bytes((False, exc, traceback text))
    client: decode(bytes) ──► value, or the exception with the remote traceback as its cause

Why a trampoline: the scheduler unpickles the task graph, so a function
pickled by reference to a module the scheduler lacks fails there; as bytes it
is only unpickled by the worker that runs it.  Lambdas, closures and
functions defined in ``__main__`` travel by value.  Catching the exception on
the worker also keeps Dask from logging every failing task as an error, and
lets an exception or result that will not pickle become a clear
``RemoteError`` or ``SerializationError`` instead of a transport failure.
"""

from __future__ import annotations

import traceback
from typing import Any

from ..._core._calls import call
from ..._core._errors import RemoteError, RemoteTraceback, SerializationError
from ..._core._serialize import dumps_bytes, loads

__all__ = ["decode", "run_payload", "worker_keys"]


def run_payload(payload: bytes, topic: str | None, token: int) -> bytes:
    """Run the pickled call ``payload`` on this worker and return its pickled outcome.

    Args:
        payload: ``dumps_bytes((fn, args, kwargs))``.
        topic: if not None, announce the start on this Dask event topic (the
            client starts the task's deadline then, not while it is queued).
        token: the client's number for this attempt, sent with the announcement.
    """
    if topic is not None:
        from distributed import get_worker

        get_worker().log_event(topic, token)
    try:
        fn, args, kwargs = loads(payload)
    except ModuleNotFoundError as exc:
        return _encode_error(
            ModuleNotFoundError(
                f"the task needs module {exc.name!r}, which is not installed on this Dask "
                f"worker: install it there, or pass ship_modules=[{exc.name}] to "
                f'open_executor("dask", ...) to send it with each task',
                name=exc.name,
            )
        )
    try:
        value = call(fn, args, kwargs)
    except BaseException as exc:  # SystemExit in a task must not stop the worker
        return _encode_error(exc)
    try:
        blob = dumps_bytes((True, value))
    except Exception as exc:
        return _encode_error(SerializationError("result", type(value).__name__, str(exc)))
    return blob


def _encode_error(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    try:
        blob = dumps_bytes((False, exc, text))
    except Exception:
        stand_in = RemoteError(type(exc).__qualname__, str(exc), text)
        return dumps_bytes((False, stand_in, text))
    return blob


def decode(blob: bytes) -> tuple[bool, Any]:
    """Turn ``run_payload``'s bytes into ``(True, value)`` or ``(False, exception)``."""
    try:
        ok, value, *rest = loads(blob)
    except Exception as exc:
        # The worker could pickle it but we cannot rebuild it here (a class
        # missing on the client, or an exception with unusual arguments).
        return False, RemoteError(
            "unreadable outcome", f"the task's result or exception could not be unpickled: {exc!r}"
        )
    if ok:
        return True, value
    if isinstance(value, BaseException) and rest:
        value.__cause__ = RemoteTraceback(rest[0])
    return False, value


# A worker's task states once it has run the task to its end and keeps the outcome.
_FINISHED = frozenset({"memory", "error"})


def worker_keys(dask_worker: Any) -> tuple[list[str], list[str]]:
    """On a worker (through ``client.run``): the keys it has started, and all it holds.

    Started: running now, or run to the end with the outcome kept there (the
    client may not have heard yet that it finished).
    """
    state = dask_worker.state
    started = [str(ts.key) for ts in (*state.executing, *state.long_running)]
    started += [str(key) for key, ts in state.tasks.items() if ts.state in _FINISHED]
    return started, [str(key) for key in state.tasks]
