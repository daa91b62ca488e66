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

``statistics()`` returns the same snapshot classes as every other backend.
Counters (``puts``, ``gets``, ``writes``, ``takeovers``) and waiting callers
are those of *this copy* of the object, in this process: each task's copy
keeps its own, and Dask does not tell who else waits.  Sizes, values and
flags are read from the scheduler.

When the executor shuts down its own cluster (or closes the client it made
for ``address=``), the objects it made in this process can no longer reach
the scheduler.  Just before that, each one takes a last look at its state:
a queue keeps the items left in it (``get`` returns them, then raises
``QueueClosed``), a value keeps its value, an event, lock or semaphore its
flag, holder state or free count.  Reads answer from that; an operation that
would need the cluster raises ``ExecutorClosed`` at once rather than hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue as std_queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, final

import distributed as _distributed

from ..._core._errors import ExecutorClosed, QueueClosed, UsageError
from ..._core._serialize import dumps_bytes, dumps_value, loads
from ..._primitives import _common
from ..._primitives._common import AcquireContext, check_count, shut_down

__all__ = [
    "DaskEvent",
    "DaskLock",
    "DaskQueue",
    "DaskSemaphore",
    "DaskValue",
]

T = TypeVar("T")

# distributed is only partly typed: its objects are handled as Any here.
distributed: Any = _distributed
Client = Any

# Put into the queue by close(): msgpack carries it as bytes, and no pickle
# begins with a zero byte, so it cannot be mistaken for an item.
_CLOSED = b"\x00taskkit-queue-closed"


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


class _Shared:
    """What every Dask primitive has: a name, counters, and a life after its cluster.

    ``detach(primitive, reason)`` is called by the executor just before it closes
    the client this copy talks through: the copy records what it needs to answer
    reads (``_snapshot``) and from then on raises ``ExecutorClosed`` for
    anything that needs the scheduler.
    """

    _kind = "primitive"

    def __init__(self, name: str | None) -> None:
        self.name = name or _new_name(self._kind)
        self._mutex = threading.Lock()  # guards the counters below
        self._waiting = 0
        self._gone: str | None = None

    @contextmanager
    def _waits(self) -> Iterator[None]:
        """Count the caller as waiting while the block runs."""
        with self._mutex:
            self._waiting += 1
        try:
            yield
        finally:
            with self._mutex:
                self._waiting -= 1

    def _detached(self) -> bool:
        """True once the executor closed the client (another thread may do it at any time)."""
        return self._gone is not None

    def _check_reachable(self) -> None:
        if self._gone is not None:
            raise self._unreachable()

    def _unreachable(self) -> ExecutorClosed:
        return ExecutorClosed(
            f"{self._kind} {self.name} lived on a Dask scheduler this program no longer "
            f"reaches: {self._gone}"
        )

    def _snapshot(self) -> None:
        pass


def detach(primitive: _Shared, reason: str) -> None:
    """Have ``primitive`` record the state reads need, then stop using the scheduler.

    Called by the executor just before it closes its client, ``reason`` saying why
    (``ExecutorClosed`` names it from then on).
    """
    try:
        primitive._snapshot()
    except Exception:
        pass  # the cluster is already unreachable: reads report what the copy knew
    primitive._gone = reason


@shut_down.register(_Shared)
def _shut_down_shared(primitive: _Shared, close: bool) -> None:
    pass  # nothing to free: the scheduler owns the state


