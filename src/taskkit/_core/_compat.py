"""Every private name of the standard library that taskkit uses, in one place.

taskkit reaches into the standard library where no public interface does the
job, or does it too slowly for a hot path.  Each such name is read here and
nowhere else (multiprocessing's, which a worker process needs without asyncio,
in ``_compat_mp``, re-exported here), so a new Python release is checked
against this one module and that part of it::

    concurrent.futures  Future's state names, and the attributes its wait() and
                        as_completed() read, which taskkit.Future implements
    asyncio             the running loop without raising, setting it (taskkit.testing),
                        a loop's thread and its ready and timer queues, a handle's
                        callback
    threading, _thread  exit hooks that run before threads are joined; C locks made
                        where taskkit.testing may have replaced threading.Lock; the
                        save/restore protocol of RLock and Condition
    multiprocessing     the fork server's preload list, a worker's exit hooks, the C
                        semaphore, POSIX shared memory
    queue, random, sys  the pure-Python SimpleQueue, random's urandom, frames

and one private name of a dependency, Dask's (``distributed``): a future's
outcome without raising it.

Three classes elsewhere implement a private protocol by defining methods of
the names the standard library calls, so those names stay where they are and
are checked here: ``taskkit.Future`` (the Future attributes below),
taskkit.testing's ``RLock`` (``_is_owned``, ``_release_save``,
``_acquire_restore``, ``_at_fork_reinit``: what a Condition and ``os.fork``
call on a lock) and taskkit.testing's ``ControlledLoop`` (``_call_soon``).

Every name below was checked on CPython 3.10, 3.11, 3.12 and 3.13 (the
versions taskkit supports).  Each says what taskkit does if a release removes
it: a fallback that keeps working (maybe slower), or an ``ImportError`` at
``import taskkit`` naming what changed, never a failure in the middle of a
task.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib
import queue
import random
import sys
import threading
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ._compat_mp import add_forkserver_preload, run_multiprocessing_exit_hooks

__all__ = [
    "CANCELLED",
    "CANCELLED_AND_NOTIFIED",
    "FINISHED",
    "PENDING",
    "RUNNING",
    "LockType",
    "PySimpleQueue",
    "RLock",
    "SemLock",
    "add_forkserver_preload",
    "base_call_soon",
    "allocate_lock",
    "condition_acquire_restore",
    "condition_is_owned",
    "condition_lock",
    "condition_release_save",
    "condition_waiters",
    "current_frames",
    "dask_outcome",
    "get_running_loop_or_none",
    "getframe",
    "handle_callback",
    "has_loop_thread_id",
    "loop_ready",
    "loop_thread_id",
    "loop_timers",
    "random_urandom",
    "rlock_acquire_restore",
    "rlock_release_save",
    "run_handle",
    "run_multiprocessing_exit_hooks",
    "register_atexit",
    "semlock_is_zero",
    "set_running_loop",
    "shm_open",
    "shm_unlink",
    "timer_unscheduled",
]


def _changed(what: str) -> ImportError:
    return ImportError(
        f"taskkit does not support Python {sys.version.split()[0]}: {what} "
        "(taskkit was checked on CPython 3.10 to 3.13)"
    )


# -- concurrent.futures ---------------------------------------------------------------------

# The states of a concurrent.futures.Future.  Checked: 3.10-3.13 (the same five strings).
# If concurrent.futures._base goes: the same strings, which Future's own methods compare.
try:
    from concurrent.futures._base import (
        CANCELLED,
        CANCELLED_AND_NOTIFIED,
        FINISHED,
        PENDING,
        RUNNING,
    )
except ImportError:  # pragma: no cover - not on 3.10-3.13
    PENDING = "PENDING"  # type: ignore[misc]
    RUNNING = "RUNNING"  # type: ignore[misc]
    CANCELLED = "CANCELLED"  # type: ignore[misc]
    CANCELLED_AND_NOTIFIED = "CANCELLED_AND_NOTIFIED"  # type: ignore[misc]
    FINISHED = "FINISHED"  # type: ignore[misc]

# taskkit.Future subclasses concurrent.futures.Future and keeps its state where
# concurrent.futures.wait(), as_completed() and the base class's methods read it: these
# attributes.  Checked: 3.10-3.13.  If they change: ImportError now (wait() and
# as_completed() would otherwise misread every taskkit future).
_FUTURE_PROTOCOL = (
    "_condition",
    "_state",
    "_result",
    "_exception",
    "_waiters",
    "_done_callbacks",
    "_invoke_callbacks",
)
_future = concurrent.futures.Future()  # type: ignore[var-annotated]
if not all(hasattr(_future, name) for name in _FUTURE_PROTOCOL):  # pragma: no cover
    raise _changed("concurrent.futures.Future keeps its state differently")
del _future

# -- asyncio --------------------------------------------------------------------------------

# The running loop of this thread, or None: get_running_loop() without the cost of raising
# and catching RuntimeError on every call from outside a loop.  Checked: 3.10-3.13 (in
# asyncio.events.__all__).  If it goes: the same answer through get_running_loop().
try:
    from asyncio import _get_running_loop as get_running_loop_or_none
except ImportError:  # pragma: no cover - not on 3.10-3.13

    def get_running_loop_or_none() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None


def _no_set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:  # pragma: no cover
    raise RuntimeError(
        f"taskkit.testing cannot run asyncio code on Python {sys.version.split()[0]}: "
        "asyncio no longer lets a loop be set as running"
    )


# Make ``loop`` the running loop of this thread (taskkit.testing's ControlledLoop runs one
# handle at a time instead of run_forever).  Checked: 3.10-3.13.  If it goes: the rest of
# taskkit works; taskkit.testing says it cannot run asyncio code when asked to.
set_running_loop: Callable[[asyncio.AbstractEventLoop | None], None] = getattr(
    asyncio.events, "_set_running_loop", _no_set_running_loop
)

# The thread running an asyncio loop (None while it is stopped): cheaper than asking for
# the running loop on every submit.  Checked: 3.10-3.13 (BaseEventLoop sets it in
# run_forever).  If it goes: has_loop_thread_id() is False and the asyncio backend asks
# for the running loop instead.
loop_thread_id: Callable[[asyncio.AbstractEventLoop], int | None] = attrgetter("_thread_id")


def has_loop_thread_id(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop_thread_id(loop)`` says which thread runs ``loop``."""
    return isinstance(loop, asyncio.BaseEventLoop) and hasattr(loop, "_thread_id")


