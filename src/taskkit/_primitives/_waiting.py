"""How a caller of a primitive waits: one driver, and the strategies it sleeps with.

A primitive is two parts.  Its *state* (a deque and counters under a ``_thread`` lock,
or words in shared memory under a robust mutex) changes only in short *state
functions* that never wait: try to take an item, try to take a unit.  *How a caller
waits* when a state function answers "not yet" is written once, here, in the spirit
of trio's ``ParkingLot`` (``park``/``unpark``), and chosen per call::

    q.get(timeout) ──► block ──┐                 Wait (one per operation, made once):
    await q.aget() ──► ablock ─┤                   attempt(q, arg) ─► result | NOT_READY | AGAIN
                               ▼                   ready(q)        ─► could attempt succeed now?
                   _start: attempt once            lot             ─► where its callers park
                     ├─ done ─────────────────────────────────────────► result
                     └─ _Pending, one strategy:
                          controlled run: _control.wait_until(ready) / await_until, attempt
                          otherwise:      lot.park (mutex: attempt, else enroll) then sleep:
                            ParkingLot (one process)   thread: acquire a ``_thread`` lock
                                                       coroutine: await a taskkit.Future
                            FutexLot (processes; in    thread: futex_wait on a shared word
                            the process primitives)    coroutine: a helper thread waits on it

``block`` (blocking faces) and ``ablock`` (``a``-prefixed faces) differ only in how
``_Pending`` sleeps once, so a primitive describes each operation once and gets both
faces.  A ``ParkingLot`` hands what is released straight to the longest-waiting
coroutine (``hand_over``: its wait returns ``(value,)``), and one cancelled just after
is handed something gives it back through the description's ``give_back``.

What trio's lot has and this lacks: ``repark`` (moving waiters between lots).  What
it adds: one lot serves threads and coroutines at once, and a lot of another kind
(the process primitives' ``FutexLot``) puts the same descriptions over shared memory.
A lot is anything with the four methods the driver calls, as ``ParkingLot`` documents
them: ``attempt``, ``park``, ``sleep`` and ``asleep``.

Controlled runs (``taskkit.testing``) talk to primitives only through this module:
``_Pending``'s controlled strategy states each wait as a condition, and primitives
call ``switch`` before an operation others can observe and ``observe`` before a
snapshot read (``qsize()``, ``locked()``).  The rules are ``taskkit._core._control``'s.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

from .._core import _control
from .._core._compat import LockType, allocate_lock
from .._core._future import Future, try_set_result
from .._core._timer import call_later
from ._common import check_timeout, remaining

__all__ = [
    "AGAIN",
    "NOT_READY",
    "TIMED_OUT",
    "ParkingLot",
    "Wait",
    "ablock",
    "active",
    "aswitch",
    "attempt_now",
    "block",
    "controlled",
    "hold_until",
    "observe",
    "switch",
]

R = TypeVar("R")


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: An attempt's answer: the state is not ready for this operation now.
NOT_READY: Final[Any] = _Sentinel("NOT_READY")
#: An attempt's answer: work that must not hold the mutex comes first (``Wait.unblock``).
AGAIN: Final[Any] = _Sentinel("AGAIN")
#: The driver's own: the deadline passed while the state stayed not ready.
TIMED_OUT: Final[Any] = _Sentinel("TIMED_OUT")


class Wait(Generic[R]):
    """One operation that may have to wait, described once for both faces.

    Args:
        name: how a wait is named in ``Deadlock`` reports (``"get() on"``); the
            awaitable face's name is ``aname`` (default: ``"a" + name``).
        attempt: the state function ``attempt(obj, arg)``, run by the lot under the
            primitive's mutex: a result, ``NOT_READY`` or ``AGAIN``; it may raise
            (``QueueClosed``).
        ready: ``ready(obj)``, cheap and free of side effects: could ``attempt`` succeed now?
        lot: the lot callers park in: the name of the primitive's attribute holding it,
            or the lot itself.
        timed_out: what a timeout gives: an exception class to raise, or a value.
        stuck, twin: how a thread's wait that cannot be allowed is named
            (``"get() on an empty"``), and the awaitable face to use instead.
        once: one wake-up ends the wait (an event: woken means set, even if cleared since).
        give_back: ``give_back(obj, value)`` for a value handed to a coroutine that was
            cancelled before it could return it.
        unblock: ``unblock(obj, arg)``, run without the mutex when ``attempt`` said ``AGAIN``.
        after: ``after(obj)``, run without the mutex after a successful attempt (a futex
            wake that need not lengthen the critical section).
    """

    __slots__ = (
        "after",
        "aname",
        "attempt",
        "give_back",
        "lot",
        "name",
        "once",
        "ready",
        "stuck",
        "timed_out",
        "twin",
        "unblock",
    )

    def __init__(
        self,
        name: str,
        attempt: Callable[[Any, Any], Any],
        ready: Callable[[Any], bool],
        lot: str | Any,
        *,
        timed_out: object = False,
        stuck: str | None = None,
        twin: str = "",
        once: bool = False,
        give_back: Callable[[Any, Any], object] | None = None,
        unblock: Callable[[Any, Any], object] | None = None,
        after: Callable[[Any], object] | None = None,
        aname: str | None = None,
    ) -> None:
        self.name, self.aname = name, aname or "a" + name
        self.attempt, self.ready, self.timed_out, self.once = attempt, ready, timed_out, once
        self.lot: Callable[[Any], Any] = attrgetter(lot) if isinstance(lot, str) else _fixed(lot)
        self.stuck, self.twin = stuck or name, twin
        self.give_back, self.unblock, self.after = give_back, unblock, after

    def finish(self, result: Any) -> R:
        """The face's return value for an attempt's ``result`` (or ``TIMED_OUT``)."""
        if result is TIMED_OUT:
            timed_out = self.timed_out
            if isinstance(timed_out, type) and issubclass(timed_out, BaseException):
                raise timed_out
            return timed_out  # type: ignore[return-value]
        return result  # type: ignore[no-any-return]


def _fixed(lot: Any) -> Callable[[Any], Any]:
    """The ``lot`` of a description whose primitives all share one (process lots)."""
    return lambda obj: lot


class Waiting:
    """Names a wait for ``Deadlock`` reports; the primitive is described as it is then."""

    __slots__ = ("obj", "text")

    def __init__(self, text: str, obj: object) -> None:
        self.text, self.obj = text, obj

    def __str__(self) -> str:
        return f"{self.text} {self.obj!r}"


# ------------------------------------------------------------------ controlled runs


def controlled() -> bool:
    """True if the caller is a task of a controlled run (one global read if none is)."""
    h = _control.hook
    return h is not None and h.controls_caller()


def switch(op: str, obj: object) -> None:
    """A switch point before ``op`` on ``obj``, which other tasks can observe."""
    h = _control.hook
    if h is not None:
        h.switch(op, obj)


def observe(op: str, obj: object) -> None:
    """A switch point before a snapshot read (``qsize()``, ``locked()``) of ``obj``."""
    h = _control.hook
    if h is not None:
        h.observe(op, obj)


async def aswitch(op: str, obj: object) -> None:
    """The awaitable twin of ``switch``, for a coroutine task of a controlled run."""
    h = _control.hook
    if h is not None and h.controls_caller():
        await h.aswitch(op, obj)


def active() -> bool:
    """True while a controlled run is in progress (in any thread)."""
    return _control.hook is not None


def hold_until(ready: Callable[[], bool], name: str, obj: object) -> bool:
    """In a controlled run, wait (as the scheduler sees it) until ``ready()``.

    For a wait that only a controlled run needs (its tasks take turns inside an
    operation that is atomic otherwise); False at once if the caller is not its task.
    """
    h = _control.hook
    if h is None or not h.controls_caller():
        return False
    h.wait_until(ready, Waiting(name, obj), obj, None)
    return True


def attempt_now(w: Wait[Any], obj: Any, arg: Any) -> Any:
    """Run ``w``'s attempt once, never waiting: a result or ``NOT_READY``."""
    lot = w.lot(obj)
    while True:
        result = lot.attempt(w, obj, arg)
        if result is not AGAIN:
            return result
        w.unblock(obj, arg)  # type: ignore[misc]