@final
class DaskQueue(_Shared):
    """A FIFO queue shared by the program and its tasks, on a Dask ``Queue``."""

    _kind = "queue"

    def __init__(self, client: Client | None, maxsize: int = 0, name: str | None = None) -> None:
        check_count(maxsize, 0, "maxsize must be a whole number >= 0")
        super().__init__(name)
        self.maxsize = maxsize
        self._client = client
        self._queue = distributed.Queue(self.name, client=client, maxsize=maxsize)
        self._closed = distributed.Event(f"{self.name}-closed", client=client)
        self._puts = self._gets = self._waiting_putters = 0
        # The pickled items left when the executor closed the cluster (see _detach).
        self._left: deque[bytes] = deque()

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
        data = dumps_value(item, "queue item")
        with self._mutex:
            self._waiting_putters += 1
        try:
            self._queue.put(data, timeout=timeout)
        except TimeoutError:
            raise std_queue.Full from None
        except Exception:
            self._check_open()  # closed with its cluster while waiting for room
            raise
        finally:
            with self._mutex:
                self._waiting_putters -= 1
        with self._mutex:
            self._puts += 1

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
        if self._gone is not None:
            return self._take_left()
        try:
            with self._waits():
                data = self._queue.get(timeout=timeout)
        except TimeoutError:
            raise std_queue.Empty from None
        except Exception:
            if self._detached():  # the executor closed the cluster while we waited
                return self._take_left()
            raise
        if data == _CLOSED:
            self._queue.put(_CLOSED)  # for the next getter
            raise QueueClosed(f"queue {self.name} is closed and empty")
        with self._mutex:
            self._gets += 1
        return loads(data)

    def get_nowait(self) -> Any:
        """Remove and return the first item if there is one, else raise ``queue.Empty``."""
        if self._gone is not None:
            return self._take_left()
        # Checking first spares the scheduler a logged timeout in the common case.
        if self._queue.qsize() == 0:
            raise std_queue.Empty
        return self.get(timeout=0)

    def _take_left(self) -> Any:
        with self._mutex:
            if not self._left:
                raise QueueClosed(
                    f"queue {self.name} is closed and empty (its executor was shut down)"
                )
            data = self._left.popleft()
            self._gets += 1
        return loads(data)

    async def aput(self, item: Any, timeout: float | None = None) -> None:
        """``await q.aput(item)``: the async twin of ``put``."""
        await _awaited(lambda: self.put(item, timeout))

    async def aget(self, timeout: float | None = None) -> Any:
        """``await q.aget()``: the async twin of ``get``."""
        return await _awaited(lambda: self.get(timeout), self._give_back)

    def _give_back(self, item: Any) -> None:
        data = dumps_bytes(item)
        with self._mutex:
            self._gets -= 1  # it was not taken after all
            if self._gone is not None:
                self._left.append(data)
                return
        self._queue.put(data)

    def qsize(self) -> int:
        """The number of items in the queue now."""
        if self._gone is not None:
            return len(self._left)
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
        if self._gone is not None or self._closed.is_set():
            return
        self._closed.set()
        if not self.maxsize or self._queue.qsize() < self.maxsize:
            self._queue.put(_CLOSED)
        else:
            # Full: the marker goes in behind the remaining items as they are taken.
            threading.Thread(
                target=self._put_marker, name="taskkit-dask-close", daemon=True
            ).start()

    def _put_marker(self) -> None:
        try:
            self._queue.put(_CLOSED)
        except Exception:
            if not self._detached():
                raise

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (by any holder of the queue)."""
        return self._gone is not None or bool(self._closed.is_set())

    def _check_open(self) -> None:
        if self._gone is not None:
            raise QueueClosed(f"queue {self.name} is closed: its executor was shut down")
        if self._closed.is_set():
            raise QueueClosed(f"queue {self.name} is closed")

    def statistics(self) -> _common.QueueStatistics:
        """Return a snapshot of the queue.

        ``size`` and ``closed`` are read from the scheduler; ``puts``, ``gets``
        and the waiting callers are those of this copy of the queue.
        """
        size, closed = self.qsize(), self.closed
        with self._mutex:
            return _common.QueueStatistics(
                size=size,
                maxsize=self.maxsize,
                closed=closed,
                puts=self._puts,
                gets=self._gets,
                waiting_getters=self._waiting,
                waiting_putters=self._waiting_putters,
            )

    def _snapshot(self) -> None:
        data = self._queue.get(batch=True)  # everything in it now, without waiting
        with self._mutex:
            self._left.extend(d for d in data if d != _CLOSED)


@shut_down.register(DaskQueue)
def _close_queue(queue: DaskQueue, close: bool) -> None:
    # A client the caller already closed cannot be told: the queue went with it.
    client = queue._client
    if close and queue._gone is None and client is not None and client.status == "running":
        queue.close()


class _Acquirable(AcquireContext, _Shared):
    """``with``/``async with`` and ``aacquire`` for locks and semaphores."""

    async def aacquire(self, timeout: float | None = None) -> bool:
        """``await lock.aacquire()``: the async twin of ``acquire``."""
        return await _awaited(lambda: self.acquire(timeout), self._release_if)

    def _release_if(self, acquired: bool) -> None:
        if acquired:
            self.release()

    def _acquire(self, acquire: Callable[[], Any]) -> bool:
        """Run Dask's ``acquire``, counted as waiting; ``ExecutorClosed`` if the cluster went."""
        self._check_reachable()
        try:
            with self._waits():
                return bool(acquire())
        except Exception:
            self._check_reachable()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await _awaited(self.release)  # a round trip to the scheduler: off the event loop


