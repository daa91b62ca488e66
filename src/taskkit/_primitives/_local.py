"""Primitives for tasks that share one process: serial, thread, coroutine and asyncio.

Each primitive keeps its state behind one private ``_thread`` lock (the *mutex*,
never held while anyone waits) and a FIFO of waiters (see ``_common``)::

    put / release / set ──► mutex: change state ──► wake the first waiter
                                                     ├─ thread:    release its lock
                                                     └─ coroutine: set its Future (any loop)
    get / acquire / wait ─► mutex: state ready? ── yes ──► take it, return
                                 └─ no: enqueue a waiter, drop the mutex, block or await, retry

The blocking faces work from any thread, the ``a``-prefixed twins from asyncio and
from taskkit's coroutine scheduler, and both kinds of caller can wait on the same
primitive at once.  A woken thread always re-checks the state, so a waiter that
times out at the moment it is woken never loses the item or unit it was woken for.
A coroutine first in line is not just woken but handed what was released or put
(the lock stays held for it, the unit or item is its own: ``_hand_over``), so a task
that comes later cannot take it first: the longest waiter gets it, as with
``asyncio.Lock``.  One that is cancelled or times out just then passes it on.

On the coroutine scheduler's own thread a blocking face never waits (a plain
function task there holds the thread every other task needs): it raises
``BlockingCallError`` naming its ``a``-prefixed twin.

Speed.  ``Queue`` is a deque under one lock, cheaper than ``queue.Queue``'s
three conditions.  ``ThreadLock`` is a C semaphore (``_multiprocessing.SemLock``,
the object inside ``multiprocessing.Lock``; created and unlinked at once, so it is
private to this process): ``with lock:`` and ``lock.release`` are its C methods, and
``lock.acquire`` is a C ``partial``, so the uncontended path runs no Python code.
The first time a coroutine waits for it, or when a ``taskkit.testing`` run must
control it, the lock switches (``__class__`` assignment) to ``Lock``, whose methods
also wake coroutines and report to the testing scheduler.

Controlled runs.  When the caller is a task of a ``taskkit.testing`` run, every
operation first calls ``taskkit._control`` (a switch point) and a blocking wait is
stated as a condition (``wait_until``), so the scheduler sees it and can report a
deadlock instead of hanging.

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
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar

from .. import _control
from .._compat import LockType, RLock, SemLock, allocate_lock, semlock_is_zero
from .._coroutine._scheduler import _here
from .._errors import BlockingCallError, Deadlock, QueueClosed, UsageError
from .._future import Future
from ._common import (
    AcquireContext,
    EventStatistics,
    LockStatistics,
    QueueStatistics,
    SemaphoreStatistics,
    ValueStatistics,
    Waiting,
    await_waiter,
    check_timeout,
    remaining,
    thread_waiter,
    wake_all,
    wake_one,
)

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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

    def _shutdown(self, close: bool) -> None:
        pass  # nothing to free: the memory goes with the object

    def __reduce__(self) -> NoReturn:
        _not_picklable(self)


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


def _check_controlled() -> Any:
    """The controlled run if the caller is one of its tasks, else None (one global read)."""
    h = _control.hook
    if h is not None and h.controls_caller():
        return h
    return None


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
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be a whole number >= 0, got {maxsize!r}")
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._mutex = allocate_lock()
        self._getters: deque[Any] = deque()
        self._putters: deque[Any] = deque()
        self._closed = False
        self._puts = self._gets = 0

    # -- the non-blocking core (call under the mutex) ------------------------------------

    def _try_put(self, item: T) -> bool:
        if self._closed:
            raise QueueClosed(f"put() on a closed queue {self!r}")
        if self._maxsize and len(self._items) >= self._maxsize:
            return False
        self._puts += 1
        if self._getters and _hand_over(self._getters, (item,)):
            self._gets += 1  # straight to the longest-waiting coroutine (see _hand_over)
            return True
        self._items.append(item)
        if self._getters:
            wake_one(self._getters)
        return True

    def _take(self) -> T:
        item = self._items.popleft()
        self._gets += 1
        if self._putters:
            wake_one(self._putters)
        return item

    def _has_room(self) -> bool:
        return self._closed or not self._maxsize or len(self._items) < self._maxsize

    def _has_item(self) -> bool:
        return self._closed or bool(self._items)

    # -- blocking faces -------------------------------------------------------------------

    def put(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` at the end, waiting up to ``timeout`` seconds for room.

        Raises:
            queue.Full: a bounded queue stayed full for ``timeout`` seconds.
            QueueClosed: the queue is closed.
        """
        h = _check_controlled()
        if h is not None:
            self._controlled_wait(h, self._has_room, "put", timeout, queue.Full)
            with self._mutex:
                if not self._try_put(item):
                    raise queue.Full
            return
        with self._mutex:
            if self._try_put(item):
                return
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._try_put(item):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise queue.Full
                if self._serial and deadline is None:
                    raise _forever(f"put() on a full {self!r}")
                _refuse_on_scheduler(f"put() on a full {self!r}", "await q.aput(item)")
                waiter = thread_waiter()
                self._putters.append(waiter)
            self._block(waiter, deadline, self._putters)

    def get(self, timeout: float | None = None) -> T:
        """Remove and return the first item, waiting up to ``timeout`` seconds for one.

        Raises:
            queue.Empty: no item came within ``timeout`` seconds.
            QueueClosed: the queue is closed and empty.
        """
        h = _check_controlled()
        if h is not None:
            self._controlled_wait(h, self._has_item, "get", timeout, queue.Empty)
            return self._take_now()  # no switch point: the wait's ready() saw the item
        with self._mutex:
            if self._items:
                return self._take()
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._items:
                    return self._take()
                if self._closed:
                    raise QueueClosed(f"get() on a closed, empty queue {self!r}")
                if deadline is not None and time.monotonic() >= deadline:
                    raise queue.Empty
                if self._serial and deadline is None:
                    raise _forever(f"get() on an empty {self!r}")
                _refuse_on_scheduler(f"get() on an empty {self!r}", "await q.aget()")
                waiter = thread_waiter()
                self._getters.append(waiter)
            self._block(waiter, deadline, self._getters)

    def _block(self, waiter: Any, deadline: float | None, waiters: deque[Any]) -> None:
        left = remaining(deadline)
        if not waiter.acquire(True, -1 if left is None else left):
            with self._mutex:
                try:
                    waiters.remove(waiter)
                except ValueError:
                    pass  # woken just as it timed out: the caller re-checks the state

    def _controlled_wait(
        self,
        h: Any,
        ready: Callable[[], bool],
        op: str,
        timeout: float | None,
        error: type[Exception],
    ) -> None:
        if not h.wait_until(ready, Waiting(f"{op}() on", self), self, timeout):
            raise error

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room at once.

        Raises:
            queue.Full: the queue is bounded and full.
            QueueClosed: the queue is closed.
        """
        h = _control.hook
        if h is not None:
            h.switch("queue.put", self)
        with self._mutex:
            if not self._try_put(item):
                raise queue.Full

    def get_nowait(self) -> T:
        """Remove and return the first item if there is one at once.

        Raises:
            queue.Empty: the queue is empty.
            QueueClosed: the queue is closed and empty.
        """
        h = _control.hook
        if h is not None:
            h.switch("queue.get", self)
        return self._take_now()

    def _take_now(self) -> T:
        with self._mutex:
            if self._items:
                return self._take()
            if self._closed:
                raise QueueClosed(f"get() on a closed, empty queue {self!r}")
        raise queue.Empty

    # -- async faces ----------------------------------------------------------------------

    async def aput(self, item: T, timeout: float | None = None) -> None:
        """The awaitable twin of ``put``: waits for room without blocking the event loop."""
        if _control.controlled():
            if not await _control.await_until(
                self._has_room, Waiting("aput() on", self), self, timeout
            ):
                raise queue.Full
            with self._mutex:
                if not self._try_put(item):
                    raise queue.Full
            return
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._try_put(item):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise queue.Full
                waiter: Future[bool] = Future()
                self._putters.append(waiter)
            await self._await(waiter, deadline, self._putters, self._has_room)

    async def aget(self, timeout: float | None = None) -> T:
        """The awaitable twin of ``get``: waits for an item without blocking the event loop."""
        if _control.controlled():
            if not await _control.await_until(
                self._has_item, Waiting("aget() on", self), self, timeout
            ):
                raise queue.Empty
            return self._take_now()
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._items:
                    return self._take()
                if self._closed:
                    raise QueueClosed(f"aget() on a closed, empty queue {self!r}")
                if deadline is not None and time.monotonic() >= deadline:
                    raise queue.Empty
                waiter: Future[Any] = Future()
                self._getters.append(waiter)
            handed = await self._await(waiter, deadline, self._getters, self._has_item)
            if type(handed) is tuple:
                return handed[0]  # type: ignore[no-any-return]  # put() handed it over

    async def _await(
        self,
        waiter: Future[Any],
        deadline: float | None,
        waiters: deque[Any],
        ready: Callable[[], bool],
    ) -> Any:
        """Await ``waiter``; return what woke it (True, False, or an item handed over)."""
        try:
            woke = await await_waiter(waiter, deadline)
        except BaseException:
            # Cancelled.  If a put or get had already woken us, hand that wake-up on,
            # or the next waiter would sleep although the queue is ready for it; an item
            # handed to us goes back to the front of the queue, or to the next getter.
            with self._mutex:
                if _withdraw(waiters, waiter):
                    handed = waiter.result()
                    if type(handed) is tuple:
                        self._gets -= 1
                        if not _hand_over(waiters, handed):
                            self._items.appendleft(handed[0])
                            wake_one(waiters)
                    elif ready():
                        wake_one(waiters)
            raise
        if not woke:
            with self._mutex:
                _discard(waiters, waiter)
        return woke

    # -- state ----------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new items; ``get`` drains what is left, then raises ``QueueClosed``.

        Every waiting ``get`` and ``put`` wakes; closing twice is harmless.
        """
        h = _control.hook
        if h is not None:
            h.switch("queue.close", self)
        with self._mutex:
            self._closed = True
            wake_all(self._getters)
            wake_all(self._putters)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        if _control.hook is not None:
            _control.observe("queue.closed", self)
        return self._closed

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    def qsize(self) -> int:
        """The number of items in the queue now."""
        if _control.hook is not None:
            _control.observe("queue.qsize", self)
        return len(self._items)

    def empty(self) -> bool:
        """True if the queue holds no items now."""
        if _control.hook is not None:
            _control.observe("queue.empty", self)
        return not self._items

    def full(self) -> bool:
        """True if the queue is bounded and holds ``maxsize`` items now."""
        if _control.hook is not None:
            _control.observe("queue.full", self)
        return bool(self._maxsize) and len(self._items) >= self._maxsize

    def statistics(self) -> QueueStatistics:
        """Return a snapshot of the queue's counters."""
        if _control.hook is not None:
            _control.observe("statistics", self)
        with self._mutex:
            return QueueStatistics(
                size=len(self._items),
                maxsize=self._maxsize,
                closed=self._closed,
                puts=self._puts,
                gets=self._gets,
                waiting_getters=len(self._getters),
                waiting_putters=len(self._putters),
            )

    def _shutdown(self, close: bool) -> None:
        if close:
            self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        bound = f"/{self._maxsize}" if self._maxsize else ""
        return f"<taskkit Queue {len(self._items)}{bound} items{state}>"


