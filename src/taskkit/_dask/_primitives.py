"""taskkit's shared-state primitives on Dask's own distributed ones.

==================  =============================================================
taskkit             Dask objects (all live on the scheduler, found by name)
==================  =============================================================
``ex.queue(n)``     ``Queue(name, maxsize=n)``; an ``Event`` marks it closed
``ex.lock()``       ``Lock(name)`` and a ``Variable`` naming its current holder
``ex.event()``      ``Event(name)``
``ex.semaphore(n)`` ``Semaphore(n, name)``
``ex.value(x)``     ``Variable(name)`` guarded by a ``Lock`` for ``update``
==================  =============================================================

Each object pickles as its name, so it can be passed to tasks as an ordinary
argument; on a worker it binds to that worker's client.  Items and values are
pickled by taskkit (Dask would send them as msgpack, turning tuples into
lists).  Every operation is a round trip to the scheduler (about 0.5 to 1 ms):
these are for coordination, not for streaming data.

The async twins (``aget``, ``aacquire``, ...) run the blocking call on a
helper thread.  If the awaiting task is cancelled, what the call obtained is
given back: a lock acquired late is released, an item received late is put
back (at the end of the queue).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue as std_queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, final

import cloudpickle
import distributed as _distributed

from .._errors import QueueClosed

__all__ = [
    "DaskEvent",
    "DaskLock",
    "DaskQueue",
    "DaskSemaphore",
    "DaskValue",
    "PrimitiveStatistics",
]

T = TypeVar("T")

# distributed is only partly typed: its objects are handled as Any here.
distributed: Any = _distributed
Client = Any

# Put into the queue by close(): msgpack carries it as bytes, and no pickle
# begins with a zero byte, so it cannot be mistaken for an item.
_CLOSED = b"\x00taskkit-queue-closed"


@dataclass(frozen=True)
class PrimitiveStatistics:
    """A snapshot of one shared primitive, from ``statistics()``.

    Attributes:
        kind: ``"queue"``, ``"lock"``, ``"event"``, ``"semaphore"`` or ``"value"``.
        name: its name on the Dask scheduler.
        operations: operations made through this copy of the object.
        state: the shared state now: a queue's size, 1 if a lock is held,
            1 if an event is set, a semaphore's free permits, 0 for a value.
    """

    kind: str
    name: str
    operations: int
    state: int


def _new_name(kind: str) -> str:
    return f"taskkit-{kind}-{uuid.uuid4().hex}"


def _in_thread(fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="taskkit-dask-wait", daemon=True).start()
    return future


async def _awaited(fn: Callable[[], T], give_back: Callable[[T], object] | None = None) -> T:
    """Await ``fn()`` run on a helper thread; on cancellation, hand its result to ``give_back``."""
    future = _in_thread(fn)
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        if give_back is not None:
            future.add_done_callback(
                lambda done: give_back(done.result()) if done.exception() is None else None
            )
        raise


def _binding(client: Client | None) -> dict[str, Any]:
    """Keyword arguments that bind a Dask Lock or Semaphore to ``client`` (None: late)."""
    if client is None:
        return {}
    return {"scheduler_rpc": client.scheduler, "loop": client.loop}


@final
class DaskQueue:
    """A FIFO queue shared by the program and its tasks, on a Dask ``Queue``."""

    def __init__(self, client: Client | None, maxsize: int = 0, name: str | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be a whole number >= 0, got {maxsize!r}")
        self.name = name or _new_name("queue")
        self.maxsize = maxsize
        self._queue = distributed.Queue(self.name, client=client, maxsize=maxsize)
        self._closed = distributed.Event(f"{self.name}-closed", client=client)
        self._operations = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskQueue, (None, self.maxsize, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask queue {self.name} maxsize={self.maxsize}>"

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Put ``item`` at the end, waiting for room up to ``timeout`` seconds.

        Raises:
            queue.Full: no room within ``timeout``.
            QueueClosed: the queue was closed.
        """
        self._check_open()
        data = cloudpickle.dumps(item)
        try:
            self._queue.put(data, timeout=timeout)
        except TimeoutError:
            raise std_queue.Full from None
        self._operations += 1

    def put_nowait(self, item: Any) -> None:
        """Put ``item`` if there is room now, else raise ``queue.Full``."""
        self._check_open()
        if self.maxsize and self._queue.qsize() >= self.maxsize:
            raise std_queue.Full
        self.put(item, timeout=0)

    def get(self, timeout: float | None = None) -> Any:
        """Remove and return the first item, waiting up to ``timeout`` seconds.

        Raises:
            queue.Empty: nothing arrived within ``timeout``.
            QueueClosed: the queue is closed and has no items left.
        """
        try:
            data = self._queue.get(timeout=timeout)
        except TimeoutError:
            raise std_queue.Empty from None
        if data == _CLOSED:
            self._queue.put(_CLOSED)  # for the next getter
            raise QueueClosed(f"queue {self.name} is closed and empty")
        self._operations += 1
        return cloudpickle.loads(data)

    def get_nowait(self) -> Any:
        """Remove and return the first item if there is one, else raise ``queue.Empty``."""
        # Checking first spares the scheduler a logged timeout in the common case.
        if self._queue.qsize() == 0:
            raise std_queue.Empty
        return self.get(timeout=0)

    async def aput(self, item: Any, timeout: float | None = None) -> None:
        """``await q.aput(item)``: the async twin of ``put``."""
        await _awaited(lambda: self.put(item, timeout))

    async def aget(self, timeout: float | None = None) -> Any:
        """``await q.aget()``: the async twin of ``get``."""
        return await _awaited(lambda: self.get(timeout), self._give_back)

    def _give_back(self, item: Any) -> None:
        self._queue.put(cloudpickle.dumps(item))

    def qsize(self) -> int:
        """The number of items in the queue now."""
        size = int(self._queue.qsize())
        return max(0, size - 1) if self.closed else size

    def empty(self) -> bool:
        """True if the queue has no items now."""
        return self.qsize() == 0

    def full(self) -> bool:
        """True if the queue is bounded and has no room now."""
        return bool(self.maxsize) and self.qsize() >= self.maxsize

    def close(self) -> None:
        """Accept no more items; getters receive what is left, then ``QueueClosed``."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self.maxsize or self._queue.qsize() < self.maxsize:
            self._queue.put(_CLOSED)
        else:
            # Full: the marker goes in behind the remaining items as they are taken.
            threading.Thread(
                target=self._queue.put, args=(_CLOSED,), name="taskkit-dask-close", daemon=True
            ).start()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (by any holder of the queue)."""
        return bool(self._closed.is_set())

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise QueueClosed(f"queue {self.name} is closed")

    def statistics(self) -> PrimitiveStatistics:
        """Return the queue's size and the operations made through this copy."""
        return PrimitiveStatistics("queue", self.name, self._operations, self.qsize())