# A BaseEventLoop's ready handles (a deque) and timers (a heap of TimerHandle), a handle's
# callback and how to run it, and the flag a timer taken off the heap clears: what
# taskkit.testing's ControlledLoop (a BaseEventLoop that never runs itself) steps through.
# Checked: 3.10-3.13.  If one goes: ImportError now, since the controlled loop would
# otherwise step asyncio code wrongly.
_loop = asyncio.BaseEventLoop()  # no selector, no file descriptors
try:
    if not (
        hasattr(_loop, "_ready")
        and isinstance(getattr(_loop, "_scheduled", None), list)
        and all(hasattr(asyncio.Handle, name) for name in ("_callback", "_run"))
        and hasattr(asyncio.TimerHandle, "_scheduled")
    ):  # pragma: no cover - not on 3.10-3.13
        raise _changed("asyncio's event loop keeps its handles differently")
finally:
    _loop.close()
del _loop

loop_ready: Callable[[asyncio.AbstractEventLoop], Any] = attrgetter("_ready")
loop_timers: Callable[[asyncio.AbstractEventLoop], list[asyncio.TimerHandle]] = attrgetter(
    "_scheduled"
)
handle_callback: Callable[[asyncio.Handle], Callable[..., object]] = attrgetter("_callback")

# BaseEventLoop's own call_soon without its checks: what every call_soon, and
# call_soon_threadsafe, of a loop comes down to; taskkit.testing's ControlledLoop overrides
# _call_soon to see each new handle, and calls this.  Checked: 3.10-3.13.  If it goes:
# ImportError now.
if not hasattr(asyncio.BaseEventLoop, "_call_soon"):  # pragma: no cover - not on 3.10-3.13
    raise _changed("asyncio's event loop schedules callbacks differently")
