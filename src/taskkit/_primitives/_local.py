"""Primitives for tasks that share one process: serial, thread, coroutine and asyncio.

Each primitive keeps its state behind one private ``_thread`` lock (the *mutex*,
never held while anyone waits) and parks waiters in ``ParkingLot``s (``_waiting``).
Its state functions (``_try_put``, ``_try_get``, ``_try``) run under the mutex and
wake or hand over to waiters; each operation that can wait is one ``Wait``
description, run by both faces::

    put / release / set ──► mutex: change state ──► lot.hand_over / unpark
                                                     ├─ thread:    release its lock
                                                     └─ coroutine: set its Future (any loop)
    get / aget ─► block / ablock(_GET) ─► mutex: _try_get ─ item? ─► return it
                                               └─ no: park in _getters, sleep, retry

The blocking faces work from any thread, the ``a``-prefixed twins from asyncio and
from taskkit's coroutine scheduler, and both kinds of caller can wait on the same
primitive at once.  A woken thread always re-checks the state, so a waiter that
times out at the moment it is woken never loses the item or unit it was woken for.
A coroutine first in line is not just woken but handed what was released or put
(the lock stays held for it, the unit or item is its own), so a task that comes later
cannot take it first: the longest waiter gets it, as with ``asyncio.Lock``.  One that
is cancelled or times out just then passes it on (``_give_back``).

On the coroutine scheduler's own thread a blocking face never waits (a plain
function task there holds the thread every other task needs): the lots' ``refuse``
raises ``BlockingCallError`` naming the ``a``-prefixed twin.

Speed.  ``Queue`` is a deque under one lock, cheaper than ``queue.Queue``'s
three conditions.  ``ThreadLock`` is a C semaphore (``_multiprocessing.SemLock``,
the object inside ``multiprocessing.Lock``; created and unlinked at once, so it is
private to this process): ``with lock:`` and ``lock.release`` are its C methods, and
``lock.acquire`` is a C ``partial``, so the uncontended path runs no Python code.
The first time a coroutine waits for it, or when a ``taskkit.testing`` run must
control it, the lock switches (``__class__`` assignment) to ``Lock``, whose methods
also wake coroutines and report to the testing scheduler.

Controlled runs.  Every operation first calls ``_waiting.switch`` (a switch point),
and ``_waiting``'s controlled strategy states a blocking wait as a condition, so the
scheduler sees it and can report a deadlock instead of hanging.

The serial backend's primitives (``Serial*``) refuse to wait forever: every task
runs in the caller, so a ``get`` on an empty queue with no timeout could never end;
it raises ``Deadlock`` instead of hanging.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar

from .._backends.coroutine._scheduler import _here
from .._core._compat import LockType, RLock, SemLock, allocate_lock, semlock_is_zero
from .._core._errors import BlockingCallError, Deadlock, QueueClosed, UsageError
from .._core._future import Future
from . import _common
from ._common import AcquireContext, check_count, check_timeout, shut_down
from ._faces import AcquireFaces, EventFaces
from ._waiting import (
    NOT_READY,
    TIMED_OUT,
    ParkingLot,
    Wait,
    ablock,
    aswitch,
    block,
    controlled,
    hold_until,
    observe,
    switch,
)
from ._waiting import active as _control_active

__all__ = [
    "Event",
    "Lock",
    "Queue",
    "Semaphore",
    "SerialEvent",
    "SerialLock",
    "SerialQueue",
    "SerialSemaphore",
    "Value",
    "make_lock",
]

T = TypeVar("T")
L = TypeVar("L", bound="_LockSlots")


class _ShimSemLock:
    """The part of ``SemLock``'s interface that ``Lock`` uses, over a ``_thread`` lock.

    Used where ``_multiprocessing.SemLock`` does not exist (no ``sem_open``).
    """

    __slots__ = ("_raw",)

    def __init__(self, kind: int, value: int, maxvalue: int, name: str, unlink: bool) -> None:
        self._raw = allocate_lock()

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        return self._raw.acquire(block, -1 if timeout is None else timeout)

    def release(self) -> None:
        try:
            self._raw.release()
        except RuntimeError:
            raise ValueError("semaphore or lock released too many times") from None

    def _is_zero(self) -> bool:
        return self._raw.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


if TYPE_CHECKING or SemLock is None:
    _SemLock = _ShimSemLock
    _is_zero = _ShimSemLock._is_zero
else:
    _SemLock = SemLock
    _is_zero = semlock_is_zero

_SEMAPHORE = 1  # multiprocessing.synchronize.SEMAPHORE


def _new_semlock(cls: type[L]) -> L:
    for _ in range(100):
        name = f"/tk-{os.getpid()}-{next(_names)}-{os.urandom(4).hex()}"
        try:
            return cls(_SEMAPHORE, 1, 1, name, True)  # unlinked at once: private
        except FileExistsError:
            continue
    raise OSError("could not create a semaphore: every name tried was taken")


_names = itertools.count()
_sem_acquire = _SemLock.acquire
_sem_release = _SemLock.release

#: How long a coroutine waiting for a lock that began as a ``ThreadLock`` sleeps before
#: it looks again by itself: a thread that entered ``with lock:`` before the lock changed
#: class releases it in C, which wakes no coroutine.  Other locks never poll.
_LOCK_POLL = 0.2


def _not_picklable(obj: object) -> NoReturn:
    raise TypeError(
        f"{type(obj).__name__} belongs to one process and cannot be sent to another; "
        "use the primitives of a process executor (open_executor('process').queue() ...), "
        "which can be passed to process tasks as arguments"
    )


class _InProcess:
    """What every primitive of this module shares: it belongs to one process.

    Pickling it fails with a message pointing at the process family, and
    shutting its executor down has nothing to free (``Queue`` closes itself).
    """

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        _not_picklable(self)


@shut_down.register(_InProcess)
def _shut_down_in_process(primitive: _InProcess, close: bool) -> None:
    pass  # nothing to free: the memory goes with the object


def _forever(what: str) -> Deadlock:
    return Deadlock(
        f"{what} would wait forever: the serial backend runs every task inline in the "
        "caller, so no other task can run to end the wait; give a timeout, or use the "
        "thread backend",
        {"caller": what},
    )


def _refuse_on_scheduler(what: str, twin: str) -> None:
    """Raise ``BlockingCallError`` if the caller is the coroutine scheduler's thread.

    A plain function run there by the coroutine backend holds the one thread every
    task of the scheduler runs on: a wait there could only end by another thread's
    doing, and would stall every task meanwhile, so it fails at once instead.
    """
    if _here.scheduler is not None:
        raise BlockingCallError(
            f"{what} would wait on the coroutine scheduler's thread, where no other task "
            f"can run until it returns; use `{twin}` in an async def task, or run this "
            "function on the thread backend"
        )


def _refuse(w: Wait[Any], obj: object, deadline: float | None) -> None:
    """A thread's wait is refused on the coroutine scheduler's thread."""
    _refuse_on_scheduler(f"{w.stuck} {obj!r}", w.twin)


def _refuse_serial(w: Wait[Any], obj: object, deadline: float | None) -> None:
    """The serial backend also refuses a wait that could never end."""
    if deadline is None:
        raise _forever(f"{w.stuck} {obj!r}")
    _refuse(w, obj, deadline)


# --------------------------------------------------------------------------- queue


class Queue(_InProcess, Generic[T]):
    """A FIFO queue for tasks in one process, with blocking and ``async`` faces.

    ``q.put(x)`` then ``q.get()`` returns ``x``; ``await q.aput(x)`` and
    ``await q.aget()`` are the twins for coroutines.  A bounded queue
    (``maxsize > 0``) makes ``put`` wait while it is full.  After ``close()``,
    ``put`` raises ``QueueClosed`` and ``get`` returns what is left, then raises
    ``QueueClosed``.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_gets",
        "_getters",
        "_items",
        "_maxsize",
        "_mutex",
        "_puts",
        "_putters",
    )

    _serial: ClassVar[bool] = False

    def __init__(self, maxsize: int = 0) -> None:
        check_count(maxsize, 0, "maxsize must be a whole number >= 0")
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._mutex = allocate_lock()
        refuse = _refuse_serial if self._serial else _refuse
        self._getters = ParkingLot(self._mutex, refuse)
        self._putters = ParkingLot(self._mutex, refuse)
        self._closed = False
        self._puts = self._gets = 0

    # -- the state (call under the mutex) ----------------------------------------------

    def _try_put(self, item: T) -> Any:
        if self._closed:
            raise QueueClosed(f"put() on a closed queue {self!r}")
        if self._maxsize and len(self._items) >= self._maxsize:
            return NOT_READY
        self._puts += 1
        getters = self._getters
        if getters and getters.hand_over(item):
            self._gets += 1  # straight to the longest-waiting coroutine (see hand_over)
            return None
        self._items.append(item)
        if getters:
            getters.unpark()
        return None

    def _try_get(self, _: object = None) -> Any:
        if self._items:
            item = self._items.popleft()
            self._gets += 1
            if self._putters:
                self._putters.unpark()
            return item
        if self._closed:
            raise QueueClosed(f"get() on a closed, empty queue {self!r}")
        return NOT_READY

    def _give_back(self, item: T) -> None:
        """An item handed to a coroutine cancelled at once goes back to the front."""
        with self._mutex:
            self._gets -= 1
            if not self._getters.hand_over(item):
                self._items.appendleft(item)
                self._getters.unpark()

    def _has_room(self) -> bool:
        return self._closed or not self._maxsize or len(self._items) < self._maxsize

    def _has_item(self) -> bool:
        return self._closed or bool(self._items)

    # -- the faces: one wait description each (see _waiting) ----------------------------

    def put(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` at the end, waiting up to ``timeout`` seconds for room.

        Raises:
            queue.Full: a bounded queue stayed full for ``timeout`` seconds.
            QueueClosed: the queue is closed.
        """
        if not controlled():
            with self._mutex:
                if self._try_put(item) is not NOT_READY:
                    return
        block(_PUT, self, item, timeout, tried=True)

    def get(self, timeout: float | None = None) -> T:
        """Remove and return the first item, waiting up to ``timeout`` seconds for one.

        Raises:
            queue.Empty: no item came within ``timeout`` seconds.
            QueueClosed: the queue is closed and empty.
        """
        if not controlled():
            with self._mutex:
                item = self._try_get()
            if item is not NOT_READY:
                return item  # type: ignore[no-any-return]
        return block(_GET, self, None, timeout, tried=True)  # type: ignore[no-any-return]

    async def aput(self, item: T, timeout: float | None = None) -> None:
        """The awaitable twin of ``put``: waits for room without blocking the event loop."""
        await ablock(_PUT, self, item, timeout)

    async def aget(self, timeout: float | None = None) -> T:
        """The awaitable twin of ``get``: waits for an item without blocking the event loop."""
        return await ablock(_GET, self, None, timeout)

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room at once.

        Raises:
            queue.Full: the queue is bounded and full.
            QueueClosed: the queue is closed.
        """
        switch("queue.put", self)
        with self._mutex:
            if self._try_put(item) is NOT_READY:
                raise queue.Full

    def get_nowait(self) -> T:
        """Remove and return the first item if there is one at once.

        Raises:
            queue.Empty: the queue is empty.
            QueueClosed: the queue is closed and empty.
        """
        switch("queue.get", self)
        with self._mutex:
            item = self._try_get()
        if item is NOT_READY:
            raise queue.Empty
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Refuse new items; ``get`` drains what is left, then raises ``QueueClosed``.

        Every waiting ``get`` and ``put`` wakes; closing twice is harmless.
        """
        switch("queue.close", self)
        with self._mutex:
            self._closed = True
            self._getters.unpark_all()
            self._putters.unpark_all()

    # -- snapshots ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        observe("queue.closed", self)
        return self._closed

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    def qsize(self) -> int:
        """The number of items in the queue now."""
        observe("queue.qsize", self)
        return len(self._items)

    def empty(self) -> bool:
        """True if the queue holds no items now."""
        observe("queue.empty", self)
        return not self._items

    def full(self) -> bool:
        """True if the queue is bounded and holds ``maxsize`` items now."""
        observe("queue.full", self)
        return bool(self._maxsize) and len(self._items) >= self._maxsize

    def statistics(self) -> _common.QueueStatistics:
        """Return a snapshot of the queue's counters."""
        observe("statistics", self)
        with self._mutex:
            return _common.QueueStatistics(
                size=len(self._items),
                maxsize=self._maxsize,
                closed=self._closed,
                puts=self._puts,
                gets=self._gets,
                waiting_getters=len(self._getters),
                waiting_putters=len(self._putters),
            )

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        bound = f"/{self._maxsize}" if self._maxsize else ""
        return f"<taskkit Queue {len(self._items)}{bound} items{state}>"


_PUT: Wait[None] = Wait(
    "put() on", Queue._try_put, Queue._has_room, "_putters", timed_out=queue.Full
)
_PUT.stuck, _PUT.twin = "put() on a full", "await q.aput(item)"
_GET: Wait[Any] = Wait(
    "get() on", Queue._try_get, Queue._has_item, "_getters", timed_out=queue.Empty
)
_GET.stuck, _GET.twin, _GET.give_back = "get() on an empty", "await q.aget()", Queue._give_back


@shut_down.register(Queue)
def _shut_down_queue(queue: Queue[Any], close: bool) -> None:
    if close:
        queue.close()


class SerialQueue(Queue[T]):
    """The serial backend's queue: a wait that could never end raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# --------------------------------------------------------------------------- lock


class _LockLot(ParkingLot):
    """Where coroutines wait for a lock; threads block on the ``SemLock`` itself.

    The lock's state is the ``SemLock``, which ``ThreadLock`` threads take and free in
    C without the mutex, so a coroutine looks again once it is in line, and one that
    waits for a lock that began as a ``ThreadLock`` wakes every ``_LOCK_POLL`` seconds
    to look by itself (a release in C wakes no coroutine).
    """

    __slots__ = ("polls",)

    def __init__(self, mutex: Any, polls: bool) -> None:
        super().__init__(mutex)
        self.polls = polls

    def park(
        self, w: Wait[Any], obj: Any, arg: Any, deadline: float | None, thread: bool
    ) -> tuple[Any, Any]:
        if _sem_acquire(obj, False):
            return True, None
        if deadline is not None and time.monotonic() >= deadline:
            return TIMED_OUT, None
        waiter: Future[Any] = Future()
        with self.mutex:
            self.append(waiter)
        if type(obj) is ThreadLock:
            obj.__class__ = Lock  # type: ignore[assignment]  # release() now hands it over
        if _sem_acquire(obj, False):  # released before we were in line
            with self.mutex:
                self.discard(waiter)
            return True, None
        return NOT_READY, waiter

    def limit(self, deadline: float | None) -> float | None:
        if not self.polls:
            return deadline
        poll = time.monotonic() + _LOCK_POLL
        return poll if deadline is None else min(deadline, poll)


class _LockSlots(_SemLock):
    """The storage every lock class shares, so that an instance can change class."""

    __slots__ = ("__weakref__", "_mutex", "_waiters", "acquire", "previous_holder_died")


class Lock(_InProcess, AcquireContext, _LockSlots):
    """A mutual-exclusion lock for tasks in one process; ``async with`` works too.

    ``with lock:`` holds it for the block, as ``threading.Lock`` does;
    ``async with lock:`` waits for it without blocking the event loop.  Any
    thread may release it.  ``previous_holder_died`` is always False here:
    only process locks can be taken over from a dead holder.
    """

    __slots__ = ()

    _serial: ClassVar[bool] = False
    _mutex: LockType
    _waiters: _LockLot
    previous_holder_died: bool

    def acquire(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait up to ``timeout`` seconds (forever if ``None``) for the lock; True if acquired."""
        if controlled():
            return block(_LOCK, self, None, timeout)
        if _sem_acquire(self, False):
            return True
        deadline = check_timeout(timeout)
        if timeout == 0:
            return False
        if self._serial and deadline is None:
            raise _forever(f"acquire() of a held {self!r}")
        _refuse_on_scheduler(f"acquire() of a held {self!r}", "async with lock")
        return bool(_sem_acquire(self, True, timeout))

    def _try(self, _: object = None) -> Any:
        return True if _sem_acquire(self, False) else NOT_READY

    def _free(self) -> bool:
        return not _is_zero(self)

    def release(self) -> None:
        """Release the lock (any thread may).

        Raises:
            UsageError: the lock is not held.
        """
        switch("lock.release", self)
        if self._waiters:
            with self._mutex:
                if _is_zero(self) and self._waiters.hand_over(True):
                    return  # still held: by the longest-waiting coroutine now
        try:
            _sem_release(self)
        except ValueError:
            raise UsageError(f"release() of an unlocked {self!r}") from None
        if self._waiters:
            # A coroutine joined the line just as the lock was freed, after the look
            # above: take the lock back for it, or it would wait for a release to come.
            with self._mutex:
                if _sem_acquire(self, False) and not self._waiters.hand_over(True):
                    _sem_release(self)

    def _give_back(self, _: object) -> None:
        self.release()  # handed over just as the coroutine was cancelled: pass it on

    def locked(self) -> bool:
        """True if the lock is held now."""
        observe("lock.locked", self)
        return bool(_is_zero(self))

    async def aacquire(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``acquire``: waits without blocking the event loop."""
        return await ablock(_LOCK, self, None, timeout)

    def statistics(self) -> _common.LockStatistics:
        """Return a snapshot of the lock's state."""
        observe("statistics", self)
        return _common.LockStatistics(
            locked=bool(_is_zero(self)), holder_pid=None, takeovers=0, waiting=len(self._waiters)
        )

    def __repr__(self) -> str:
        return f"<taskkit Lock {'locked' if _is_zero(self) else 'unlocked'}>"


# Threads block on the SemLock itself: only coroutines and controlled tasks use this.
_LOCK: Wait[bool] = Wait(
    "acquire() of", Lock._try, Lock._free, "_waiters", give_back=Lock._give_back
)


class ThreadLock(Lock):
    """The thread backend's lock: ``Lock`` with its fast path in C (see the module notes).

    Until a coroutine waits for it or a controlled run needs it, ``acquire`` is
    a C ``partial`` stored on the instance and ``release``, ``__enter__`` and
    ``__exit__`` are ``SemLock``'s own C methods.
    """

    __slots__ = ()


# Found before Lock's methods: the instance's ``acquire`` slot (a C partial) and SemLock's
# own C methods.  (Set after the class body: there, these names would shadow the slot.)
for _name, _attr in {
    "acquire": _LockSlots.__dict__["acquire"],
    "release": _SemLock.release,
    "__enter__": _SemLock.__enter__,
    "__exit__": _SemLock.__exit__,
}.items():
    setattr(ThreadLock, _name, _attr)
del _name, _attr


class SerialLock(Lock):
    """The serial backend's lock: acquiring a held lock with no timeout raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# Live ThreadLocks, so that a controlled run can make them all report to it.
_fast_locks: weakref.WeakSet[ThreadLock] = weakref.WeakSet()


def _testing_loaded() -> bool:
    return _control_active() or "taskkit.testing" in sys.modules


def control_all() -> None:
    """Make every live ``ThreadLock`` a ``Lock`` (whose methods a controlled run sees)."""
    for lock in list(_fast_locks):
        if type(lock) is ThreadLock:
            lock.__class__ = Lock  # type: ignore[assignment]


def make_lock(cls: type[Lock] = Lock) -> Lock:
    """Create a lock of class ``cls`` (``ThreadLock`` gets its C fast path)."""
    if cls is ThreadLock and _testing_loaded():
        control_all()  # taskkit.testing is loaded: locks must be visible to its runs
        cls = Lock
    lock = _new_semlock(cls)
    lock._mutex = allocate_lock()
    lock._waiters = _LockLot(lock._mutex, polls=cls is ThreadLock)
    lock.previous_holder_died = False
    # ThreadLock reads this slot: acquire(timeout) is SemLock.acquire(self, True, timeout),
    # the fixed signature, all in C.  Lock's own acquire method is found before the slot.
    _LockSlots.__dict__["acquire"].__set__(lock, functools.partial(_sem_acquire, lock, True))
    if cls is ThreadLock:
        _fast_locks.add(lock)  # type: ignore[arg-type]
    return lock


# --------------------------------------------------------------------------- event


class _EventLot(ParkingLot):
    """An event's lot: reading the flag needs no mutex (a set flag is never taken)."""

    __slots__ = ()

    def attempt(self, w: Wait[Any], obj: Any, arg: Any) -> Any:
        return w.attempt(obj, arg)


class Event(EventFaces, _InProcess):
    """A flag tasks can wait for: ``set()`` wakes every ``wait()`` and ``await_()``."""

    __slots__ = ("__weakref__", "_flag", "_mutex", "_waiters")

    _serial: ClassVar[bool] = False

    def __init__(self) -> None:
        self._flag = False
        self._mutex = allocate_lock()
        self._waiters = _EventLot(self._mutex, _refuse_serial if self._serial else _refuse)

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        switch("event.set", self)
        with self._mutex:
            self._flag = True
            self._waiters.unpark_all()

    def clear(self) -> None:
        """Clear the flag; later waits block until the next ``set()``."""
        switch("event.clear", self)
        self._flag = False

    def is_set(self) -> bool:
        """True if the flag is set."""
        observe("event.is_set", self)
        return self._flag

    def _is_set(self) -> bool:
        return self._flag

    def _try(self, _: object = None) -> Any:
        return True if self._flag else NOT_READY

    def statistics(self) -> _common.EventStatistics:
        """Return a snapshot of the event's state."""
        observe("statistics", self)
        return _common.EventStatistics(is_set=self._flag, waiting=len(self._waiters))

    _wait = Wait(
        "wait() on",
        _try,
        _is_set,
        "_waiters",
        once=True,
        aname="await_() on",
        stuck="wait() on a clear",
        twin="await event.await_()",
    )

    def __repr__(self) -> str:
        return f"<taskkit Event {'set' if self._flag else 'clear'}>"


class SerialEvent(Event):
    """The serial backend's event: waiting forever for a clear flag raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# ----------------------------------------------------------------------- semaphore


class Semaphore(_InProcess, AcquireFaces):
    """A counter of free units: ``acquire`` takes one (waiting if none), ``release`` returns one."""

    __slots__ = ("__weakref__", "_initial", "_mutex", "_value", "_waiters")

    _serial: ClassVar[bool] = False

    def __init__(self, value: int = 1) -> None:
        check_count(value, 0, "a semaphore's count must be a whole number >= 0")
        self._value = self._initial = value
        self._mutex = allocate_lock()
        self._waiters = ParkingLot(self._mutex, _refuse_serial if self._serial else _refuse)

    def _free(self) -> bool:
        return self._value > 0

    def _try(self, _: object = None) -> Any:
        if self._value > 0:
            self._value -= 1
            return True
        return NOT_READY

    def _give(self, n: int) -> None:
        # Under the mutex: each unit goes to the longest-waiting coroutine, if one is
        # first in line, or back to the count (waking a thread).
        for _ in range(n):
            if not self._waiters.hand_over(True):
                self._value += 1
                self._waiters.unpark()

    def _give_back(self, _: object) -> None:
        with self._mutex:
            self._give(1)  # handed a unit just as the coroutine was cancelled

    def release(self, n: int = 1) -> None:
        """Return ``n`` units and wake as many waiters."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        switch("semaphore.release", self)
        with self._mutex:
            self._give(n)

    @property
    def value(self) -> int:
        """The number of free units now."""
        observe("semaphore.value", self)
        return self._value

    def statistics(self) -> _common.SemaphoreStatistics:
        """Return a snapshot of the semaphore's state."""
        observe("statistics", self)
        return _common.SemaphoreStatistics(
            value=self._value, initial=self._initial, waiting=len(self._waiters)
        )

    _acquire = Wait(
        "acquire() of",
        _try,
        _free,
        "_waiters",
        twin="await semaphore.aacquire()",
        give_back=_give_back,
    )

    def __repr__(self) -> str:
        return f"<taskkit Semaphore value={self._value}>"


class SerialSemaphore(Semaphore):
    """The serial backend's semaphore: waiting forever for a unit raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# --------------------------------------------------------------------------- value


class Value(_InProcess, Generic[T]):
    """One shared value with an atomic read-modify-write: ``v.update(lambda x: x + 1)``.

    ``update(fn)`` runs ``fn(current)`` and stores its result with no other
    ``set`` or ``update`` in between, so a counter needs no separate lock.  ``fn``
    may call ``get()`` (the lock inside is reentrant) and should be quick.
    """

    __slots__ = ("__weakref__", "_busy", "_mutex", "_value", "_writes")

    def __init__(self, initial: T) -> None:
        self._value = initial
        self._mutex = RLock()
        self._writes = 0
        self._busy = False

    def get(self) -> T:
        """Return the current value."""
        observe("value.get", self)
        return self._value

    def set(self, value: T) -> None:
        """Replace the value."""
        switch("value.set", self)
        self._store(value)

    def _store(self, value: T) -> T:
        with self._mutex:
            self._value = value
            self._writes += 1
            return value

    def _idle(self) -> bool:
        return not self._busy

    def update(self, fn: Callable[[T], T]) -> T:
        """Store ``fn(current)`` atomically and return it.

        If ``fn`` raises, the value is unchanged and the exception propagates.
        """
        # In a controlled run one task runs at a time, but fn may contain switch points:
        # keep other updates out until it returns.
        if not hold_until(self._idle, "update() of", self):
            with self._mutex:
                return self._store(fn(self._value))
        self._busy = True
        try:
            with self._mutex:
                return self._store(fn(self._value))
        finally:
            self._busy = False

    async def aget(self) -> T:
        """The awaitable twin of ``get``."""
        await aswitch("value.get", self)
        return self._value

    async def aset(self, value: T) -> None:
        """The awaitable twin of ``set``."""
        await aswitch("value.set", self)
        self._store(value)

    async def aupdate(self, fn: Callable[[T], T]) -> T:
        """The awaitable twin of ``update`` (``fn`` is a plain, quick function)."""
        await aswitch("value.update", self)
        with self._mutex:
            return self._store(fn(self._value))

    def statistics(self) -> _common.ValueStatistics:
        """Return a snapshot of the value's counters."""
        observe("statistics", self)
        return _common.ValueStatistics(writes=self._writes, nbytes=0)

    def __repr__(self) -> str:
        return f"<taskkit Value {self._value!r}>"
