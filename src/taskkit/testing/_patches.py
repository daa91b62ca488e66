"""Make the standard library's locks, conditions, queues and sleeps switch points.

Two mechanisms, chosen by what can be changed soundly:

* ``threading.Lock`` and ``threading.RLock`` are C types whose instances cannot be altered,
  so importing ``taskkit.testing`` replaces the two *factories* with the classes below.  Each
  instance wraps a real lock and behaves exactly like one, except that a task of a controlled
  run acquires it through the scheduler (so blocking on it is seen, and a lock-order
  deadlock is reported instead of hanging).  Locks created before ``taskkit.testing`` was
  imported stay raw: the watchdog reports a task blocked on one.
* ``Condition``, ``Event``, ``Semaphore``, ``Barrier`` and ``queue.Queue`` are Python classes
  built on ``Condition.wait``.  For the duration of a run (``begin`` ... ``end``) functions are
  patched on their class or module, which also covers instances created long before the run:
  ``Condition.wait`` and ``wait_for``; ``time.sleep`` and the clocks, also where a module
  imported them by name; ``random`` (seeded) and ``os.urandom`` (noted); ``asyncio.run``
  and an event loop's ``run_forever``; ``Thread.__init__``, ``start``, ``join`` and
  ``is_alive``; ``queue.SimpleQueue`` (the Python one).  The patched functions take the
  controlled path only for the run's tasks; every other thread gets the original behaviour.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from .._core import _control
from .._core._compat import (
    PySimpleQueue,
    allocate_lock,
    condition_acquire_restore,
    condition_is_owned,
    condition_lock,
    condition_release_save,
    condition_waiters,
    getframe,
    random_urandom,
)
from ._tracing import TRACED, classify, classify_frame

__all__ = ["Lock", "RLock", "begin", "end", "install_factories"]

_allocate = allocate_lock
_get_ident = threading.get_ident
_real_sleep = time.sleep
_real_monotonic = time.monotonic
_real_wait = threading.Condition.wait
_real_wait_for = threading.Condition.wait_for
_real_notify = threading.Condition.notify


def _controlled(h: Any) -> bool:
    return h is not None and h.controls_caller()


def _announced() -> bool:
    """Is the lock operation called directly by traced code (the code under test)?

    Locks used inside the standard library (the mutex of a ``queue.Queue``, the lock of an
    ``Event``'s condition) are held only within one untraced method, where no task can be
    preempted, so taking them free of contention needs no switch point of its own: the call
    into that method was one.  Blocking on them is still seen by the scheduler.
    """
    return classify_frame(getframe(2)) == TRACED


def _acquire_controlled(
    h: Any, lock: Lock | RLock, blocking: bool, timeout: float, announce: bool = True
) -> bool:
    """Acquire ``lock._raw`` as a task: the scheduler sees the wait, so it can report deadlocks."""
    raw = lock._raw
    if not announce:
        if raw.acquire(False):
            lock._holder = h.caller().name
            h.held[lock] = None
            return True
        if not blocking:
            return False  # Condition._is_owned() probing its own lock, for instance
    if not blocking:
        h.switch("try-acquire", lock)
        got = raw.acquire(False)
    else:
        limit = None if timeout is None or timeout < 0 else timeout
        while True:
            if not h.wait_until(lambda: not raw.locked(), _Holder(lock), lock, limit):
                return False
            got = raw.acquire(False)
            if got:
                break  # else a thread outside the run took it first: wait again
    if got:
        lock._holder = h.caller().name
        h.held[lock] = None
    return got


def _forget(lock: Lock | RLock) -> None:
    h = _control.hook
    if h is not None:
        held = getattr(h, "held", None)
        if held is not None:
            held.pop(lock, None)


class _Holder:
    """Describes a lock wait for Deadlock reports, naming the holder when the report is made."""

    __slots__ = ("lock",)

    def __init__(self, lock: Lock | RLock) -> None:
        self.lock = lock

    def __str__(self) -> str:
        holder = self.lock._holder
        held = f", held by {holder}" if holder else ""
        return f"{self.lock!r}{held}"


class Lock:
    """``threading.Lock`` that becomes a switch point in a controlled run."""

    __slots__ = ("__weakref__", "_holder", "_raw")

    def __init__(self) -> None:
        self._raw = _allocate()
        self._holder: str | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        h = _control.hook
        if h is not None and h.controls_caller():
            return _acquire_controlled(h, self, blocking, timeout, _announced())
        return self._raw.acquire(blocking, timeout)

    __enter__ = acquire

    def release(self) -> None:
        h = _control.hook
        if h is not None:
            try:
                if _announced():
                    h.switch("release", self)  # a no-op unless the caller is a task
            finally:
                # release even when the run is being aborted: the next run needs the lock
                _forget(self)
                self._holder = None
                self._raw.release()
            return
        self._holder = None
        self._raw.release()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def locked(self) -> bool:
        return self._raw.locked()

    def _at_fork_reinit(self) -> None:
        self._raw = _allocate()
        self._holder = None

    def __repr__(self) -> str:
        state = "locked" if self._raw.locked() else "unlocked"
        return f"<{state} Lock at {id(self):#x}>"


class RLock:
    """``threading.RLock`` that becomes a switch point in a controlled run."""

    __slots__ = ("__weakref__", "_count", "_holder", "_owner", "_raw")

    def __init__(self) -> None:
        self._raw = _allocate()
        self._holder: str | None = None
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _get_ident()
        if self._owner == me:
            self._count += 1
            return True
        h = _control.hook
        if h is not None and h.controls_caller():
            got = _acquire_controlled(h, self, blocking, timeout, _announced())
        else:
            got = self._raw.acquire(blocking, timeout)
        if got:
            self._owner, self._count = me, 1
        return got

    __enter__ = acquire

    def release(self) -> None:
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        if self._count > 1:
            self._count -= 1
            return
        h = _control.hook
        if h is not None:
            try:
                if _announced():
                    h.switch("release", self)
            finally:
                _forget(self)
                self._owner, self._count, self._holder = None, 0, None
                self._raw.release()
            return
        self._owner, self._count, self._holder = None, 0, None
        self._raw.release()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return self._owner == _get_ident()

    def _recursion_count(self) -> int:
        return self._count if self._owner == _get_ident() else 0

    def _release_save(self) -> tuple[int, int | None]:
        if self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        _forget(self)
        self._owner, self._count, self._holder = None, 0, None
        self._raw.release()
        return state

    def _acquire_restore(self, state: tuple[int, int | None]) -> None:
        h = _control.hook
        if h is not None and h.controls_caller():
            _acquire_controlled(h, self, True, -1, announce=False)
        else:
            self._raw.acquire()
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._raw = _allocate()
        self._owner, self._count, self._holder = None, 0, None

    def __repr__(self) -> str:
        state = "locked" if self._raw.locked() else "unlocked"
        return f"<{state} RLock at {id(self):#x} count={self._count}>"


# Code that names a lock's type (error messages, reprs in logs) sees the C type's name.
Lock.__name__ = Lock.__qualname__ = "lock"

_installed = False


def release_leftovers(held: dict[Lock | RLock, None]) -> None:
    """Release locks that tasks of a finished run still hold, so the next run starts clean."""
    for lock in list(held):
        if isinstance(lock, RLock):
            lock._owner, lock._count = None, 0
        lock._holder = None
        if lock._raw.locked():
            lock._raw.release()
    held.clear()


def install_factories() -> None:
    """Make ``threading.Lock()`` and ``threading.RLock()`` create controllable locks."""
    global _installed
    if not _installed:
        threading.Lock = Lock  # type: ignore[assignment]
        threading.RLock = RLock  # type: ignore[assignment]
        threading.Thread.__hash__ = _thread_hash  # type: ignore[method-assign,assignment]
        _installed = True


def _thread_hash(self: threading.Thread) -> int:
    # A thread made by a task hashes by the order the run made it in, not by its address:
    # code that keeps threads in a set (ThreadPoolExecutor joins them in set order) must do
    # the same in every execution, or the search could not repeat it.
    stamp = self.__dict__.get("_taskkit_order")
    return object.__hash__(self) if stamp is None else int(stamp)


class _Waiter:
    """Stands in for the raw lock ``Condition.wait`` parks on; ``notify()`` releases it."""

    __slots__ = ("released",)

    def __init__(self) -> None:
        self.released = False

    def release(self) -> None:
        self.released = True

    def is_released(self) -> bool:
        return self.released


def _condition_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    h: Any = _control.hook
    if not _controlled(h):
        return _real_wait(self, timeout)
    lock = condition_lock(self)
    owned = lock._raw.locked() if isinstance(lock, Lock) else condition_is_owned(self)
    if not owned:
        raise RuntimeError("cannot wait on un-acquired lock")
    _switch_if_traced("wait", self)  # giving up the lock is an operation on it
    waiter = _Waiter()
    condition_waiters(self).append(waiter)
    saved = condition_release_save(self)
    got = False
    try:
        got = bool(h.wait_until(waiter.is_released, _Notify(self), self, timeout))
        return got
    finally:
        condition_acquire_restore(self, saved)
        if not got:
            try:
                condition_waiters(self).remove(waiter)
            except ValueError:
                pass


# ``with cond:`` and ``cond.notify()`` called by the code under test are operations on the
# condition and its lock, not calls that may touch anything: the search then reorders them
# only against other operations on the same condition or lock.


def _switch_if_traced(op: str, condition: threading.Condition) -> None:
    """A switch point for ``op`` on ``condition`` when the code under test called it.

    Called directly, or through a wrapper of this module that stands for a method of the
    standard library (``wait()`` in ``wait_for()``): the wrapper's caller decides.  Methods
    of the standard library and taskkit's own code that use a condition inside one of their
    operations (a queue's ``get()``, an event's ``wait()``) add no switch point of their own:
    the call into them was one.
    """
    h: Any = _control.hook
    if not _controlled(h):
        return
    frame: Any = getframe(2)
    while frame is not None and frame.f_code in _WRAPPERS:
        frame = frame.f_back
    if frame is not None and classify_frame(frame) == TRACED:
        h.switch(op, condition)


def _condition_enter(self: threading.Condition) -> bool:
    _switch_if_traced("acquire", self)
    return bool(condition_lock(self).__enter__())


def _condition_exit(self: threading.Condition, *exc_info: object) -> None:
    _switch_if_traced("release", self)
    condition_lock(self).__exit__(*exc_info)


def _condition_notify(self: threading.Condition, n: int = 1) -> None:
    _switch_if_traced("notify", self)
    _real_notify(self, n)


def _condition_notify_all(self: threading.Condition) -> None:
    _switch_if_traced("notify_all", self)
    _real_notify(self, len(condition_waiters(self)))


class _Notify:
    """Names a condition wait for reports, describing the condition as it is then."""

    __slots__ = ("condition",)

    def __init__(self, condition: threading.Condition) -> None:
        self.condition = condition

    def __str__(self) -> str:
        return f"notify() on {self.condition!r}"


def _condition_wait_for(
    self: threading.Condition, predicate: Callable[[], Any], timeout: float | None = None
) -> Any:
    h: Any = _control.hook
    if not _controlled(h):
        return _real_wait_for(self, predicate, timeout)
    # Called by the code under test, this stands for the loop ``while not predicate():
    # self.wait()`` written there: each wait() gives up the lock at a switch point of its own
    # (see _switch_if_traced), and a predicate that is not traced code (a builtin such as
    # ``items.__len__``) is called at a switch point, as a call from traced code into it is.
    announce = classify_frame(getframe(1)) == TRACED and not _traced_code(predicate)
    end = None if timeout is None else h.now() + timeout
    if announce:
        h.switch(f"call {_name_of(predicate)}", None)
    result = predicate()
    while not result:
        if end is None:
            self.wait()
        else:
            remaining = end - h.now()
            if remaining <= 0:
                break
            self.wait(remaining)
        if announce:
            h.switch(f"call {_name_of(predicate)}", None)
        result = predicate()
    return result


_WRAPPERS = {_condition_wait_for.__code__}


def _traced_code(fn: object) -> bool:
    """Is ``fn`` a Python function of the code under test (whose accesses are switch points)?"""
    code = getattr(fn, "__code__", None)
    return isinstance(code, types.CodeType) and classify(code.co_filename) == TRACED


def _name_of(fn: object) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


def _never() -> bool:
    return False


def _sleep(seconds: float) -> None:
    h: Any = _control.hook
    if not _controlled(h):
        _real_sleep(seconds)
    elif seconds <= 0:
        h.switch("sleep(0)", None)
    else:
        h.wait_until(_never, f"time.sleep({seconds:g})", None, seconds)


# Each clock of the time module reads, for a task of a controlled run, the value it had when
# the run began plus the run's virtual time; timeouts in Semaphore, Queue ... expire at once.
_bases: dict[Callable[[], float | int], float] = {}


def _virtual_clock(real: Callable[[], Any]) -> Callable[[], Any]:
    scale = 1_000_000_000 if real.__name__.endswith("_ns") else 0
    _bases[real] = 0.0

    def clock() -> Any:
        h: Any = _control.hook
        if _controlled(h):
            if scale:
                return int(_bases[real] + h.now() * scale)
            return _bases[real] + float(h.now())
        return real()

    clock.__name__ = clock.__qualname__ = real.__name__
    clock.__doc__ = real.__doc__
    return clock


_CLOCK_NAMES = (
    "monotonic",
    "monotonic_ns",
    "time",
    "time_ns",
    "perf_counter",
    "perf_counter_ns",
)
#: The time module's own functions, and the stand-ins a controlled run puts in their place.
VIRTUAL: dict[object, Callable[..., Any]] = {
    getattr(time, name): _virtual_clock(getattr(time, name)) for name in _CLOCK_NAMES
}
VIRTUAL[_real_sleep] = _sleep
_monotonic = VIRTUAL[_real_monotonic]

_saved: list[tuple[object, str, object]] = []
_found_aliases: tuple[int, list[tuple[types.ModuleType, str, object]]] = (-1, [])


def _aliases() -> list[tuple[object, str, object]]:
    """``from time import sleep, monotonic`` in any module: rebind those names for the run.

    The scan of every module's globals is redone only when modules were imported since.
    The stand-ins take the virtual path only for the run's tasks, so code outside the run
    (and these modules' own threads) keeps real time.
    """
    global _found_aliases
    count, found = _found_aliases
    if count != len(sys.modules):
        found = []
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if module is time or not isinstance(namespace, dict):
                continue
            if str(getattr(module, "__name__", "")).startswith(__name__.rpartition(".")[0]):
                continue  # taskkit.testing's own references to the real functions
            for name, value in list(namespace.items()):
                if type(value) is types.BuiltinFunctionType and value in VIRTUAL:
                    found.append((module, name, value))
        _found_aliases = (len(sys.modules), found)
    return [
        (module, name, VIRTUAL[real])
        for module, name, real in found
        if module.__dict__.get(name) is real
    ]


# -- randomness and event loops --------------------------------------------------------------

RANDOM_SEED = 0
_saved_random: list[Any] = []
_seeded: list[Any] = []
_seeds = [0]
_real_seed = random.Random.seed
_real_urandom = os.urandom
_real_run_forever = asyncio.BaseEventLoop.run_forever
_real_asyncio_run = asyncio.run


def _seed(self: random.Random, a: Any = None, version: int = 2) -> None:
    h: Any = _control.hook
    if a is None and _controlled(h):
        _seeds[0] += 1
        a = _seeds[0]
    _real_seed(self, a, version)


def _urandom(size: int) -> bytes:
    h: Any = _control.hook
    if _controlled(h):
        h.uncontrolled(
            "read os.urandom() (SystemRandom, secrets, uuid.uuid4()), which no execution repeats"
        )
    return _real_urandom(size)


def _asyncio_run(main: Any, *, debug: bool | None = None) -> Any:
    h: Any = _control.hook
    task = h.caller() if _controlled(h) else None
    if task is None or task.is_coro:
        return _real_asyncio_run(main, debug=debug)
    # a plain task runs a coroutine: it becomes an asyncio task of the run's own loop
    return h.coroutines.run_coroutine(main)


def _run_forever(self: asyncio.BaseEventLoop) -> None:
    h: Any = _control.hook
    if _controlled(h):
        h.uncontrolled(
            "ran an event loop of its own (loop.run_until_complete(), run_forever()), whose "
            "callbacks run in an order the search does not vary"
        )
    _real_run_forever(self)


# -- threads started by tasks: each becomes a task of the run (see ThreadTasks.spawn) ------

start_thread = threading.Thread.start
_real_join = threading.Thread.join
_real_thread_init = threading.Thread.__init__
_real_is_alive = threading.Thread.is_alive


def _spawned(h: Any, thread: threading.Thread) -> Any:
    """The task ``thread`` runs as, if a task of the run asks and the run started it."""
    if _controlled(h):
        return h.threads.spawned.get(thread)
    return None


def _init_thread(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
    _real_thread_init(self, *args, **kwargs)
    h: Any = _control.hook
    if _controlled(h):
        h.threads.thread_order += 1
        self.__dict__["_taskkit_order"] = h.threads.thread_order


def _start(self: threading.Thread) -> None:
    h: Any = _control.hook
    if _controlled(h):
        h.threads.spawn(self)
    else:
        start_thread(self)


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    h: Any = _control.hook
    task = _spawned(h, self)
    if task is not None:

        def ended() -> bool:
            return bool(task.state == 2)  # TaskState.DONE

        if not h.wait_until(ended, f"join() of {self.name}", self, timeout):
            return
    _real_join(self, timeout)


def _is_alive(self: threading.Thread) -> bool:
    h: Any = _control.hook
    task = _spawned(h, self)
    if task is not None:
        return bool(task.state != 2)  # TaskState.DONE: the thread may still be exiting
    return _real_is_alive(self)


# -- a run's patches, on and off --------------------------------------------------------------


def _static_patches() -> list[tuple[object, str, object]]:
    return [
        (threading.Condition, "wait", _condition_wait),
        (threading.Condition, "wait_for", _condition_wait_for),
        (threading.Condition, "__enter__", _condition_enter),
        (threading.Condition, "__exit__", _condition_exit),
        (threading.Condition, "notify", _condition_notify),
        (threading.Condition, "notify_all", _condition_notify_all),
        (time, "sleep", _sleep),
        *((time, name, VIRTUAL[getattr(time, name)]) for name in _CLOCK_NAMES),
        (random.Random, "seed", _seed),
        *([(*random_urandom, _urandom)] if random_urandom is not None else []),
        (os, "urandom", _urandom),
        (asyncio.BaseEventLoop, "run_forever", _run_forever),
        (asyncio, "run", _asyncio_run),
        (threading.Thread, "__init__", _init_thread),
        (threading.Thread, "start", _start),
        (threading.Thread, "join", _join),
        (threading.Thread, "is_alive", _is_alive),
        # the C SimpleQueue blocks for real; the Python one waits on a Semaphore
        (queue, "SimpleQueue", PySimpleQueue),
    ]


_STATIC = _static_patches()
_seeded_state: list[Any] = []  # random's state once seeded with RANDOM_SEED (made once)


def begin(run: Any) -> None:
    """Patch for the duration of a controlled run."""
    install_factories()
    for real in _bases:
        _bases[real] = real()
    for owner, name, value in _STATIC:
        _saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)
    for owner, name, value in _aliases():
        _saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)
    # Randomness, repeated: every execution starts from the same state of ``random``, and a
    # ``random.Random()`` made by a task gets the next of a fixed series of seeds.
    _saved_random.append(random.getstate())
    if not _seeded_state:
        random.seed(RANDOM_SEED)
        _seeded_state.append(random.getstate())
    else:
        random.setstate(_seeded_state[0])
    _seeds[:] = [0]
    _seeded[:] = _seeded_state


def end(run: Any) -> None:
    """Undo ``begin``; note in ``run`` whether its tasks drew random numbers."""
    while _saved:
        owner, name, value = _saved.pop()
        setattr(owner, name, value)
    if _seeds[0] or (_seeded and random.getstate() != _seeded[0]):
        run.notes[
            f"random was seeded with {RANDOM_SEED} at the start of every execution (and each "
            "random.Random() a task made with 1, 2, ...): the search covers that sequence of "
            "random values"
        ] = None
    _seeded.clear()
    while _saved_random:
        random.setstate(_saved_random.pop())
