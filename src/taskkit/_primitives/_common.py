"""What every family of primitives shares: statistics records, waiters, deadlines.

A *waiter* is how a blocked caller is woken by the operation it waits for:

* a thread blocks on a ``_thread`` lock that was acquired when the waiter was made;
  waking it releases that lock (this is how ``threading.Condition`` works inside);
* a coroutine (on asyncio or on taskkit's coroutine scheduler) awaits a
  ``taskkit.Future``; waking it sets the future's result to True.  A timeout sets
  it to False from taskkit's deadline thread, so no event loop is needed for it.

Both kinds sit in the same FIFO, so ``put`` wakes the longest-waiting ``get`` or
``aget`` alike, whichever thread or loop it runs in.
"""

from __future__ import annotations

import _thread
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Union

from .._future import Future
from .._timer import call_later

__all__ = [
    "EventStatistics",
    "LockStatistics",
    "QueueStatistics",
    "SemaphoreStatistics",
    "ValueStatistics",
    "Waiter",
    "Waiting",
    "await_waiter",
    "check_timeout",
    "remaining",
    "wake_all",
    "wake_one",
]

LockType = _thread.LockType
#: A blocked thread's lock, or a blocked coroutine's future.
Waiter = Union["_thread.LockType", "Future[bool]"]


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


def wake_one(waiters: deque[Any]) -> None:
    """Wake the longest-waiting waiter that can still be woken (call under the mutex)."""
    while waiters:
        waiter = waiters.popleft()
        if type(waiter) is LockType:
            waiter.release()
            return
        if waiter._try_set_result(True):
            return
        # a coroutine that timed out or was cancelled: wake the next one instead


def wake_all(waiters: deque[Any]) -> None:
    """Wake every waiter (call under the mutex)."""
    while waiters:
        waiter = waiters.popleft()
        if type(waiter) is LockType:
            waiter.release()
        else:
            waiter._try_set_result(True)


def thread_waiter() -> _thread.LockType:
    """A waiter for the calling thread: block with ``acquire(True, timeout)``."""
    waiter = _thread.allocate_lock()
    waiter.acquire()
    return waiter


async def await_waiter(waiter: Future[bool], deadline: float | None) -> bool:
    """Wait for ``waiter`` to be woken; False if ``deadline`` passed first.

    Works on asyncio and on taskkit's coroutine scheduler alike: both can await a
    ``taskkit.Future`` that another thread completes.
    """
    timer = None
    if deadline is not None:
        timer = call_later(max(0.0, deadline - time.monotonic()), lambda: _expire(waiter))
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()


def _expire(waiter: Future[bool]) -> None:
    waiter._try_set_result(False)


class Waiting:
    """Names a wait for ``Deadlock`` reports; the primitive is described as it is then."""

    __slots__ = ("obj", "text")

    def __init__(self, text: str, obj: object) -> None:
        self.text, self.obj = text, obj

    def __str__(self) -> str:
        return f"{self.text} {self.obj!r}"
