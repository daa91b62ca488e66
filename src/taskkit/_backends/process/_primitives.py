"""Primitives shared by processes: the process backend's queue, lock, event, semaphore, value.

Design.  Each primitive is a small named shared-memory segment (``/dev/shm/tk…``)
holding its state, a robust process-shared mutex and one or two futex words (see
``_shm``).  A handle pickles as its *name*: unpickling in any process (forked,
spawned or forkserver-started, the parent too) maps the same segment, so a
primitive passes to tasks as an ordinary argument, nested in anything, and a
replacement worker simply opens it again.  No operation goes through a server::

    put(x):  pickle x ─► lock mutex ─► copy bytes into the ring ─► commit tail ─► unlock
                                                     └─► getters asleep? bump word, futex wake
    get():   lock mutex ─► items? ── yes ─► copy bytes out ─► commit head ─► unlock ─► unpickle
                              └─ no: note a waiter, read the word, unlock, futex_wait(word)

Queue.  Items live in a ring buffer in a second segment, ``<name>-d<generation>``:
``[head|tail: u64][capacity: u64][records…]``, each record a u32 length and a pickle.
Head and tail share one 64-bit word, so every change is committed by one store: a
process killed anywhere inside ``put``/``get`` leaves either the old state or the
new one, never a mix, and the next locker (told ``EOWNERDEAD`` by the kernel)
recounts the ring.  Only the item a killed process had already taken is gone with
it; items still queued are never lost.  A full ring grows into generation ``g+1``,
at least twice the size, without holding the mutex while it copies (a ring of
hundreds of thousands of items took half a second to copy)::

    putter: lock ─ full: mark GROWING (puts now wait; records stay put) ─ unlock
            copy the records' bytes into g+1, each at the same offset (a wrapped
            ring's front part goes after the rest, ending the wrap) ─ lock
            map where getters moved the head meanwhile into g+1 ─ store g+1 ─ unlock

Getters go on taking items from generation ``g`` while it copies; other putters
wait on the queue's second (robust) mutex, which one grower at a time holds, so a
grower killed half-way is simply replaced by the next.  Every process remaps when
it sees the generation number change.  An empty ring restarts at offset 0, so
memory touched stays near the largest backlog.

Lock.  The mutex itself: ``acquire`` is one ``pthread_mutex_trylock``, ``release``
one unlock, no system call when uncontended.  When a holder dies, the kernel hands
the mutex to the next acquirer with ``EOWNERDEAD``: it owns the lock, and its
``previous_holder_died`` is True.  The holder's pid is kept beside the mutex for
``statistics()``.  A pthread mutex belongs to the *thread* that locked it, so the
thread that acquires must release.

Event: one futex word (the flag).  Semaphore and Value: a counter or a pickled
value (two slots, so a write commits by one store) under the mutex.

State and waiting.  Each kind's state functions (``_Ring._try_put``/``_try_get``,
``Semaphore._try``, ``Lock._try``, ``Event._try``) run under the mutex and never
wait; every operation that can wait is one ``Wait`` description over them, run by
``_waiting``'s driver for the blocking face and its ``a``-prefixed twin alike.  Its
callers park in a ``FutexLot``: a futex word plus a count of sleepers::

    state function (mutex held) ─► changed what sleepers wait for, and some sleep?
                                    └─► bump the word ── after unlock ─► futex_wake
    get() finds no item ─► count itself, read the word (mutex held) ─► unlock
                         ─► thread: futex_wait(word, seen)      ─┐
                            coroutine: a helper thread waits   ─┴─► retry the attempt

Async faces cannot sleep on a futex in the event loop's thread: a helper thread
sleeps on the word (at most ``_ASYNC_SLICE`` seconds at a time) and
completes a ``taskkit.Future`` the coroutine awaits; the coroutine then retries the
non-blocking operation itself, so a cancelled ``aget`` never takes an item.  Items
and values cross processes through ``_serialize``'s ``dumps_value``/``loads`` only.

Lifetime.  The creating process owns the names.  Its executor's ``shutdown()``
unlinks them (mappings stay valid, so the parent may drain a queue afterwards);
a finalizer does the same if the handle is dropped or the program exits; and the
names are registered with ``multiprocessing``'s resource tracker, which unlinks
them if the owner itself is killed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import struct
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Generic, TypeVar

from ..._core import _control
from ..._core._errors import QueueClosed, UsageError
from ..._core._future import Future, try_set_exception, try_set_result
from ..._core._serialize import dumps_value, loads
from ..._primitives import _common
from ..._primitives._common import (
    AcquireContext,
    check_count,
    check_timeout,
    remaining,
    shut_down,
)
from ..._primitives._faces import AcquireFaces, EventFaces
from ..._primitives._waiting import (
    AGAIN,
    NOT_READY,
    TIMED_OUT,
    Wait,
    ablock,
    attempt_now,
    block,
    controlled,
    observe,
    switch,
)
from . import _shm

__all__ = ["Event", "Lock", "Queue", "Semaphore", "Value", "create"]

T = TypeVar("T")
R = TypeVar("R")

_CTRL_SIZE = 4096
_WORDS = 64  # byte offset of the int64 fields, after the mutex
_FUTEX = 256  # byte offset of the u32 futex words
_META_MUTEX = 320  # byte offset of a second mutex (lock bookkeeping)
# int64 fields
_GEN, _COUNT, _CLOSED, _MAXSIZE, _GETTERS, _PUTTERS, _PUTS, _GETS = range(8)
_TAKEOVERS, _HOLDER, _NBYTES, _VALUE, _INITIAL, _WAITERS, _WRITES = range(8, 15)
# A queue's: where the records before the ring's last wrap end; a ring is being grown.
_WRAPPED_AT, _GROWING = 15, 16
# u32 futex words
_NOT_EMPTY, _NOT_FULL = 0, 1
_RING_START = 16
_INITIAL_RING = 64 * 1024
_WRAP = 0xFFFFFFFF
_u32 = struct.Struct("<I")
#: How long an empty ``get`` polls before it sleeps: a producer in another process
#: usually delivers within microseconds, and polling saves both sides a system call.
_SPIN = 50e-6
_perf = time.perf_counter
_TID_MASK = 0x3FFFFFFF  # a robust mutex's futex word: the holder's thread id, plus flag bits


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


# ------------------------------------------------------------------ names and lifetime

_counter = iter(range(1, 1 << 62))
# Handles already open in this process, by name: unpickling one twice gives one object.
_open: weakref.WeakValueDictionary[str, _Shared] = weakref.WeakValueDictionary()
_open_lock = threading.Lock()


def _new_name(kind: str) -> str:
    return f"/tk{os.getpid()}{kind[0]}{next(_counter)}-{os.urandom(3).hex()}"


def _track(name: str) -> None:
    """Let the resource tracker unlink ``name`` should this (owning) process be killed."""
    from multiprocessing import resource_tracker

    resource_tracker.register(name, "shared_memory")


def _untrack(name: str) -> None:
    from multiprocessing import resource_tracker

    resource_tracker.unregister(name, "shared_memory")


def _release_names(
    owner: int, name: str, has_data: bool, tracked: list[int], words: memoryview
) -> None:
    """Unlink every name a primitive owns (run once, in the owning process only)."""
    if os.getpid() != owner:
        return  # a forked child inherited the finalizer: the names are not its to free
    if has_data:
        # Every data generation up to one past the current one (which any process may
        # have committed): a putter killed while growing the ring may have created the
        # next one and never committed it.  Earlier ones were unlinked by their growers.
        for gen in range(max(int(words[_GEN]), *tracked) + 2):
            _shm.unlink(f"{name}-d{gen}")
        for gen in tracked:
            _untrack(f"{name}-d{gen}")
    _shm.unlink(name)
    _untrack(name)


class _Shared:
    """What every process primitive has: a control segment, a name, pickling by name."""

    _kind: ClassVar[str] = "?"
    _recursive: ClassVar[bool] = False
    _finalizer: weakref.finalize[Any, Any] | None

    def __init__(self) -> None:
        if not _shm.available():
            from ..._core._errors import BackendUnavailable

            raise BackendUnavailable(_shm.unavailable_reason)
        self._name = _new_name(self._kind)
        self._ctrl = _shm.Segment(self._name, _CTRL_SIZE)
        _shm.mutex_init(self._ctrl.address, recursive=self._recursive)
        _shm.mutex_init(self._ctrl.address + _META_MUTEX)
        self._map()
        self._tracked: list[int] = []  # data generations registered with the tracker
        _track(self._name)
        self._finalizer = weakref.finalize(
            self, _release_names, os.getpid(), self._name, self._has_data, self._tracked, self._w
        )
        with _open_lock:
            _open[self._name] = self

    _has_data: ClassVar[bool] = False

    def _owns_names(self) -> bool:
        """True in the owning process until the names are released."""
        return self._finalizer is not None and self._finalizer.alive

    def _released(self) -> bool:
        return self._finalizer is not None and not self._finalizer.alive

    def _create_data(self, gen: int, size: int) -> _shm.Segment:
        """Create data generation ``gen`` (``<name>-d<gen>``) of ``size`` bytes."""
        name = f"{self._name}-d{gen}"
        try:
            segment = _shm.Segment(name, size)
        except FileExistsError:  # left by a process killed while growing this
            _shm.unlink(name)
            segment = _shm.Segment(name, size)
        if self._owns_names():
            _track(name)
            self._tracked.append(gen)
        return segment

    def _open_data(self, gen: int) -> _shm.Segment:
        """Map data generation ``gen``; the owner keeps the tracker's list current."""
        segment = _shm.Segment(f"{self._name}-d{gen}")
        if self._owns_names():
            if gen not in self._tracked:
                _track(segment.name)
                self._tracked.append(gen)
            for old in [g for g in self._tracked if g < gen]:
                _untrack(f"{self._name}-d{old}")  # superseded: its grower unlinked it
                self._tracked.remove(old)
        return segment

    def _map(self) -> None:
        buf = memoryview(self._ctrl.buf)
        self._w = buf[_WORDS:_FUTEX].cast("q")
        self._f = buf[_FUTEX : _FUTEX + 16].cast("I")
        self._mutex = self._ctrl.pointer(0)
        self._meta = self._ctrl.pointer(_META_MUTEX)
        self._lock_word = ctypes.c_int.from_address(self._ctrl.address)
        self._finalizer = None

    @classmethod
    def _attach(cls, name: str) -> _Shared:
        with _open_lock:
            existing = _open.get(name)
            if existing is not None:
                return existing
            self = cls.__new__(cls)
            self._name = name
            self._ctrl = _shm.Segment(name)
            self._map()
            self._attached()
            _open[name] = self
            return self

    def _attached(self) -> None:
        """Set up per-process state of a handle opened by name."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self._kind, self._name))

    def _futex(self, index: int) -> ctypes.c_void_p:
        return self._ctrl.pointer(_FUTEX + 4 * index)

    #: The data generation mapped in this process; kinds without data stay at 0, as
    #: their ``_w[_GEN]`` does.
    _gen: int = 0

    def _enter(self) -> None:
        """Lock the state mutex; repair the state if its last holder died; remap the data
        if another process moved it to a new generation."""
        result = _shm.trylock(self._mutex)
        if result or self._gen != self._w[_GEN]:
            self._enter_slow(result)

    def _enter_slow(self, result: int) -> None:
        """Finish ``_enter`` after a try-lock returned ``result``."""
        if result:
            self._lock_slow(result)
        if self._gen != self._w[_GEN]:
            self._remap()

    def _lock_slow(self, result: int) -> None:
        """Finish locking the state mutex after a try-lock returned ``result`` (not 0)."""
        if result == errno.EBUSY:
            result = _shm.mutex_lock(self._mutex, None)
        if result == errno.EOWNERDEAD:
            _shm.mutex_consistent(self._mutex)
            self._repair()
        elif result:
            raise OSError(result, f"cannot lock {self!r}: {os.strerror(result)}")

    def _new_data(self, gen: int, size: int, capacity: int) -> _shm.Segment:
        """Create data generation ``gen``: a ``[state: u64][capacity: u64]`` header,
        then ``size`` bytes (a queue's ring, a value's two slots)."""
        segment = self._create_data(gen, _RING_START + size)
        header = memoryview(segment.buf)[:_RING_START].cast("Q")
        header[0], header[1] = 0, capacity
        header.release()
        return segment

    def _remap(self) -> None:
        """Map the current data generation (kinds with data; under the mutex)."""
        gen = self._w[_GEN]
        self._data = self._open_data(gen)
        self._hd = memoryview(self._data.buf)[:_RING_START].cast("Q")
        self._cap = self._hd[1]
        self._gen = gen
        if self._released():
            _shm.unlink(self._data.name)  # grown after shutdown: nobody else will open it

    def _leave(self) -> None:
        _shm.unlock(self._mutex)

    def _repair(self) -> None:
        """Make the state consistent after a holder died (each kind knows its own)."""

    @property
    def name(self) -> str:
        """The shared-memory name that other processes open this primitive by."""
        return self._name


@shut_down.register(_Shared)
def _unlink(primitive: _Shared, close: bool) -> None:
    """Unlink the names (the owner's executor calls this at shutdown)."""
    if primitive._finalizer is not None:
        primitive._finalizer()


def _attach(kind: str, name: str) -> _Shared:
    """Unpickle a primitive: open it by name in this process."""
    return _KINDS[kind]._attach(name)


# ------------------------------------------------------------------ where callers wait


class FutexLot:
    """Where callers of a process primitive wait: a futex word in its shared memory.

    The primitive's state functions, under its robust mutex, ``bump`` the word when
    they change what a sleeper waits for and someone sleeps (the ``counter`` field
    counts them, so a change with no sleeper costs no system call); ``wake`` then
    wakes sleepers without the mutex.  A caller that must wait counts itself and reads
    the word under the mutex, after its attempt failed there, so a change that follows
    bumps the word and ``futex_wait(word, seen)`` cannot miss it.  A thread sleeps on
    the word itself; a coroutine awaits a helper thread that sleeps on it (at most
    ``_ASYNC_SLICE`` seconds at a time).  Either then attempts again: waiting never
    takes anything, so a waiter that dies or is cancelled loses nothing.

    It works on a ``_Shared`` primitive's own parts: ``_enter()``/``_leave()`` (its
    mutex), ``_w`` (int64 fields), ``_f`` (u32 words) and ``_futex(index)`` (a word's
    address); the driver (``_waiting``) calls ``attempt``, ``park``, ``sleep``, ``asleep``.
    """

    __slots__ = ("counter", "word")

    #: Attempts run under the primitive's mutex (not where the word is the state itself).
    locked: ClassVar[bool] = True

    def __init__(self, word: int, counter: int | None) -> None:
        self.word, self.counter = word, counter

    def attempt(self, w: Wait[Any], obj: Any, arg: Any) -> Any:
        if self.locked:
            obj._enter()
        try:
            result = w.attempt(obj, arg)
        finally:
            if self.locked:
                obj._leave()
        if w.after is not None and result is not NOT_READY and result is not AGAIN:
            w.after(obj)
        return result

    def park(
        self, w: Wait[Any], obj: Any, arg: Any, deadline: float | None, thread: bool
    ) -> tuple[Any, Any]:
        """Attempt; if not ready, enroll the caller (``enroll``), under the mutex."""
        if self.locked:
            obj._enter()
        try:
            result = w.attempt(obj, arg)
            if result is NOT_READY:
                if deadline is not None and time.monotonic() >= deadline:
                    result = TIMED_OUT
                else:
                    result, seen = self.enroll(w, obj, arg)
                    if result is NOT_READY:
                        return NOT_READY, seen
        finally:
            if self.locked:
                obj._leave()
        if w.after is not None and result is not TIMED_OUT and result is not AGAIN:
            w.after(obj)
        return result, None

    def enroll(self, w: Wait[Any], obj: Any, arg: Any) -> tuple[Any, int]:
        """Count the caller as a sleeper; ``NOT_READY`` and the word's value to sleep on."""
        if self.counter is not None:
            obj._w[self.counter] += 1
        return NOT_READY, int(obj._f[self.word])

    def sleep(self, obj: Any, seen: int, deadline: float | None) -> bool:
        """Block the calling thread until the word moves from ``seen``, or ``deadline``."""
        try:
            _shm.futex_wait(obj._futex(self.word), seen, remaining(deadline))
        finally:
            self.leave_line(obj)
        return True

    async def asleep(self, w: Wait[Any], obj: Any, seen: int, deadline: float | None) -> bool:
        """The awaitable twin of ``sleep``, for a coroutine (see ``sleep_on``)."""
        try:
            await sleep_on(obj._futex(self.word), seen, deadline)
        finally:
            self.leave_line(obj)
        return True

    def leave_line(self, obj: Any) -> None:
        """Uncount a sleeper that woke, timed out or was interrupted."""
        if self.counter is not None:
            obj._enter()
            obj._w[self.counter] -= 1
            obj._leave()

    def bump(self, obj: Any) -> None:
        """Under the mutex, after a change sleepers wait for: move the word if any sleep."""
        if self.counter is None or obj._w[self.counter] > 0:
            obj._f[self.word] = (obj._f[self.word] + 1) & 0xFFFFFFFF

    def wake(self, obj: Any, n: int = 0x7FFFFFFF) -> None:
        """Without the mutex, after ``bump``: wake up to ``n`` sleepers, if any sleep."""
        if self.counter is None or obj._w[self.counter] > 0:
            _shm.futex_wake(obj._futex(self.word), n)


class FlagLot(FutexLot):
    """A futex word that is itself the state (an event's flag, set without the mutex):
    reading it needs no mutex, and a sleeper sleeps while it is 0, so a set between
    the attempt and the sleep is seen."""

    __slots__ = ()
    locked = False

    def enroll(self, w: Wait[Any], obj: Any, arg: Any) -> tuple[Any, int]:
        return NOT_READY, 0


#: How long a helper thread sleeps on a word for a coroutine before it looks again.
_ASYNC_SLICE = 0.25
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def helpers() -> ThreadPoolExecutor:
    """Threads that sleep on futex words for coroutines (one pool per process)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="taskkit-shm-wait")
        _pool_pid = os.getpid()
    return _pool


async def sleep_on(word: ctypes.c_void_p, seen: int, deadline: float | None) -> None:
    """Await a change of the futex word from ``seen`` (or a slice of time passing)."""
    left = remaining(deadline)
    slice_ = _ASYNC_SLICE if left is None else min(left, _ASYNC_SLICE)
    done: Future[bool] = Future()

    def sleep() -> None:
        try:
            _shm.futex_wait(word, seen, slice_)
        finally:
            try_set_result(done, True)

    helpers().submit(sleep)
    await done


# --------------------------------------------------------------------------- queue


class _Ring(_Shared):
    """A queue's storage: a ring of pickled records in data generation ``<name>-d<gen>``.

    Called under the state mutex unless said otherwise; ``_enter`` also remaps when
    another process moved the ring to a new generation.  See the module notes.
    """

    _has_data = True

    def _attached(self) -> None:
        self._gen = -1  # nothing mapped yet: the next _enter() maps the ring

    def _new_ring(self, gen: int, capacity: int) -> _shm.Segment:
        return self._new_data(gen, capacity, capacity)

    def _remap(self) -> None:
        super()._remap()
        self._ring = self._data.buf

    # -- the state functions (see _waiting): put and take one record ---------------------

    def _try_put(self, payload: bytes) -> Any:
        """Append a record if there is room: None; ``NOT_READY`` if the queue is full;
        ``AGAIN`` if the ring must grow first (``_grow`` runs without the mutex)."""
        w = self._w
        if w[_CLOSED]:
            raise QueueClosed(f"put() on a closed queue {self!r}")
        maxsize = w[_MAXSIZE]
        if maxsize and w[_COUNT] >= maxsize:
            return NOT_READY
        if w[_GROWING]:
            return AGAIN  # a grower is copying the records: they must not move
        ring, cap = self._ring, self._cap
        state = self._hd[0]
        head, tail = state & 0xFFFFFFFF, state >> 32
        need = 4 + len(payload)
        if tail >= head and cap - tail >= need and (tail + need != cap or head != 0):
            at = tail
        elif tail >= head and need < head:
            w[_WRAPPED_AT] = tail  # read only while wrapped, i.e. after the commit
            if cap - tail >= 4:
                _u32.pack_into(ring, _RING_START + tail, _WRAP)
            at = 0
        elif tail < head and tail + need < head:
            at = tail
        else:
            return AGAIN
        start = _RING_START + at
        _u32.pack_into(ring, start, len(payload))
        ring[start + 4 : start + need] = payload
        end = at + need
        if end == cap:
            w[_WRAPPED_AT] = cap
            end = 0
        self._hd[0] = head | (end << 32)  # the commit: one store
        w[_COUNT] += 1
        w[_PUTS] += 1
        if w[_GETTERS] > 0:
            _GETTERS_LOT.bump(self)
        return None

    def _try_get(self, _: object = None) -> Any:
        """Take the first record's bytes; ``NOT_READY`` if there is none."""
        w = self._w
        if w[_COUNT] <= 0:
            if w[_CLOSED]:
                raise QueueClosed(f"get() on a closed, empty queue {self!r}")
            return NOT_READY
        ring, cap = self._ring, self._cap
        state = self._hd[0]
        head, tail = state & 0xFFFFFFFF, state >> 32
        if cap - head < 4:
            head = 0
        (length,) = _u32.unpack_from(ring, _RING_START + head)
        if length == _WRAP:
            head = 0
            (length,) = _u32.unpack_from(ring, _RING_START + head)
        start = _RING_START + head + 4
        payload = ring[start : start + length]
        if w[_COUNT] <= 1:
            self._hd[0] = 0  # now empty: start again at offset 0 (the commit)
        else:
            head += 4 + length
            if head == cap:
                head = 0
            self._hd[0] = head | (tail << 32)  # the commit
        w[_COUNT] -= 1
        w[_GETS] += 1
        if w[_PUTTERS] > 0:
            _PUTTERS_LOT.bump(self)
        return payload

    def _records(self) -> list[bytes]:
        """Every queued record, oldest first (for growing and repairing)."""
        ring, cap = self._ring, self._cap
        state = self._hd[0]
        head, tail = state & 0xFFFFFFFF, state >> 32
        records: list[bytes] = []
        while head != tail and len(records) <= cap // 4:
            if cap - head < 4:
                head = 0
                continue
            (length,) = _u32.unpack_from(ring, _RING_START + head)
            if length == _WRAP:
                head = 0
                continue
            if head + 4 + length > cap:
                break  # torn: never committed
            records.append(ring[_RING_START + head + 4 : _RING_START + head + 4 + length])
            head += 4 + length
            if head == cap:
                head = 0
        return records

    def _grow(self, need: int) -> None:
        """Make room for a record of ``need`` bytes (called without the mutex; see above)."""
        result = _shm.mutex_lock(self._meta, None)  # one grower at a time
        if result == errno.EOWNERDEAD:
            _shm.mutex_consistent(self._meta)  # a grower died: _GROWING is reset below
        try:
            self._enter()
            try:
                w = self._w
                w[_GROWING] = 0  # no grower runs now (we hold the grow mutex)
                state = self._hd[0]
                head, tail = state & 0xFFFFFFFF, state >> 32
                if self._has_space(head, tail, need):
                    return  # another process grew it, or getters made room
                cap, gen = self._cap, self._gen
                wrapped_at = int(w[_WRAPPED_AT]) if tail < head else tail
                capacity = cap * 2
                while capacity < 2 * (cap + need) + 8:
                    capacity *= 2
                if capacity >= 1 << 32:
                    raise OverflowError("a process queue holds at most 4 GiB of pickled items")
                w[_GROWING] = 1
            finally:
                self._leave()
            try:
                segment = self._new_ring(gen + 1, capacity)
                self._copy_records(segment, head, tail, wrapped_at)
            except BaseException:
                self._enter()
                w[_GROWING] = 0
                self._leave()
                raise
            self._enter()
            try:
                self._commit_growth(segment, head, tail, wrapped_at)
            finally:
                self._leave()
        finally:
            _shm.mutex_unlock(self._meta)

    def _has_space(self, head: int, tail: int, need: int) -> bool:
        """The tests of ``_try_put``: is there room for ``need`` bytes now?"""
        cap = self._cap
        if tail >= head:
            return (cap - tail >= need and (tail + need != cap or head != 0)) or need < head
        return tail + need < head

    def _copy_records(self, segment: _shm.Segment, head: int, tail: int, wrapped_at: int) -> None:
        """Copy the ring's records into ``segment`` (no mutex held: puts wait, records stay)."""
        old, new = self._ring, segment.buf
        start = _RING_START
        if tail >= head:
            new[start + head : start + tail] = old[start + head : start + tail]
        else:
            # [head, wrapped_at) stays where it is; [0, tail) follows it, unwrapped.
            new[start + head : start + wrapped_at] = old[start + head : start + wrapped_at]
            new[start + wrapped_at : start + wrapped_at + tail] = old[start : start + tail]

    def _commit_growth(self, segment: _shm.Segment, head: int, tail: int, wrapped_at: int) -> None:
        """Under the mutex: point the new ring at what getters left, then switch to it."""
        w = self._w
        now = self._hd[0] & 0xFFFFFFFF  # getters may have moved the head; nothing else moved
        if w[_COUNT] <= 0:
            state = 0
        elif tail >= head:
            state = now | (tail << 32)
        else:
            # Past the wrap (now < head) the head is in the part moved after wrapped_at.
            state = (now if now >= head else wrapped_at + now) | ((wrapped_at + tail) << 32)
        header = memoryview(segment.buf)[:_RING_START].cast("Q")
        header[0] = state
        header.release()
        old = f"{self._name}-d{self._gen}"
        w[_GEN] = self._gen + 1  # the commit: one store
        w[_GROWING] = 0
        self._remap()
        _shm.unlink(old)  # superseded; processes that still map it remap on their next call

    def _repair(self) -> None:
        if self._gen != self._w[_GEN]:
            self._remap()
        self._w[_COUNT] = len(self._records())


class Queue(_Ring, Generic[T]):
    """A FIFO queue shared by processes; pass it to process tasks as an argument.

    Same interface as every taskkit queue: ``put``/``get`` with timeouts,
    ``put_nowait``/``get_nowait``, ``aput``/``aget``, ``close()``.  Items are
    pickled; ``maxsize > 0`` bounds the number of items.
    """

    _kind = "queue"

    def __init__(self, maxsize: int = 0) -> None:
        check_count(maxsize, 0, "maxsize must be a whole number >= 0")
        super().__init__()
        self._w[_MAXSIZE] = maxsize
        self._new_ring(0, _INITIAL_RING)
        self._attached()
        self._remap()

    # -- what the wait descriptions add to the ring's state functions ------------------

    def _grow_for(self, payload: bytes) -> None:
        self._grow(4 + len(payload))

    def _wake_getter(self) -> None:
        _GETTERS_LOT.wake(self, 1)

    def _wake_putter(self) -> None:
        _PUTTERS_LOT.wake(self, 1)

    def _has_item(self) -> bool:
        return self._w[_COUNT] > 0 or bool(self._w[_CLOSED])

    def _has_room(self) -> bool:
        w = self._w
        return bool(w[_CLOSED]) or not w[_MAXSIZE] or w[_COUNT] < w[_MAXSIZE]

    # -- the faces: one wait description each (see _waiting) ----------------------------

    def put(self, item: T, timeout: float | None = None) -> None:
        """Put ``item`` at the end, waiting up to ``timeout`` seconds for room.

        Raises:
            queue.Full: a bounded queue stayed full for ``timeout`` seconds.
            QueueClosed: the queue is closed.
            SerializationError: ``item`` cannot be pickled.
        """
        payload = dumps_value(item, "queue item")
        if _control.hook is None or not controlled():  # one global read on the hot path
            mutex, w = self._mutex, self._w
            result = _shm.trylock(mutex)  # _enter(), unrolled: this is the hot path
            if result or self._gen != w[_GEN]:
                self._enter_slow(result)
            try:
                done = self._try_put(payload)
            finally:
                _shm.unlock(mutex)
            if done is None:
                if w[_GETTERS] > 0:
                    _GETTERS_LOT.wake(self, 1)
                return
        block(_PUT, self, payload, timeout, tried=True)

    def get(self, timeout: float | None = None) -> T:
        """Remove and return the first item, waiting up to ``timeout`` seconds for one.

        Raises:
            queue.Empty: no item came within ``timeout`` seconds.
            QueueClosed: the queue is closed and empty.
        """
        if _control.hook is None or not controlled():  # one global read on the hot path
            mutex, w = self._mutex, self._w
            result = _shm.trylock(mutex)  # _enter(), unrolled: this is the hot path
            if result or self._gen != w[_GEN]:
                self._enter_slow(result)
            try:
                payload = self._try_get()
            finally:
                _shm.unlock(mutex)
            if payload is not NOT_READY:
                if w[_PUTTERS] > 0:
                    _PUTTERS_LOT.wake(self, 1)
                return loads(payload)  # type: ignore[no-any-return]
            until = _perf() + _SPIN
            while w[_COUNT] <= 0 and not w[_CLOSED] and _perf() < until:
                os.sched_yield()  # poll briefly before sleeping (see _SPIN)
        return loads(block(_GET, self, None, timeout, tried=True))  # type: ignore[no-any-return]

    async def aput(self, item: T, timeout: float | None = None) -> None:
        """The awaitable twin of ``put``: waits for room without blocking the event loop."""
        await ablock(_PUT, self, dumps_value(item, "queue item"), timeout)

    async def aget(self, timeout: float | None = None) -> T:
        """The awaitable twin of ``get``: waits for an item without blocking the event loop."""
        return loads(await ablock(_GET, self, None, timeout))  # type: ignore[no-any-return]

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room at once.

        Raises:
            queue.Full: the queue is bounded and full.
            QueueClosed: the queue is closed.
        """
        payload = dumps_value(item, "queue item")
        switch("queue.put", self)
        if attempt_now(_PUT, self, payload) is NOT_READY:
            raise queue.Full  # a ring that must grow is only a copy away: not "full"

    def get_nowait(self) -> T:
        """Remove and return the first item if there is one at once.

        Raises:
            queue.Empty: the queue is empty.
            QueueClosed: the queue is closed and empty.
        """
        switch("queue.get", self)
        payload = attempt_now(_GET, self, None)
        if payload is NOT_READY:
            raise queue.Empty
        return loads(payload)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Refuse new items; ``get`` drains what is left, then raises ``QueueClosed``."""
        switch("queue.close", self)
        self._enter()
        try:
            self._w[_CLOSED] = 1
            _GETTERS_LOT.bump(self)
            _PUTTERS_LOT.bump(self)
        finally:
            self._leave()
        _GETTERS_LOT.wake(self)
        _PUTTERS_LOT.wake(self)

    # -- snapshots ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (in any process)."""
        return bool(self._w[_CLOSED])

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return int(self._w[_MAXSIZE])

    def qsize(self) -> int:
        """The number of items in the queue now."""
        observe("queue.qsize", self)
        return self._size()

    def _size(self) -> int:
        return max(0, int(self._w[_COUNT]))

    def empty(self) -> bool:
        """True if the queue holds no items now."""
        observe("queue.empty", self)
        return self._w[_COUNT] <= 0

    def full(self) -> bool:
        """True if the queue is bounded and holds ``maxsize`` items now."""
        observe("queue.full", self)
        maxsize = self._w[_MAXSIZE]
        return bool(maxsize) and self._w[_COUNT] >= maxsize

    def statistics(self) -> _common.QueueStatistics:
        """Return a snapshot of the queue's counters (shared by every process)."""
        observe("statistics", self)
        w = self._w
        return _common.QueueStatistics(
            size=max(0, int(w[_COUNT])),
            maxsize=int(w[_MAXSIZE]),
            closed=bool(w[_CLOSED]),
            puts=int(w[_PUTS]),
            gets=int(w[_GETS]),
            waiting_getters=max(0, int(w[_GETTERS])),
            waiting_putters=max(0, int(w[_PUTTERS])),
        )

    def __repr__(self) -> str:
        state = ", closed" if self._w[_CLOSED] else ""
        bound = f"/{self._w[_MAXSIZE]}" if self._w[_MAXSIZE] else ""
        return f"<taskkit process Queue {self._name} {self._size()}{bound} items{state}>"


@shut_down.register(Queue)
def _close_and_unlink(queue: Queue[Any], close: bool) -> None:
    if close:
        queue.close()
    _unlink(queue, close)


_GETTERS_LOT = FutexLot(_NOT_EMPTY, _GETTERS)
_PUTTERS_LOT = FutexLot(_NOT_FULL, _PUTTERS)
_PUT: Wait[None] = Wait(
    "put() on", Queue._try_put, Queue._has_room, _PUTTERS_LOT, timed_out=queue.Full
)
_PUT.unblock, _PUT.after = Queue._grow_for, Queue._wake_getter
_GET: Wait[Any] = Wait(
    "get() on", Queue._try_get, Queue._has_item, _GETTERS_LOT, timed_out=queue.Empty
)
_GET.after = Queue._wake_putter


# --------------------------------------------------------------------------- lock


class _LockLot(FutexLot):
    """Where coroutines wait for a process lock (threads block in the mutex itself).

    The lock's state is its robust mutex, taken without any other mutex, so a
    coroutine counts itself (under the lock's second mutex), reads word 0 and tries
    once more before it sleeps on the word, which ``release`` bumps when someone waits.
    """

    __slots__ = ()
    locked = False

    def enroll(self, w: Wait[Any], obj: Any, arg: Any) -> tuple[Any, int]:
        obj._count_waiter(1)
        seen = int(obj._f[0])
        result = w.attempt(obj, arg)  # released before we were counted?
        if result is not NOT_READY:
            obj._count_waiter(-1)
        return result, seen

    def leave_line(self, obj: Any) -> None:
        obj._count_waiter(-1)


class Lock(AcquireContext, _Shared):
    """A lock shared by processes that survives a holder's death.

    ``with lock:`` as with ``threading.Lock``.  If the process holding it dies,
    the next ``acquire`` gets the lock and sets ``previous_holder_died`` (the
    data the lock protected may be half-updated: check it).  The thread that
    acquired the lock must release it.
    """

    _kind = "lock"

    def __init__(self) -> None:
        super().__init__()
        self._attached()

    def _attached(self) -> None:
        self.previous_holder_died = False
        self.previous_holder_pid: int | None = None

    def _took_over(self) -> None:
        _shm.mutex_consistent(self._mutex)
        w = self._w
        w[_TAKEOVERS] += 1
        self.previous_holder_pid = int(w[_HOLDER]) or None
        self.previous_holder_died = True
        w[_HOLDER] = _pid

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (forever if ``None``) for the lock; True if acquired.

        Raises:
            UsageError: the calling thread already holds it (waiting would never end).
        """
        if _control.hook is not None and controlled():  # one global read on the hot path
            return block(_LOCK, self, None, timeout)
        result = _shm.trylock(self._mutex)
        if result == 0:
            self._w[_HOLDER] = _pid
            self.previous_holder_died = False
            return True
        return self._acquire_waiting(result, timeout)

    def _try(self, _: object = None) -> Any:
        """The state function: take the lock if it is free (or its holder died)."""
        result = _shm.trylock(self._mutex)
        if result == 0:
            self._w[_HOLDER] = _pid
            self.previous_holder_died = False
            return True
        return True if self._acquire_waiting(result, 0) else NOT_READY

    def _acquire_waiting(self, result: int, timeout: float | None) -> bool:
        if result == errno.EBUSY:
            if timeout == 0:
                return False
            if timeout is None and self._lock_word.value & _TID_MASK == threading.get_native_id():
                raise UsageError(
                    f"this thread already holds {self!r}; acquiring it again would wait forever"
                )
            result = _shm.mutex_lock(self._mutex, check_timeout(timeout))
            if result == 0:
                self._w[_HOLDER] = _pid
                self.previous_holder_died = False
                return True
        if result == errno.EOWNERDEAD:
            self._took_over()
            return True
        if result == errno.ETIMEDOUT:
            return False
        if result == errno.EDEADLK:
            raise UsageError(f"this thread already holds {self!r}; acquiring it again would hang")
        raise OSError(result, f"cannot lock {self!r}: {os.strerror(result)}")

    def _free(self) -> bool:
        return self._lock_word.value == 0

    def release(self) -> None:
        """Release the lock.

        Raises:
            UsageError: the calling thread does not hold it.
        """
        if _control.hook is not None:  # one global read on the hot path
            switch("lock.release", self)
        w = self._w
        holder = w[_HOLDER]
        w[_HOLDER] = 0
        if _shm.unlock(self._mutex):
            w[_HOLDER] = holder
            raise UsageError(f"release() of {self!r}, which this thread does not hold")
        if w[_WAITERS] > 0:  # coroutines wait on the word, not on the mutex
            _LOCK_LOT.bump(self)
            _LOCK_LOT.wake(self)

    def locked(self) -> bool:
        """True if the lock is held now (by any process)."""
        observe("lock.locked", self)
        return self._held()

    def _held(self) -> bool:
        return bool(self._lock_word.value != 0)

    async def aacquire(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``acquire`` (the awaiting thread then holds the lock)."""
        return await ablock(_LOCK, self, None, timeout)

    def _count_waiter(self, delta: int) -> None:
        result = _shm.mutex_lock(self._meta, None)
        if result == errno.EOWNERDEAD:
            _shm.mutex_consistent(self._meta)
        self._w[_WAITERS] += delta
        _shm.mutex_unlock(self._meta)

    def statistics(self) -> _common.LockStatistics:
        """Return a snapshot of the lock's state (shared by every process)."""
        observe("statistics", self)
        holder = int(self._w[_HOLDER])
        return _common.LockStatistics(
            locked=self._held(),
            holder_pid=holder or None,
            takeovers=int(self._w[_TAKEOVERS]),
            waiting=max(0, int(self._w[_WAITERS])),
        )

    def __repr__(self) -> str:
        holder = self._w[_HOLDER]
        state = (
            f"held by pid {holder}"
            if self._held() and holder
            else ("locked" if self._held() else "unlocked")
        )
        return f"<taskkit process Lock {self._name} {state}>"


_LOCK_LOT = _LockLot(0, _WAITERS)
_LOCK: Wait[bool] = Wait("acquire() of", Lock._try, Lock._free, _LOCK_LOT)


# --------------------------------------------------------------------------- event


_EVENT_LOT = FlagLot(0, None)


class Event(EventFaces, _Shared):
    """A flag shared by processes: ``set()`` wakes every ``wait()`` in every process."""

    _kind = "event"

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        switch("event.set", self)
        self._f[0] = 1
        _EVENT_LOT.wake(self)

    def clear(self) -> None:
        """Clear the flag."""
        switch("event.clear", self)
        self._f[0] = 0

    def is_set(self) -> bool:
        """True if the flag is set."""
        observe("event.is_set", self)
        return self._is_set()

    def _is_set(self) -> bool:
        return bool(self._f[0])

    def _try(self, _: object = None) -> Any:
        return True if self._f[0] else NOT_READY

    def statistics(self) -> _common.EventStatistics:
        """Return a snapshot of the event's state (waiters are not counted: -1)."""
        observe("statistics", self)
        return _common.EventStatistics(is_set=self._is_set(), waiting=-1)

    _wait = Wait("wait() on", _try, _is_set, _EVENT_LOT, aname="await_() on")

    def __repr__(self) -> str:
        return f"<taskkit process Event {self._name} {'set' if self._is_set() else 'clear'}>"


# ----------------------------------------------------------------------- semaphore


_SEMAPHORE_LOT = FutexLot(0, _WAITERS)


class Semaphore(AcquireFaces, _Shared):
    """A counter of free units shared by processes.

    A unit taken by a process that then dies is not returned (a semaphore has
    no owner to check); use a ``Lock`` where that matters.
    """

    _kind = "semaphore"

    def __init__(self, value: int = 1) -> None:
        check_count(value, 0, "a semaphore's count must be a whole number >= 0")
        super().__init__()
        self._w[_VALUE] = self._w[_INITIAL] = value

    def _free(self) -> bool:
        return self._w[_VALUE] > 0

    def _try(self, _: object = None) -> Any:
        if self._w[_VALUE] > 0:
            self._w[_VALUE] -= 1
            return True
        return NOT_READY

    def release(self) -> None:
        """Return a unit and wake a waiter."""
        switch("semaphore.release", self)
        self._enter()
        try:
            self._w[_VALUE] += 1
            _SEMAPHORE_LOT.bump(self)
        finally:
            self._leave()
        _SEMAPHORE_LOT.wake(self, 1)

    @property
    def value(self) -> int:
        """The number of free units now."""
        observe("semaphore.value", self)
        return int(self._w[_VALUE])

    def statistics(self) -> _common.SemaphoreStatistics:
        """Return a snapshot of the semaphore's state."""
        observe("statistics", self)
        w = self._w
        return _common.SemaphoreStatistics(
            value=int(w[_VALUE]), initial=int(w[_INITIAL]), waiting=max(0, int(w[_WAITERS]))
        )

    _acquire = Wait("acquire() of", _try, _free, _SEMAPHORE_LOT)

    def __repr__(self) -> str:
        return f"<taskkit process Semaphore {self._name} value={self.value}>"


# --------------------------------------------------------------------------- value


class Value(_Shared, Generic[T]):
    """One value shared by processes, with an atomic ``update(fn)``.

    The value is pickled into shared memory; ``update(fn)`` holds the value's
    (reentrant, robust) mutex while ``fn`` runs, so concurrent updates from any
    process never lose one another.  ``fn`` should be quick; it may call ``get()``.
    """

    _kind = "value"
    _recursive = True

    def __init__(self, initial: T) -> None:
        payload = dumps_value(initial, "initial value")
        super().__init__()
        self._attached()
        result = _shm.trylock(self._mutex)  # _enter() without a remap: no data yet
        if result:
            self._lock_slow(result)
        try:
            self._data = self._new_slots(0, max(4096, 2 * len(payload)))
            self._remap()
            self._write(payload)
            self._w[_WRITES] = 0
        finally:
            self._leave()

    _has_data = True

    def _attached(self) -> None:
        self._gen = -1

    def _new_slots(self, gen: int, capacity: int) -> _shm.Segment:
        return self._new_data(gen, 2 * capacity, capacity)

    def _read(self) -> bytes:
        meta = self._hd[0]
        slot, length = meta & 1, meta >> 1
        start = _RING_START + slot * self._cap
        return self._data.buf[start : start + length]

    def _write(self, payload: bytes) -> None:
        if len(payload) > self._cap:
            gen = self._gen + 1
            old = f"{self._name}-d{self._gen}"
            segment = self._new_slots(gen, 2 * len(payload))
            segment.buf[_RING_START : _RING_START + len(payload)] = payload
            header = memoryview(segment.buf)[:_RING_START].cast("Q")
            header[0] = len(payload) << 1
            header.release()
            self._w[_GEN] = gen  # the commit
            self._remap()
            _shm.unlink(old)
        else:
            slot = 1 - (self._hd[0] & 1)
            start = _RING_START + slot * self._cap
            self._data.buf[start : start + len(payload)] = payload
            self._hd[0] = slot | (len(payload) << 1)  # the commit
        self._w[_WRITES] += 1
        self._w[_NBYTES] = len(payload)

    def get(self) -> T:
        """Return (a copy of) the current value."""
        observe("value.get", self)
        self._enter()
        try:
            payload = self._read()
        finally:
            self._leave()
        return loads(payload)  # type: ignore[no-any-return]

    def set(self, value: T) -> None:
        """Replace the value."""
        payload = dumps_value(value, "value")
        switch("value.set", self)
        self._enter()
        try:
            self._write(payload)
        finally:
            self._leave()

    def update(self, fn: Callable[[T], T]) -> T:
        """Store ``fn(current)`` atomically, across processes, and return it.

        If ``fn`` raises, the value is unchanged and the exception propagates.
        """
        switch("value.update", self)
        self._enter()
        try:
            new = fn(loads(self._read()))
            self._write(dumps_value(new, "value"))
            return new
        finally:
            self._leave()

    async def _off_loop(self, op: Callable[[], R]) -> R:
        """Run ``op`` here if the mutex is free, else on a helper thread (never blocking)."""
        if _shm.mutex_trylock(self._mutex) in (0, errno.EOWNERDEAD):
            # Free: we hold it now, and it is reentrant, so op's own lock is instant.
            try:
                return op()
            finally:
                self._leave()
        done: Future[R] = Future()

        def run() -> None:
            try:
                try_set_result(done, op())
            except BaseException as exc:
                try_set_exception(done, exc)

        helpers().submit(run)
        return await done

    async def aget(self) -> T:
        """The awaitable twin of ``get``."""
        return await self._off_loop(self.get)

    async def aset(self, value: T) -> None:
        """The awaitable twin of ``set``."""

        def op() -> None:
            self.set(value)

        await self._off_loop(op)

    async def aupdate(self, fn: Callable[[T], T]) -> T:
        """The awaitable twin of ``update`` (``fn`` is a plain, quick function)."""
        return await self._off_loop(lambda: self.update(fn))

    def statistics(self) -> _common.ValueStatistics:
        """Return a snapshot of the value's counters (shared by every process)."""
        observe("statistics", self)
        return _common.ValueStatistics(writes=int(self._w[_WRITES]), nbytes=int(self._w[_NBYTES]))

    def __repr__(self) -> str:
        return f"<taskkit process Value {self._name}>"


_KINDS: dict[str, type[_Shared]] = {
    "queue": Queue,
    "lock": Lock,
    "event": Event,
    "semaphore": Semaphore,
    "value": Value,
}


def create(kind: str, *args: Any) -> Any:
    """Create a process primitive of ``kind``, owned by this process."""
    try:
        cls = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown primitive {kind!r}") from None
    return cls(*args)