base_call_soon: Callable[..., asyncio.Handle] = asyncio.BaseEventLoop._call_soon


def run_handle(handle: asyncio.Handle) -> None:
    """Run a ready handle's callback as the loop would (errors go to its exception handler)."""
    handle._run()


def timer_unscheduled(timer: asyncio.TimerHandle) -> None:
    """Mark a timer taken off its loop's heap, as the loop does when it pops one."""
    timer._scheduled = False  # type: ignore[attr-defined]


# -- threading and _thread -------------------------------------------------------------------

# Run ``fn`` at interpreter exit *before* non-daemon threads are joined, so an executor
# can stop its threads instead of being waited for.  Checked: 3.10-3.13.  If it goes:
# atexit.register, which runs after the join (a program whose executor was never shut
# down then waits for its threads).
register_atexit: Callable[[Callable[[], object]], object] = getattr(
    threading, "_register_atexit", atexit.register
)

# Plain C locks for taskkit's own bookkeeping.  Bound now, at import: taskkit.testing
# replaces threading.Lock and threading.RLock with locks its runs can control, and
# taskkit's internals must keep the C ones (the public names of _thread.allocate_lock,
# _thread.LockType and _thread.RLock; checked: 3.10-3.13).
if TYPE_CHECKING:
    from _thread import LockType as LockType
    from _thread import RLock as RLock
    from _thread import allocate_lock as allocate_lock
else:
    allocate_lock = threading.Lock
    LockType = type(allocate_lock())
    RLock = type(threading.RLock())

# An RLock's release-all and re-acquire, as threading.Condition.wait uses them: a future
# waits with its RLock released however often its thread holds it.  Checked: 3.10-3.13
# (the C RLock's _release_save and _acquire_restore).  If they go: release once and
# acquire once, which is what Condition itself falls back to.
if hasattr(RLock, "_release_save") and hasattr(RLock, "_acquire_restore"):
    rlock_release_save: Callable[[Any], Any] = RLock._release_save
    rlock_acquire_restore: Callable[[Any, Any], None] = RLock._acquire_restore
else:  # pragma: no cover - not on 3.10-3.13

    def rlock_release_save(lock: Any) -> Any:
        lock.release()
        return None

    def rlock_acquire_restore(lock: Any, state: Any) -> None:
        lock.acquire()


# A threading.Condition's lock, its waiters (a deque of locks notify() releases) and its
# own release-all, re-acquire and is-owned: what taskkit.testing's Condition.wait,
# notify_all, __enter__ and __exit__ use in place of the real ones during a controlled run.
# A lock given to a Condition answers _is_owned, _release_save and _acquire_restore
# (taskkit.testing's RLock does).  Checked: 3.10-3.13.  If they go: ImportError now.
_condition = threading.Condition()
if not all(
    hasattr(_condition, name)
    for name in ("_lock", "_waiters", "_is_owned", "_release_save", "_acquire_restore")
):  # pragma: no cover - not on 3.10-3.13
    raise _changed("threading.Condition keeps its lock and waiters differently")
del _condition

condition_lock: Callable[[threading.Condition], Any] = attrgetter("_lock")
condition_waiters: Callable[[threading.Condition], Any] = attrgetter("_waiters")


def condition_is_owned(condition: threading.Condition) -> bool:
    """True if this thread holds ``condition``'s lock."""
    return bool(condition._is_owned())  # type: ignore[attr-defined]


def condition_release_save(condition: threading.Condition) -> Any:
    """Release ``condition``'s lock however often it is held; the state to restore."""
    return condition._release_save()  # type: ignore[attr-defined]