@final
class DaskLock(_Acquirable):
    """A mutual-exclusion lock shared by the program and its tasks, on a Dask ``Lock``.

    Dask gives each holder a lease that its process keeps refreshing; a holder
    that dies stops refreshing, and after the lease timeout (Dask's
    ``distributed.scheduler.locks.lease-timeout``, 30 s by default) the lock
    is free again.  The next acquirer then finds ``previous_holder_died`` True.
    """

    _kind = "lock"

    def __init__(self, client: Client | None, name: str | None = None) -> None:
        create = name is None
        super().__init__(name)
        self._lock = distributed.Lock(self.name, **_binding(client))
        # Names the process holding the lock, or "" when it was released: a
        # holder that is gone without releasing leaves its name behind.
        self._holder = distributed.Variable(f"{self.name}-holder", client=client)
        if create:
            self._holder.set("")
        self._me = f"{uuid.uuid4().hex}"
        self._takeovers = 0
        self._was_locked = False
        self.previous_holder_died = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskLock, (None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask lock {self.name}>"

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the lock; True if it was acquired."""
        if not self._acquire(lambda: self._lock.acquire(timeout=timeout)):
            return False
        self.previous_holder_died = bool(self._holder.get())
        self._holder.set(self._me)
        if self.previous_holder_died:
            with self._mutex:
                self._takeovers += 1
        return True

    def release(self) -> None:
        """Release the lock (``UsageError``, a ``RuntimeError``, if this copy does not hold it)."""
        self._check_reachable()
        self._holder.set("")
        try:
            self._lock.release()
        except RuntimeError as exc:  # Dask's: this copy does not hold it
            raise UsageError(f"release() of {self!r}, which this copy does not hold") from exc

    def locked(self) -> bool:
        """True if some holder has the lock now."""
        if self._gone is not None:
            return self._was_locked
        return bool(self._lock.locked())

    def statistics(self) -> _common.LockStatistics:
        """Return a snapshot of the lock.

        ``locked`` is read from the scheduler; ``takeovers`` and ``waiting``
        are those of this copy; Dask names no holder process (``holder_pid``
        is None).
        """
        locked = self.locked()
        with self._mutex:
            return _common.LockStatistics(
                locked=locked, holder_pid=None, takeovers=self._takeovers, waiting=self._waiting
            )

    def _snapshot(self) -> None:
        self._was_locked = bool(self._lock.locked())


@final
class DaskSemaphore(_Acquirable):
    """A counting semaphore shared by the program and its tasks, on a Dask ``Semaphore``.

    Dask's semaphore hands out leases: ``release()`` gives back a permit that
    *this copy* acquired (a task releases what it acquired), and a permit held
    by a process that died returns after the lease timeout.
    """

    _kind = "semaphore"

    def __init__(self, client: Client | None, permits: int = 1, name: str | None = None) -> None:
        check_count(permits, 1, "a semaphore needs at least 1 permit")
        super().__init__(name)
        self.permits = permits
        self._semaphore = distributed.Semaphore(permits, self.name, **_binding(client))
        self._last_value = permits

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskSemaphore, (None, self.permits, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask semaphore {self.name} permits={self.permits}>"

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a permit; True if one was acquired."""
        return self._acquire(lambda: self._semaphore.acquire(timeout=timeout))

    def release(self) -> None:
        """Give back a permit acquired through this copy."""
        self._check_reachable()
        self._semaphore.release()

    @property
    def value(self) -> int:
        """The permits free now."""
        if self._gone is not None:
            return self._last_value
        return self.permits - int(self._semaphore.get_value())

    def statistics(self) -> _common.SemaphoreStatistics:
        """Return a snapshot: the free permits (from the scheduler), the waiters of this copy."""
        value = self.value
        with self._mutex:
            return _common.SemaphoreStatistics(
                value=value, initial=self.permits, waiting=self._waiting
            )

    def _snapshot(self) -> None:
        self._last_value = self.permits - int(self._semaphore.get_value())


@final
class DaskEvent(_Shared):
    """A flag shared by the program and its tasks, on a Dask ``Event``."""

    _kind = "event"

    def __init__(self, client: Client | None, name: str | None = None) -> None:
        super().__init__(name)
        self._event = distributed.Event(self.name, client=client)
        self._was_set = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskEvent, (None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask event {self.name}>"

    def set(self) -> None:
        """Set the flag, waking every waiter."""
        self._check_reachable()
        self._event.set()

    def clear(self) -> None:
        """Clear the flag."""
        self._check_reachable()
        self._event.clear()

    def is_set(self) -> bool:
        """True if the flag is set."""
        if self._gone is not None:
            return self._was_set
        return bool(self._event.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True if it is set.

        Once the executor closed the cluster, True if the flag was set then;
        otherwise nothing could ever set it, and ``ExecutorClosed`` is raised.
        """
        if self._gone is None:
            try:
                with self._waits():
                    return bool(self._event.wait(timeout=timeout))
            except Exception:
                if not self._detached():
                    raise
        if self._was_set:
            return True
        raise self._unreachable()

    async def await_(self, timeout: float | None = None) -> bool:
        """``await event.await_()``: the async twin of ``wait``."""
        return await _awaited(lambda: self.wait(timeout))

    def statistics(self) -> _common.EventStatistics:
        """Return a snapshot: the flag (from the scheduler), the waiters of this copy."""
        is_set = self.is_set()
        with self._mutex:
            return _common.EventStatistics(is_set=is_set, waiting=self._waiting)

    def _snapshot(self) -> None:
        self._was_set = bool(self._event.is_set())


@final
class DaskValue(_Shared):
    """One value shared by the program and its tasks: a Dask ``Variable`` and ``Lock``.

    A Dask ``Variable`` alone is not atomic across a read and a write, so
    ``set`` and ``update`` take the lock: ``v.update(lambda n: n + 1)`` from
    many tasks at once loses no increment.
    """

    _kind = "value"

    def __init__(
        self,
        client: Client | None,
        initial: Any = None,
        name: str | None = None,
    ) -> None:
        create = name is None
        super().__init__(name)
        self._variable = distributed.Variable(self.name, client=client)
        self._lock = distributed.Lock(f"{self.name}-lock", **_binding(client))
        self._writes = 0
        self._last: bytes | None = None  # the pickled value when the cluster went
        if create:
            self._variable.set(dumps_value(initial, "initial value"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskValue, (None, None, self.name))

    def __repr__(self) -> str:
        return f"<taskkit dask value {self.name}>"

    def get(self) -> Any:
        """Return the current value."""
        if self._gone is not None:
            if self._last is None:
                raise self._unreachable()
            return loads(self._last)
        return loads(self._variable.get())

    def set(self, value: Any) -> None:
        """Replace the value."""
        self._check_reachable()
        data = dumps_value(value, "value")
        with self._lock:
            self._variable.set(data)
        with self._mutex:
            self._writes += 1

    def update(self, fn: Callable[[Any], Any]) -> Any:
        """Replace the value with ``fn(value)`` atomically and return the new value."""
        self._check_reachable()
        with self._lock:
            new = fn(loads(self._variable.get()))
            self._variable.set(dumps_value(new, "value"))
        with self._mutex:
            self._writes += 1
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

    def statistics(self) -> _common.ValueStatistics:
        """Return the writes (``set`` and ``update``) made through this copy."""
        with self._mutex:
            return _common.ValueStatistics(writes=self._writes, nbytes=0)

    def _snapshot(self) -> None:
        self._last = self._variable.get()
