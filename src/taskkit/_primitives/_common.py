"""What every family of primitives shares: statistics, ``with``, argument checks, deadlines,
and ``shut_down``, what an executor's ``shutdown()`` does to the primitives it made.

How callers wait is in ``_waiting``; the faces written once for every kind, in ``_faces``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

__all__ = [
    "AcquireContext",
    "EventStatistics",
    "LockStatistics",
    "QueueStatistics",
    "SemaphoreStatistics",
    "ValueStatistics",
    "check_count",
    "check_timeout",
    "remaining",
    "shut_down",
]


@functools.singledispatch
def shut_down(primitive: object, close: bool) -> None:
    """What ``Executor.shutdown()`` does to each primitive the executor made.

    It frees what the primitive holds outside this process (shared memory and
    semaphore names are unlinked; mappings already open stay valid) and, with
    ``close``, closes a queue once no task can use it, so that a ``get()`` on a
    drained one cannot hang.  Each module of primitives registers its classes
    (``@shut_down.register(cls)``): the step is no method of the objects users hold.
    """
    raise TypeError(f"{type(primitive).__qualname__} is not a taskkit primitive")


class AcquireContext:
    """``with`` and ``async with`` for anything with ``acquire``, ``aacquire`` and ``release``."""

    __slots__ = ()

    def acquire(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    async def aacquire(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> bool:
        return await self.aacquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class QueueStatistics:
    """A snapshot of a queue, from ``q.statistics()``.

    Attributes:
        size: items in the queue now.
        maxsize: the bound given at creation (0: unbounded).
        closed: ``close()`` was called.
        puts: items put so far.
        gets: items taken so far.
        waiting_getters: callers blocked in ``get``/``aget`` now.
        waiting_putters: callers blocked in ``put``/``aput`` now (bounded queues).
    """

    size: int
    maxsize: int
    closed: bool
    puts: int
    gets: int
    waiting_getters: int
    waiting_putters: int


@dataclass(frozen=True)
class LockStatistics:
    """A snapshot of a lock, from ``lock.statistics()``.

    Attributes:
        locked: held by someone now.
        holder_pid: the process holding it (process locks), else ``None``.
        takeovers: acquires that took the lock over from a holder process that died.
        waiting: coroutines known to wait for it (and, for process locks, every waiter).
    """

    locked: bool
    holder_pid: int | None
    takeovers: int
    waiting: int


@dataclass(frozen=True)
class EventStatistics:
    """A snapshot of an event, from ``event.statistics()``.

    Attributes:
        is_set: the flag is set.
        waiting: callers blocked in ``wait``/``await_`` now (process events: not counted, -1).
    """

    is_set: bool
    waiting: int


@dataclass(frozen=True)
class SemaphoreStatistics:
    """A snapshot of a semaphore, from ``sem.statistics()``.

    Attributes:
        value: units free now.
        initial: the count it was created with.
        waiting: callers blocked in ``acquire``/``aacquire`` now.
    """

    value: int
    initial: int
    waiting: int


@dataclass(frozen=True)
class ValueStatistics:
    """A snapshot of a shared value, from ``v.statistics()``.

    Attributes:
        writes: ``set`` and ``update`` calls so far.
        nbytes: the pickled size of the current value (process values), else 0.
    """

    writes: int
    nbytes: int


def check_count(value: int, least: int, message: str) -> None:
    """Validate a count argument (a queue's bound, a semaphore's units): a whole number,
    not a bool, of at least ``least``; else ``ValueError(f"{message}, got {value!r}")``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{message}, got {value!r}")


def check_timeout(timeout: float | None) -> float | None:
    """Validate a ``timeout`` argument and return the deadline it gives, or ``None``."""
    if timeout is None:
        return None
    if timeout != timeout or timeout < 0:  # NaN or negative
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative), or ``None`` for no deadline."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
