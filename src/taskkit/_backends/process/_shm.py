"""The OS pieces under process primitives: named shared memory, robust mutexes, futexes.

* ``Segment``: a POSIX shared-memory object (``/dev/shm/<name>``) mapped into this
  process.  Any process opens it again by name; ``unlink`` removes the name while
  existing mappings stay valid until they are dropped.
* Robust mutexes: a ``pthread_mutex_t`` in shared memory with ``PTHREAD_PROCESS_SHARED``
  and ``PTHREAD_MUTEX_ROBUST``.  When the thread holding one dies (its process is
  killed, even by SIGKILL), the kernel marks the mutex and the next ``lock`` returns
  ``EOWNERDEAD``: that caller owns it and makes it consistent again.  This is how a
  process lock survives a dead holder without guessing from pids and timeouts.
* Futexes: ``futex_wait(word, seen)`` sleeps while a shared 32-bit word still equals
  ``seen``; ``futex_wake(word, n)`` wakes sleepers.  Waiting never takes anything, so a
  waiter that is killed loses nothing; the kernel checks the word and sleeps
  atomically, so a wake-up between a waiter's check and its sleep is never lost.

The calls go through ``ctypes``: quick ones (try-lock, unlock, wake) through
``PyDLL``, which keeps the GIL and skips the release/re-acquire; those that may
sleep through ``CDLL``, which releases it.  Linux only (futexes, robust mutexes).

Elsewhere on POSIX, or everywhere when ``TASKKIT_PORTABLE_PRIMITIVES=1`` is set in
the environment before taskkit is imported, this module's names are those of
``_shm_portable`` (same interface: files, ``fcntl`` locks, polled words); see the
end of this file.  ``implementation`` says which one is in use.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import sys
import time
from typing import Any

from ..._core._compat import shm_open, shm_unlink
from . import _shm_portable
from ._shm_portable import MUTEX_SIZE as MUTEX_SIZE

#: The interface, the same in ``_shm_portable`` (which also fixes ``MUTEX_SIZE``, the
#: bytes reserved for one mutex, so that both lay a segment out alike).
__all__ = _shm_portable.__all__

_SYS_FUTEX = {
    "x86_64": 202,
    "amd64": 202,
    "aarch64": 98,
    "arm64": 98,
    "riscv64": 98,
    "ppc64le": 221,
    "ppc64": 221,
    "s390x": 238,
}
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1  # shared (not PRIVATE): the word lives in shared memory
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1
_PTHREAD_MUTEX_RECURSIVE = 1
_CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load() -> tuple[Any, Any, int, str]:
    if not sys.platform.startswith("linux"):
        return None, None, 0, "process primitives need Linux (futexes and robust mutexes)"
    number = _SYS_FUTEX.get(platform.machine().lower(), 0)
    if not number:
        return None, None, 0, f"no futex system call number known for {platform.machine()}"
    try:
        blocking = ctypes.CDLL(None, use_errno=True)
        quick = ctypes.PyDLL(None, use_errno=True)
        blocking.pthread_mutex_clocklock  # glibc >= 2.30  # noqa: B018
    except (OSError, AttributeError) as exc:
        return None, None, 0, f"the C library lacks what process primitives need: {exc}"
    return blocking, quick, number, ""


_blocking, _quick, _sys_futex, unavailable_reason = _load()


def available() -> bool:
    """True if process primitives can work on this platform."""
    return not unavailable_reason


if available():
    _pv = ctypes.c_void_p
    _trylock = _quick.pthread_mutex_trylock
    _trylock.argtypes, _trylock.restype = [_pv], ctypes.c_int
    _unlock = _quick.pthread_mutex_unlock
    _unlock.argtypes, _unlock.restype = [_pv], ctypes.c_int
    _consistent = _quick.pthread_mutex_consistent
    _consistent.argtypes, _consistent.restype = [_pv], ctypes.c_int
    _clocklock = _blocking.pthread_mutex_clocklock
    _clocklock.argtypes = [_pv, ctypes.c_int, ctypes.POINTER(_Timespec)]
    _clocklock.restype = ctypes.c_int
    _futex_sleep = _blocking.syscall
    _futex_sleep.restype = ctypes.c_long
    _futex_poke = _quick.syscall
    _futex_poke.restype = ctypes.c_long
    #: The raw C calls, for hot paths that cannot afford a Python wrapper.
    trylock, unlock = _trylock, _unlock


def mutex_init(address: int, recursive: bool = False) -> None:
    """Initialise a robust, process-shared mutex at ``address`` (in shared memory)."""
    attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 or 8 bytes
    for call, args in (
        (_quick.pthread_mutexattr_init, ()),
        (_quick.pthread_mutexattr_setpshared, (_PTHREAD_PROCESS_SHARED,)),
        (_quick.pthread_mutexattr_setrobust, (_PTHREAD_MUTEX_ROBUST,)),
        *(((_quick.pthread_mutexattr_settype, (_PTHREAD_MUTEX_RECURSIVE,)),) if recursive else ()),
    ):
        result = call(attr, *args)
        if result:
            raise OSError(result, f"cannot set up a shared mutex: {os.strerror(result)}")
    result = _quick.pthread_mutex_init(ctypes.c_void_p(address), attr)
    _quick.pthread_mutexattr_destroy(attr)
    if result:
        raise OSError(result, f"cannot initialise a shared mutex: {os.strerror(result)}")


def mutex_trylock(mutex: ctypes.c_void_p) -> int:
    """Try to lock: 0, ``EBUSY``, ``EOWNERDEAD`` (locked; the last holder died) or ``EDEADLK``."""
    return int(_trylock(mutex))


#: The longest one blocking lock call sleeps, so that Ctrl-C is seen while waiting
#: (a futex-based mutex wait is restarted after a signal, not interrupted).
_LOCK_SLICE = 0.1
#: How long a contended lock spins on try-lock before it sleeps in the kernel.
_SPIN = 20e-6


def mutex_lock(mutex: ctypes.c_void_p, deadline: float | None) -> int:
    """Lock, waiting until ``deadline`` (monotonic); 0, ``EOWNERDEAD`` or ``ETIMEDOUT``."""
    result = _trylock(mutex)
    if result != errno.EBUSY:
        return int(result)
    # Spin a little first: taskkit's own critical sections last a microsecond or two,
    # and a sleep in the kernel costs both sides a system call and a context switch.
    until = time.perf_counter() + _SPIN
    while time.perf_counter() < until:
        result = _trylock(mutex)
        if result != errno.EBUSY:
            return int(result)
    spec = _Timespec()
    pointer = ctypes.byref(spec)
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return errno.ETIMEDOUT
        until = now + _LOCK_SLICE if deadline is None else min(deadline, now + _LOCK_SLICE)
        seconds = int(until)
        spec.tv_sec, spec.tv_nsec = seconds, int((until - seconds) * 1e9)
        result = _clocklock(mutex, _CLOCK_MONOTONIC, pointer)
        if result != errno.ETIMEDOUT:
            return int(result)


def mutex_unlock(mutex: ctypes.c_void_p) -> int:
    """Unlock: 0, or ``EPERM`` if the calling thread does not hold it."""
    return int(_unlock(mutex))


def mutex_consistent(mutex: ctypes.c_void_p) -> None:
    """Mark a mutex taken over from a dead holder usable again."""
    _consistent(mutex)


def futex_wait(word: ctypes.c_void_p, seen: int, timeout: float | None) -> None:
    """Sleep while the 32-bit word still equals ``seen``, up to ``timeout`` seconds.

    Returns on a wake-up, a timeout, a signal, or at once if the word changed;
    callers re-check their condition in every case.
    """
    if timeout is None:
        _futex_sleep(_sys_futex, word, _FUTEX_WAIT, ctypes.c_uint32(seen), None, None, 0)
        return
    seconds = int(timeout)
    spec = _Timespec(seconds, int((timeout - seconds) * 1e9))
    _futex_sleep(_sys_futex, word, _FUTEX_WAIT, ctypes.c_uint32(seen), ctypes.byref(spec), None, 0)


def futex_wake(word: ctypes.c_void_p, n: int = 0x7FFFFFFF) -> None:
    """Wake up to ``n`` sleepers on the word (all by default)."""
    _futex_poke(_sys_futex, word, _FUTEX_WAKE, ctypes.c_int(n), None, None, 0)


class Segment:
    """A named shared-memory object mapped into this process.

    ``Segment(name, size)`` creates it (failing if the name exists);
    ``Segment(name)`` opens an existing one.  The mapping lives as long as this
    object; ``unlink(name)`` removes the name.
    """

    __slots__ = ("address", "buf", "name", "size")

    def __init__(self, name: str, size: int = 0) -> None:
        if size:
            fd = shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        else:
            fd = shm_open(name, os.O_RDWR, mode=0o600)
        try:
            if size:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    shm_unlink(name)
                    raise
            else:
                size = os.fstat(fd).st_size
            self.buf = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.name, self.size = name, size
        # The mapping's address, for the C calls.  The ctypes view is dropped at once
        # so the mmap has no buffer export left (it is never closed explicitly: memory
        # a robust mutex or a sleeping futex still refers to must not be unmapped).
        view = ctypes.c_char.from_buffer(self.buf)
        self.address = ctypes.addressof(view)
        del view

    def pointer(self, offset: int) -> ctypes.c_void_p:
        """A C pointer to ``offset`` bytes into the mapping."""
        return ctypes.c_void_p(self.address + offset)


def unlink(name: str) -> bool:
    """Remove the shared-memory name; False if it was already gone."""
    try:
        shm_unlink(name)
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------ which implementation

#: ``TASKKIT_PORTABLE_PRIMITIVES=1`` (read once, at import) selects the portable
#: implementation even where this one works.  Workers inherit the environment, so
#: every process of a program agrees; processes sharing primitives must.
PORTABLE_FORCED = os.environ.get("TASKKIT_PORTABLE_PRIMITIVES", "").strip() not in ("", "0")
#: "futex" (this module's calls), "portable" (``_shm_portable``'s) or "none".
implementation = "futex"

if PORTABLE_FORCED or not available():
    if PORTABLE_FORCED or _shm_portable.available():
        globals().update({name: getattr(_shm_portable, name) for name in __all__})
        implementation = "portable"
    else:
        unavailable_reason = _shm_portable.unavailable_reason
        implementation = "none"