# ------------------------------------------------------------------ the driver


def block(w: Wait[R], obj: Any, arg: Any, timeout: float | None, tried: bool = False) -> R:
    """The blocking face of ``w``: attempt, and park the calling thread until it succeeds.

    ``tried``: the face made its own first attempt (its hot path), which failed.
    """
    pending = _start(w, obj, arg, timeout, True, tried)
    while type(pending) is _Pending and pending.sleep():
        pass
    return pending.result if type(pending) is _Pending else pending  # type: ignore[no-any-return]


async def ablock(w: Wait[R], obj: Any, arg: Any, timeout: float | None) -> R:
    """The awaitable face of ``w``: the same wait, parking the calling coroutine."""
    pending = _start(w, obj, arg, timeout, False, False)
    while type(pending) is _Pending and await pending.asleep():
        pass
    return pending.result if type(pending) is _Pending else pending  # type: ignore[no-any-return]


def _start(
    w: Wait[Any], obj: Any, arg: Any, timeout: float | None, thread: bool, tried: bool
) -> Any:
    """Attempt once (the fast path): the result, or a ``_Pending`` wait to sleep through."""
    h = _control.hook
    if h is not None and h.controls_caller():
        return _Pending(w, obj, arg, timeout, thread, h)
    if tried:
        return _Pending(w, obj, arg, timeout, thread, None)
    result = w.lot(obj).attempt(w, obj, arg)
    if result is NOT_READY or result is AGAIN:
        return _Pending(w, obj, arg, timeout, thread, None)
    return result