class _Acquirable:
    """``with``/``async with`` and ``aacquire`` for locks and semaphores."""

    def acquire(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    async def aacquire(self, timeout: float | None = None) -> bool:
        """``await lock.aacquire()``: the async twin of ``acquire``."""
        return await _awaited(lambda: self.acquire(timeout), self._release_if)

    def _release_if(self, acquired: bool) -> None:
        if acquired:
            self.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> bool:
        return await self.aacquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _awaited(self.release)


@final
class DaskLock(_Acquirable):
    """A mutual-exclusion lock shared by the program and its tasks, on a Dask ``Lock``.

    Dask gives each holder a lease that its process keeps refreshing; a holder
    that dies stops refreshing, and after the lease timeout (Dask's
    ``distributed.scheduler.locks.lease-timeout``, 30 s by default) the lock
    is free again.  The next acquirer then finds ``previous_holder_died`` True.
    """

    def __init__(self, client: Client | None, name: str | None = None) -> None:
        create = name is None
        self.name = name or _new_name("lock")
        self._lock = distributed.Lock(self.name, **_binding(client))
        # Names the process holding the lock, or "" when it was released: a
        # holder that is gone without releasing leaves its name behind.
        self._holder = distributed.Variable(f"{self.name}-holder", client=client)
        if create:
            self._holder.set("")
        self._me = f"{uuid.uuid4().hex}"
        self._operations = 0
        self.previous_holder_died = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskLock, (None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask lock {self.name}>"

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the lock; True if it was acquired."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self.previous_holder_died = bool(self._holder.get())
        self._holder.set(self._me)
        self._operations += 1
        return True

    def release(self) -> None:
        """Release the lock (``RuntimeError`` if this copy does not hold it)."""
        self._holder.set("")
        self._lock.release()

    def locked(self) -> bool:
        """True if some holder has the lock now."""
        return bool(self._lock.locked())

    def statistics(self) -> PrimitiveStatistics:
        """Return whether the lock is held and the acquisitions made through this copy."""
        return PrimitiveStatistics("lock", self.name, self._operations, int(self.locked()))


@final
class DaskSemaphore(_Acquirable):
    """A counting semaphore shared by the program and its tasks, on a Dask ``Semaphore``.

    Dask's semaphore hands out leases: ``release()`` gives back a permit that
    *this copy* acquired (a task releases what it acquired), and a permit held
    by a process that died returns after the lease timeout.
    """

    def __init__(self, client: Client | None, permits: int = 1, name: str | None = None) -> None:
        if isinstance(permits, bool) or not isinstance(permits, int) or permits < 1:
            raise ValueError(f"a semaphore needs at least 1 permit, got {permits!r}")
        self.name = name or _new_name("semaphore")
        self.permits = permits
        self._semaphore = distributed.Semaphore(permits, self.name, **_binding(client))
        self._operations = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskSemaphore, (None, self.permits, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask semaphore {self.name} permits={self.permits}>"

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a permit; True if one was acquired."""
        acquired = bool(self._semaphore.acquire(timeout=timeout))
        self._operations += acquired
        return acquired

    def release(self) -> None:
        """Give back a permit acquired through this copy."""
        self._semaphore.release()

    @property
    def value(self) -> int:
        """The permits free now."""
        return self.permits - int(self._semaphore.get_value())

    def statistics(self) -> PrimitiveStatistics:
        """Return the free permits and the acquisitions made through this copy."""
        return PrimitiveStatistics("semaphore", self.name, self._operations, self.value)


@final
class DaskEvent:
    """A flag shared by the program and its tasks, on a Dask ``Event``."""

    def __init__(self, client: Client | None, name: str | None = None) -> None:
        self.name = name or _new_name("event")
        self._event = distributed.Event(self.name, client=client)
        self._operations = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskEvent, (None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask event {self.name}>"

    def set(self) -> None:
        """Set the flag, waking every waiter."""
        self._event.set()
        self._operations += 1

    def clear(self) -> None:
        """Clear the flag."""
        self._event.clear()
        self._operations += 1

    def is_set(self) -> bool:
        """True if the flag is set."""
        return bool(self._event.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True if it is set."""
        return bool(self._event.wait(timeout=timeout))

    async def await_(self, timeout: float | None = None) -> bool:
        """``await event.await_()``: the async twin of ``wait``."""
        return await _awaited(lambda: self.wait(timeout))

    def statistics(self) -> PrimitiveStatistics:
        """Return whether the flag is set and the changes made through this copy."""
        return PrimitiveStatistics("event", self.name, self._operations, int(self.is_set()))


@final
class DaskValue:
    """One value shared by the program and its tasks: a Dask ``Variable`` and ``Lock``.

    A Dask ``Variable`` alone is not atomic across a read and a write, so
    ``set`` and ``update`` take the lock: ``v.update(lambda n: n + 1)`` from
    many tasks at once loses no increment.
    """

    def __init__(
        self,
        client: Client | None,
        initial: Any = None,
        name: str | None = None,
    ) -> None:
        create = name is None
        self.name = name or _new_name("value")
        self._variable = distributed.Variable(self.name, client=client)
        self._lock = distributed.Lock(f"{self.name}-lock", **_binding(client))
        self._operations = 0
        if create:
            self._variable.set(cloudpickle.dumps(initial))

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskValue, (None, None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask value {self.name}>"

    def get(self) -> Any:
        """Return the current value."""
        return cloudpickle.loads(self._variable.get())

    def set(self, value: Any) -> None:
        """Replace the value."""
        data = cloudpickle.dumps(value)
        with self._lock:
            self._variable.set(data)
        self._operations += 1

    def update(self, fn: Callable[[Any], Any]) -> Any:
        """Replace the value with ``fn(value)`` atomically and return the new value."""
        with self._lock:
            new = fn(cloudpickle.loads(self._variable.get()))
            self._variable.set(cloudpickle.dumps(new))
        self._operations += 1
        return new

    async def aget(self) -> Any:
        """The async twin of ``get``."""
        return await _awaited(self.get)

    async def aset(self, value: Any) -> None:
        """The async twin of ``set``."""
        await _awaited(lambda: self.set(value))

    async def aupdate(self, fn: Callable[[Any], Any]) -> Any:
        """The async twin of ``update``."""
        return await _awaited(lambda: self.update(fn))

    def statistics(self) -> PrimitiveStatistics:
        """Return the updates made through this copy."""
        return PrimitiveStatistics("value", self.name, self._operations, 0)
