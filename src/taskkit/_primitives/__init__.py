"""taskkit's shared-state primitives: queue, lock, event, semaphore and value.

``Executor.queue()`` and its siblings call ``create(family, kind, *args)``; the
family is chosen by the executor's backend:

==========  =========================  ==============================================
family      backends                   made of
==========  =========================  ==============================================
``thread``  thread                     ``_local``: a deque and ``_thread`` locks; a C lock
``async``   coroutine, asyncio         ``_local``, the same classes (async faces await
                                       ``taskkit.Future`` waiters)
``serial``  serial                     ``_local``; a wait that could never end raises
``process`` process                    ``_process``: shared memory, robust mutexes and
                                       futexes, reopened by name in every process
==========  =========================  ==============================================

The dask backend overrides the executor methods and uses Dask's own primitives.

Inside a family, a primitive is its state (state functions that never wait) and one
``Wait`` description per operation that can; how a caller waits is a strategy::

    ``_local`` / ``_process``   state functions + Wait descriptions (one per operation)
             │
    ``_faces``                  the faces shared by every kind (wait/await_, acquire/aacquire)
             │
    ``_waiting``                block / ablock: fast attempt, else one strategy:
                                  controlled run (taskkit.testing)  ─ the only _control use
                                  ParkingLot: thread lock / coroutine Future (one process)
                                  FutexLot (``_process``'s): futex word / helper thread
"""

from __future__ import annotations

from typing import Any

from ._common import (
    EventStatistics,
    LockStatistics,
    QueueStatistics,
    SemaphoreStatistics,
    ValueStatistics,
)

__all__ = [
    "EventStatistics",
    "LockStatistics",
    "QueueStatistics",
    "SemaphoreStatistics",
    "ValueStatistics",
    "create",
    "family_of",
]

#: The family used for each backend that does not name one itself.
_BACKEND_FAMILIES = {
    "serial": "serial",
    "thread": "thread",
    "coroutine": "async",
    "asyncio": "async",
    "process": "process",
}


def family_of(backend: str) -> str:
    """The primitive family for ``backend`` (``"thread"`` for one not listed)."""
    return _BACKEND_FAMILIES.get(backend, "thread")


def create(family: str, kind: str, *args: Any) -> Any:
    """Create a primitive of ``kind`` (queue, lock, event, semaphore, value) in ``family``."""
    if family == "process":
        from .._backends.process import _primitives as _process

        return _process.create(kind, *args)
    from . import _local

    serial = family == "serial"
    if kind == "queue":
        return (_local.SerialQueue if serial else _local.Queue)(*args)
    if kind == "lock":
        if serial:
            return _local.make_lock(_local.SerialLock)
        return _local.make_lock(_local.ThreadLock if family == "thread" else _local.Lock)
    if kind == "event":
        return (_local.SerialEvent if serial else _local.Event)(*args)
    if kind == "semaphore":
        return (_local.SerialSemaphore if serial else _local.Semaphore)(*args)
    if kind == "value":
        return _local.Value(*args)
    raise ValueError(f"unknown primitive {kind!r}")