def _discard(waiters: deque[Any], waiter: object) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass


def _hand_over(waiters: deque[Any], gift: object = True) -> bool:
    """Give what is being released or put to the longest-waiting coroutine (call under
    the mutex): the waiter's result is ``gift`` (True, or a queue's ``(item,)``).

    True if a coroutine's waiter took it: the lock stays held, the unit stays taken,
    or the item skips the queue, for that coroutine, so no task that comes later can
    take it first (the longest waiter gets it, as ``asyncio.Lock`` hands it over).
    False if the line is empty or a thread is first in it: a thread cannot be handed
    anything, so the caller frees it and wakes that thread, which then takes it itself.
    """
    while waiters:
        waiter = waiters[0]
        if type(waiter) is LockType:
            return False
        waiters.popleft()
        if waiter._try_set_result(gift):
            return True
        # a coroutine that timed out or was cancelled: the next one
    return False


def _withdraw(waiters: deque[Any], waiter: Future[bool]) -> bool:
    """Take a coroutine's waiter out of the line (call under the mutex); True if it had
    been handed what it waited for meanwhile, which the caller must then pass on."""
    if waiter._try_set_result(False) or waiter.cancelled():
        _discard(waiters, waiter)
        return False
    return bool(waiter.result())


class SerialQueue(Queue[T]):
    """The serial backend's queue: a wait that could never end raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# --------------------------------------------------------------------------- lock


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
    _waiters: deque[Future[bool]]
    previous_holder_died: bool

    def acquire(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait up to ``timeout`` seconds (forever if ``None``) for the lock; True if acquired."""
        h = _check_controlled()
        if h is not None:
            return self._acquire_controlled(h, timeout)
        if _sem_acquire(self, False):
            return True
        deadline = check_timeout(timeout)
        if timeout == 0:
            return False
        if self._serial and deadline is None:
            raise _forever(f"acquire() of a held {self!r}")
        _refuse_on_scheduler(f"acquire() of a held {self!r}", "async with lock")
        return bool(_sem_acquire(self, True, timeout))

    def _acquire_controlled(self, h: Any, timeout: float | None) -> bool:
        while True:
            if not h.wait_until(self._free, Waiting("acquire() of", self), self, timeout):
                return False
            if _sem_acquire(self, False):
                return True  # else a thread outside the run took it first: wait again

    def _free(self) -> bool:
        return not _is_zero(self)

    def release(self) -> None:
        """Release the lock (any thread may).

        Raises:
            UsageError: the lock is not held.
        """
        h = _control.hook
        if h is not None:
            h.switch("lock.release", self)
        if self._waiters:
            with self._mutex:
                if _is_zero(self) and _hand_over(self._waiters):
                    return  # still held: by the longest-waiting coroutine now
        try:
            _sem_release(self)
        except ValueError:
            raise UsageError(f"release() of an unlocked {self!r}") from None
        if self._waiters:
            # A coroutine joined the line just as the lock was freed, after the look
            # above: take the lock back for it, or it would wait for a release to come.
            with self._mutex:
                if _sem_acquire(self, False) and not _hand_over(self._waiters):
                    _sem_release(self)

    def locked(self) -> bool:
        """True if the lock is held now."""
        if _control.hook is not None:
            _control.observe("lock.locked", self)
        return bool(_is_zero(self))

    async def aacquire(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``acquire``: waits without blocking the event loop."""
        if _control.controlled():
            while True:
                if not await _control.await_until(
                    self._free, Waiting("aacquire() of", self), self, timeout
                ):
                    return False
                if _sem_acquire(self, False):
                    return True
        deadline = check_timeout(timeout)
        polls = self in _fast_locks  # began as a ThreadLock (see _LOCK_POLL)
        while True:
            if _sem_acquire(self, False):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            waiter: Future[bool] = Future()
            with self._mutex:
                self._waiters.append(waiter)
            if type(self) is ThreadLock:
                self.__class__ = Lock  # type: ignore[assignment]  # release() now hands it over
            if _sem_acquire(self, False):  # released before we were enqueued
                with self._mutex:
                    _discard(self._waiters, waiter)
                return True
            limit = deadline
            if polls:
                poll = time.monotonic() + _LOCK_POLL
                limit = poll if deadline is None else min(deadline, poll)
            try:
                handed = await await_waiter(waiter, limit)
            except BaseException:
                with self._mutex:
                    handed = _withdraw(self._waiters, waiter)
                if handed:
                    self.release()  # handed over just as this task was cancelled: pass it on
                raise
            if handed:
                return True  # release() left it held, for this task
            with self._mutex:
                _discard(self._waiters, waiter)

    def statistics(self) -> LockStatistics:
        """Return a snapshot of the lock's state."""
        if _control.hook is not None:
            _control.observe("statistics", self)
        return LockStatistics(
            locked=bool(_is_zero(self)), holder_pid=None, takeovers=0, waiting=len(self._waiters)
        )

    def __repr__(self) -> str:
        return f"<taskkit Lock {'locked' if _is_zero(self) else 'unlocked'}>"


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
    return _control.hook is not None or "taskkit.testing" in sys.modules


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
    lock._waiters = deque()
    lock.previous_holder_died = False
    # ThreadLock reads this slot: acquire(timeout) is SemLock.acquire(self, True, timeout),
    # the fixed signature, all in C.  Lock's own acquire method is found before the slot.
    _LockSlots.__dict__["acquire"].__set__(lock, functools.partial(_sem_acquire, lock, True))
    if cls is ThreadLock:
        _fast_locks.add(lock)  # type: ignore[arg-type]
    return lock


# --------------------------------------------------------------------------- event


class Event(_InProcess):
    """A flag tasks can wait for: ``set()`` wakes every ``wait()`` and ``await_()``."""

    __slots__ = ("__weakref__", "_flag", "_mutex", "_waiters")

    _serial: ClassVar[bool] = False

    def __init__(self) -> None:
        self._flag = False
        self._mutex = allocate_lock()
        self._waiters: deque[Any] = deque()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        h = _control.hook
        if h is not None:
            h.switch("event.set", self)
        with self._mutex:
            self._flag = True
            wake_all(self._waiters)

    def clear(self) -> None:
        """Clear the flag; later waits block until the next ``set()``."""
        h = _control.hook
        if h is not None:
            h.switch("event.clear", self)
        self._flag = False

    def is_set(self) -> bool:
        """True if the flag is set."""
        if _control.hook is not None:
            _control.observe("event.is_set", self)
        return self._flag

    def _is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True if it is set."""
        h = _check_controlled()
        if h is not None:
            return bool(h.wait_until(self._is_set, Waiting("wait() on", self), self, timeout))
        if self._flag:
            return True
        deadline = check_timeout(timeout)
        with self._mutex:
            if self.is_set():  # set by another thread meanwhile
                return True
            if self._serial and deadline is None:
                raise _forever(f"wait() on a clear {self!r}")
            _refuse_on_scheduler(f"wait() on a clear {self!r}", "await event.await_()")
            waiter = thread_waiter()
            self._waiters.append(waiter)
        left = remaining(deadline)
        if not waiter.acquire(True, -1 if left is None else left):
            with self._mutex:
                _discard(self._waiters, waiter)
        return self.is_set()

    async def await_(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``wait``."""
        if _control.controlled():
            return bool(
                await _control.await_until(
                    self._is_set, Waiting("await_() on", self), self, timeout
                )
            )
        if self._flag:
            return True
        deadline = check_timeout(timeout)
        with self._mutex:
            if self.is_set():  # set by another thread meanwhile
                return True
            waiter: Future[bool] = Future()
            self._waiters.append(waiter)
        try:
            woke = await await_waiter(waiter, deadline)
        finally:
            with self._mutex:
                _discard(self._waiters, waiter)
        return woke or self.is_set()

    def statistics(self) -> EventStatistics:
        """Return a snapshot of the event's state."""
        if _control.hook is not None:
            _control.observe("statistics", self)
        return EventStatistics(is_set=self._flag, waiting=len(self._waiters))

    def __repr__(self) -> str:
        return f"<taskkit Event {'set' if self._flag else 'clear'}>"


class SerialEvent(Event):
    """The serial backend's event: waiting forever for a clear flag raises ``Deadlock``."""

    __slots__ = ()
    _serial = True


# ----------------------------------------------------------------------- semaphore


class Semaphore(_InProcess, AcquireContext):
    """A counter of free units: ``acquire`` takes one (waiting if none), ``release`` returns one."""

    __slots__ = ("__weakref__", "_initial", "_mutex", "_value", "_waiters")

    _serial: ClassVar[bool] = False

    def __init__(self, value: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"a semaphore's count must be a whole number >= 0, got {value!r}")
        self._value = self._initial = value
        self._mutex = allocate_lock()
        self._waiters: deque[Any] = deque()

    def _free(self) -> bool:
        return self._value > 0

    def _try(self) -> bool:
        if self._value > 0:
            self._value -= 1
            return True
        return False

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a unit, waiting up to ``timeout`` seconds for one; True if taken."""
        h = _check_controlled()
        if h is not None:
            while True:
                if not h.wait_until(self._free, Waiting("acquire() of", self), self, timeout):
                    return False
                with self._mutex:
                    if self._try():
                        return True
        with self._mutex:
            if self._try():
                return True
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._try():
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if self._serial and deadline is None:
                    raise _forever(f"acquire() of {self!r}")
                _refuse_on_scheduler(f"acquire() of {self!r}", "await semaphore.aacquire()")
                waiter = thread_waiter()
                self._waiters.append(waiter)
            left = remaining(deadline)
            if not waiter.acquire(True, -1 if left is None else left):
                with self._mutex:
                    _discard(self._waiters, waiter)

    def release(self, n: int = 1) -> None:
        """Return ``n`` units and wake as many waiters."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        h = _control.hook
        if h is not None:
            h.switch("semaphore.release", self)
        with self._mutex:
            self._give(n)

    def _give(self, n: int) -> None:
        # Under the mutex: each unit goes to the longest-waiting coroutine, if one is
        # first in line, or back to the count (waking a thread).
        for _ in range(n):
            if not _hand_over(self._waiters):
                self._value += 1
                wake_one(self._waiters)

    async def aacquire(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``acquire``."""
        if _control.controlled():
            while True:
                if not await _control.await_until(
                    self._free, Waiting("aacquire() of", self), self, timeout
                ):
                    return False
                with self._mutex:
                    if self._try():
                        return True
        deadline = check_timeout(timeout)
        while True:
            with self._mutex:
                if self._try():
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                waiter: Future[bool] = Future()
                self._waiters.append(waiter)
            try:
                handed = await await_waiter(waiter, deadline)
            except BaseException:
                with self._mutex:
                    if _withdraw(self._waiters, waiter):
                        self._give(1)  # handed a unit just as this task was cancelled
                raise
            if handed:
                return True  # release() gave its unit to this task
            with self._mutex:
                _discard(self._waiters, waiter)

    @property
    def value(self) -> int:
        """The number of free units now."""
        if _control.hook is not None:
            _control.observe("semaphore.value", self)
        return self._value

    def statistics(self) -> SemaphoreStatistics:
        """Return a snapshot of the semaphore's state."""
        if _control.hook is not None:
            _control.observe("statistics", self)
        return SemaphoreStatistics(
            value=self._value, initial=self._initial, waiting=len(self._waiters)
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
        if _control.hook is not None:
            _control.observe("value.get", self)
        return self._value

    def set(self, value: T) -> None:
        """Replace the value."""
        h = _control.hook
        if h is not None:
            h.switch("value.set", self)
        with self._mutex:
            self._value = value
            self._writes += 1

    def _idle(self) -> bool:
        return not self._busy

    def update(self, fn: Callable[[T], T]) -> T:
        """Store ``fn(current)`` atomically and return it.

        If ``fn`` raises, the value is unchanged and the exception propagates.
        """
        h = _check_controlled()
        if h is not None:
            # One task runs at a time, but fn may contain switch points: keep other
            # updates out until it returns.
            h.wait_until(self._idle, Waiting("update() of", self), self, None)
            self._busy = True
            try:
                with self._mutex:
                    new = fn(self._value)
                    self._value = new
                    self._writes += 1
                    return new
            finally:
                self._busy = False
        with self._mutex:
            new = fn(self._value)
            self._value = new
            self._writes += 1
            return new

    async def aget(self) -> T:
        """The awaitable twin of ``get``."""
        if _control.controlled():
            await _control.aswitch("value.get", self)
        return self._value

    async def aset(self, value: T) -> None:
        """The awaitable twin of ``set``."""
        if _control.controlled():
            await _control.aswitch("value.set", self)
        with self._mutex:
            self._value = value
            self._writes += 1

    async def aupdate(self, fn: Callable[[T], T]) -> T:
        """The awaitable twin of ``update`` (``fn`` is a plain, quick function)."""
        if _control.controlled():
            await _control.aswitch("value.update", self)
        with self._mutex:
            new = fn(self._value)
            self._value = new
            self._writes += 1
            return new

    def statistics(self) -> ValueStatistics:
        """Return a snapshot of the value's counters."""
        if _control.hook is not None:
            _control.observe("statistics", self)
        return ValueStatistics(writes=self._writes, nbytes=0)

    def __repr__(self) -> str:
        return f"<taskkit Value {self._value!r}>"