class _Pending:
    """One wait in progress, the same for both faces: what it sleeps on, or its result.

    Two strategies: a task of a controlled run states its wait as a condition to the
    run's scheduler (``_control.wait_until``: it never blocks for real); any other
    caller parks in the primitive's lot and sleeps as the lot's kind and the face say.
    ``sleep``/``asleep`` sleep once and return True while the caller must sleep again.
    """

    __slots__ = (
        "arg",
        "deadline",
        "h",
        "lot",
        "obj",
        "ready",
        "result",
        "thread",
        "ticket",
        "timeout",
        "w",
        "what",
    )

    def __init__(
        self, w: Wait[Any], obj: Any, arg: Any, timeout: float | None, thread: bool, h: Any
    ) -> None:
        self.w, self.obj, self.arg, self.h = w, obj, arg, h
        self.timeout, self.thread = timeout, thread
        if h is not None:
            ready = w.ready
            self.ready = lambda: ready(obj)
            self.what = Waiting(w.name if thread else w.aname, obj)
        else:
            self.lot = w.lot(obj)
            self.deadline = check_timeout(timeout)
            self.ticket: Any = None  # not parked yet

    def park(self) -> bool:
        """Attempt; if not ready, enroll in the lot: True while the caller must sleep."""
        w, obj, arg = self.w, self.obj, self.arg
        while True:
            result, ticket = self.lot.park(w, obj, arg, self.deadline, self.thread)
            if ticket is not None:
                self.ticket = ticket
                return True
            if result is not AGAIN:
                self.result = w.finish(result)
                return False
            w.unblock(obj, arg)  # type: ignore[misc]

    def woke(self, woke: Any) -> bool:
        """After one sleep that ended with ``woke``: True while the caller must sleep again."""
        w = self.w
        if type(woke) is tuple:
            self.result = woke[0]  # handed over (see ParkingLot.hand_over)
            return False
        if self.h is None:
            if w.once:
                self.result = w.finish(bool(woke) or w.ready(self.obj))
                return False
            return self.park()
        if not woke:
            result = TIMED_OUT
        elif w.once:
            result = True
        else:
            result = attempt_now(w, self.obj, self.arg)
            if result is NOT_READY:
                return True  # a thread outside the run took it first: wait again
        self.result = w.finish(result)
        return False

    def sleep(self) -> bool:
        """Sleep once on a thread (a thread's wake-up carries nothing: it looks again)."""
        if self.h is not None:
            return self.woke(self.h.wait_until(self.ready, self.what, self.obj, self.timeout))
        if self.ticket is None:
            return self.park()
        self.lot.sleep(self.obj, self.ticket, self.deadline)
        return self.woke(False)

    async def asleep(self) -> bool:
        """Sleep once in a coroutine (its wake-up may carry what a release handed it)."""
        if self.h is not None:
            return self.woke(
                await self.h.await_until(self.ready, self.what, self.obj, self.timeout)
            )
        if self.ticket is None:
            return self.park()
        return self.woke(await self.lot.asleep(self.w, self.obj, self.ticket, self.deadline))


# ------------------------------------------------------------------ one process