def condition_acquire_restore(condition: threading.Condition, state: Any) -> None:
    """Take ``condition``'s lock back as ``condition_release_save`` left it."""
    condition._acquire_restore(state)  # type: ignore[attr-defined]


# -- multiprocessing -------------------------------------------------------------------------


# add_forkserver_preload(module) and run_multiprocessing_exit_hooks(): in _compat_mp
# (imported above), which a worker process imports without asyncio.


# The C semaphore behind multiprocessing.Lock, used by taskkit's thread Lock for its C
# fast path.  Checked: 3.10-3.13 (with _is_zero).  If it goes (or the platform has no
# sem_open): None, and taskkit's thread primitives use their pure-Python lock instead.
# semlock_is_zero(lock): True if the semaphore has no unit left (a lock is held).
SemLock: Any
semlock_is_zero: Callable[[Any], bool]
try:
    SemLock = importlib.import_module("_multiprocessing").SemLock
    semlock_is_zero = SemLock._is_zero
except (ImportError, AttributeError):  # pragma: no cover - platforms without sem_open
    SemLock = None

    def semlock_is_zero(lock: Any) -> bool:
        raise TypeError("there is no C semaphore on this platform")


# POSIX shared memory by name, as multiprocessing.shared_memory opens it, without that
# class's resource tracker.  Checked: 3.10-3.13.  If it goes (or off POSIX): both raise
# OSError; the process primitives need Linux anyway and say so first (_shm.available()).
shm_open: Callable[..., int]
shm_unlink: Callable[[str], None]
try:
    _posixshmem = importlib.import_module("_posixshmem")
except ImportError:  # pragma: no cover - not POSIX

    def shm_open(name: str, flags: int, mode: int = 0o777) -> int:
        raise OSError(f"cannot open shared memory {name!r}: POSIX shared memory is missing")

    def shm_unlink(name: str) -> None:
        raise OSError(f"cannot unlink shared memory {name!r}: POSIX shared memory is missing")

else:
    shm_open, shm_unlink = _posixshmem.shm_open, _posixshmem.shm_unlink


# -- distributed (Dask) ---------------------------------------------------------------------


def dask_outcome(future: Any) -> Any:
    """A coroutine giving a Dask future's outcome without raising the task's error.

    It waits for the future, then gives its result, the cleaned ``(type, error,
    traceback)`` of a task that failed, or the ``CancelledError`` of a cancelled
    one: what the dask backend settles its tasks from, on the client's loop.  Dask
    has no public call for this: ``await future`` raises the task's error, its
    traceback lengthened by the client's own frames, and a lost connection raises
    too.  Used since distributed 2024.1 (taskkit's oldest), checked on 2026.8
    (``Future._result(raiseit=False)``).  If it goes: each Dask task fails with the
    ``AttributeError``, as after a lost connection.
    """
    return future._result(raiseit=False)


# -- queue, random, sys ----------------------------------------------------------------------

# The pure-Python SimpleQueue, which waits on a Semaphore that taskkit.testing controls (the
# C one blocks for real).  Checked: 3.10-3.13.  If it goes: queue.Queue, which has the same
# put and get and waits on a Condition that taskkit.testing controls.
PySimpleQueue: type[Any] = getattr(queue, "_PySimpleQueue", queue.Queue)

# Where random reads fresh entropy when seeded with None (taskkit.testing makes it
# repeatable).  Checked: 3.10-3.13 (``random._urandom`` is ``os.urandom``).  If it goes:
# None, and only ``os.urandom`` is replaced.
random_urandom: tuple[Any, str] | None = (
    (random, "_urandom") if hasattr(random, "_urandom") else None
)

# The caller's frame and every thread's current frame, for taskkit.testing's tracing and
# its report of a stuck task.  Documented, though as CPython details.  Checked: 3.10-3.13.
# If they go: ImportError now (taskkit.testing cannot work without frames).
if not (hasattr(sys, "_getframe") and hasattr(sys, "_current_frames")):  # pragma: no cover
    raise _changed("sys no longer gives frames")
getframe = sys._getframe
current_frames = sys._current_frames