class ParkingLot(deque[Any]):
    """Where callers of an in-process primitive wait, longest first: threads and coroutines.

    A thread parks on a ``_thread`` lock acquired when it enrolled (``unpark`` releases
    it); a coroutine, on asyncio or on taskkit's coroutine scheduler, awaits a
    ``taskkit.Future`` (``unpark`` sets it to True, a timeout to False).  Both sit in one
    FIFO (the lot is that deque: ``if lot:`` and ``len(lot)`` cost no Python call), so
    a release wakes the longest waiter whatever kind it is.  ``mutex`` is the
    primitive's own, shared by its lots; ``refuse(w, obj, deadline)`` may veto a
    thread's wait (the serial backend, the coroutine scheduler's thread) by raising.
    """

    __slots__ = ("mutex", "refuse")

    def __init__(
        self, mutex: Any, refuse: Callable[[Wait[Any], Any, float | None], None] | None = None
    ) -> None:
        super().__init__()
        self.mutex = mutex
        self.refuse = refuse

    # -- what the driver calls --------------------------------------------------------

    def attempt(self, w: Wait[Any], obj: Any, arg: Any) -> Any:
        with self.mutex:
            return w.attempt(obj, arg)

    def park(
        self, w: Wait[Any], obj: Any, arg: Any, deadline: float | None, thread: bool
    ) -> tuple[Any, Any]:
        """Attempt; if not ready, enroll the caller, all under the mutex (no lost wake-up)."""
        with self.mutex:
            result = w.attempt(obj, arg)
            if result is not NOT_READY:
                return result, None
            if deadline is not None and time.monotonic() >= deadline:
                return TIMED_OUT, None
            if thread:
                if self.refuse is not None:
                    self.refuse(w, obj, deadline)
                waiter: Any = thread_waiter()
            else:
                waiter = Future()
            self.append(waiter)
        return NOT_READY, waiter

    def sleep(self, obj: Any, waiter: Any, deadline: float | None) -> bool:
        """Block the calling thread until woken; False if ``deadline`` passed first."""
        left = remaining(deadline)
        if waiter.acquire(True, -1 if left is None else left):
            return True
        with self.mutex:
            _discard(self, waiter)  # not there if woken just as it timed out
        return False

    async def asleep(
        self, w: Wait[Any], obj: Any, waiter: Future[Any], deadline: float | None
    ) -> Any:
        """Await the coroutine's waiter: True (woken), False (timed out) or ``(gift,)``."""
        try:
            woke = await await_waiter(waiter, self.limit(deadline))
        except BaseException:
            # Cancelled.  What a release or put already gave this task is passed on, or
            # the next waiter would sleep although the primitive is ready for it.
            with self.mutex:
                handed = _withdraw(self, waiter)
                if handed is True and w.ready(obj):
                    self.unpark()
            if type(handed) is tuple and w.give_back is not None:
                w.give_back(obj, handed[0])
            raise
        if woke is False or w.once:
            # Out of line if it timed out.  A wait that one wake-up ends (an event's)
            # also waits here for the waker, which holds the mutex until it has woken
            # every waiter: this task, running on, would otherwise keep the waker from
            # the GIL, and the others would wake late.
            with self.mutex:
                _discard(self, waiter)
        return woke

    def limit(self, deadline: float | None) -> float | None:
        """How long a coroutine sleeps before it looks again by itself (see ``LockLot``)."""
        return deadline

    # -- what state functions call (under the mutex) ----------------------------------

    def unpark(self) -> None:
        """Wake the longest-waiting waiter that can still be woken."""
        waiters = self
        while waiters:
            waiter = waiters.popleft()
            if type(waiter) is LockType:
                waiter.release()
                return
            if try_set_result(waiter, True):
                return
            # a coroutine that timed out or was cancelled: wake the next one instead

    def unpark_all(self) -> None:
        """Wake every waiter."""
        while self:
            self.unpark()

    def hand_over(self, gift: object) -> bool:
        """Give ``gift`` to the longest-waiting coroutine; its wait returns ``gift``.

        True if a coroutine took it: the lock stays held, the unit stays taken, or the
        item skips the queue, for that coroutine, so no task that comes later can take
        it first (the longest waiter gets it, as ``asyncio.Lock`` hands it over).  False
        if the line is empty or a thread is first in it: a thread cannot be handed
        anything, so the caller frees it and wakes that thread, which takes it itself.
        """
        waiters = self
        while waiters:
            waiter = waiters[0]
            if type(waiter) is LockType:
                return False
            waiters.popleft()
            if try_set_result(waiter, (gift,)):
                return True
            # a coroutine that timed out or was cancelled: the next one
        return False

    def discard(self, waiter: object) -> None:
        """Take ``waiter`` out of the line if it is still there (under the mutex)."""
        _discard(self, waiter)


def thread_waiter() -> LockType:
    """A waiter for the calling thread: block with ``acquire(True, timeout)``."""
    waiter = allocate_lock()
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
    try_set_result(waiter, False)


def _discard(waiters: deque[Any], waiter: object) -> None:
    try:
        waiters.remove(waiter)
    except ValueError:
        pass


def _withdraw(waiters: deque[Any], waiter: Future[Any]) -> Any:
    """Take a coroutine's waiter out of the line (under the mutex): False if it was not
    woken, else what woke it (True, or a gift the caller must pass on)."""
    if try_set_result(waiter, False) or waiter.cancelled():
        _discard(waiters, waiter)
        return False
    return waiter.result()
