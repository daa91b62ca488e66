"""``_shm``'s interface for any POSIX system: shared files, fcntl locks, polled words.

``_shm`` (futexes and robust pthread mutexes) needs Linux.  This module offers the
same names with what every POSIX system has, and ``_shm`` uses it where its own
calls are missing, or everywhere when ``TASKKIT_PORTABLE_PRIMITIVES=1`` is set in
the environment before taskkit is imported (processes that share primitives must
all use the same implementation: workers inherit the variable).

* ``Segment``: a regular file ``<directory>/<name>`` mapped into this process.
  The directory is ``/dev/shm`` where it exists (there a segment *is* the POSIX
  shared-memory object of that name, so ``multiprocessing``'s resource tracker
  can unlink it), else ``taskkit-<uid>`` in the temporary directory (``$TMPDIR``,
  which workers inherit).  ``unlink`` removes the name; mappings stay valid.
* Mutexes: 64 bytes in a segment, ``[state: u32][magic | recursive: u32]``, the
  state being the holder's thread id (masked to 30 bits, never 0) or 0 when free.
  Mutual exclusion between processes is an ``fcntl`` write lock on the mutex's
  first byte *of the segment's file*; between the threads of one process (``fcntl``
  locks belong to processes) a ``threading.Lock`` per mutex, taken first.  The
  kernel drops a process's ``fcntl`` locks when it dies, however it dies, while the
  state word still names the dead holder: whoever locks next and finds the word
  set knows the holder died and gets ``EOWNERDEAD``, as from a robust mutex.  A
  contended lock retries ``F_SETLK`` for ``_SPIN``; then a blocking one sleeps in
  ``F_SETLKW`` (woken by the kernel on release), a timed one polls ``F_SETLK``
  with backoff (``_POLL_FIRST`` doubling up to ``_POLL_MAX``).
  Unlike a robust mutex, a *thread* that ends while holding one, in a process that
  goes on, is not detected.
* Words: ``futex_wait`` polls the 32-bit word (``_POLL_FIRST`` doubling up to
  ``_POLL_MAX`` between reads) until it differs from ``seen``; ``futex_wake`` has
  nothing to do.  Wake-ups cannot be lost (a waiter compares values, it does not
  wait for a signal); a waiter notices a change at most ``_POLL_MAX`` late.

A process keeps every descriptor and mapping it opened of a file until no
``Segment`` of that file is left in it: closing *any* descriptor of a file drops
every ``fcntl`` lock the process holds on it, and each ``mmap`` holds a descriptor
of its own, closed when the mmap is deallocated.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
import tempfile
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MUTEX_SIZE",
    "Segment",
    "available",
    "futex_wait",
    "futex_wake",
    "mutex_consistent",
    "mutex_init",
    "mutex_lock",
    "mutex_trylock",
    "mutex_unlock",
    "trylock",
    "unlock",
    "unavailable_reason",
]

#: Bytes reserved for one mutex, in this module's layout and in ``_shm``'s (which takes
#: it from here): a ``pthread_mutex_t`` is 40 bytes on x86-64, 48 on arm64; one cache line.
MUTEX_SIZE = 64

#: A waiter's first pause between two looks at a word or a held lock, in seconds...
_POLL_FIRST = 50e-6
#: ...doubled after each look up to this: the longest a change goes unnoticed.
_POLL_MAX = 2e-3
#: How long a contended lock retries at once before it starts pausing.
_SPIN = 20e-6

_MAGIC = 0x746B0000  # "tk": this module initialised the mutex
_MAGIC_MASK = 0xFFFF0000
_RECURSIVE = 1
_TID_MASK = 0x3FFFFFFF


def _check() -> str:
    if os.name != "posix" or fcntl is None:
        return (
            f"process primitives need a POSIX system (shared memory and fcntl locks), "
            f"not {sys.platform}; share data between process tasks through their "
            f"arguments and results, or use a thread executor's primitives"
        )
    return ""


unavailable_reason = _check()


def available() -> bool:
    """True if process primitives can work on this platform."""
    return not unavailable_reason


# --------------------------------------------------------------------------- files

_directory: str | None = None


def _dir() -> str:
    """Where segments live (chosen once; every process of a program chooses the same)."""
    global _directory
    if _directory is None:
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
            _directory = "/dev/shm"
        else:
            path = os.path.join(tempfile.gettempdir(), f"taskkit-{os.getuid()}")
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            info = os.lstat(path)
            if info.st_uid != os.getuid() or info.st_mode & 0o077 or not os.path.isdir(path):
                raise PermissionError(
                    f"{path} must be a directory only its owner (uid {os.getuid()}) can use"
                )
            _directory = path
    return _directory


def _path(name: str) -> str:
    base = name.lstrip("/")
    if not base or "/" in base:
        raise ValueError(f"a shared-memory name is '/' and one path component, not {name!r}")
    return os.path.join(_dir(), base)


class _File:
    """One file as this process holds it: descriptors, mappings, mutexes, users."""

    __slots__ = ("fds", "maps", "mutexes", "users", "weak")

    def __init__(self) -> None:
        self.users = 0  # live Segments of the file
        self.fds: list[int] = []
        # The file's mappings.  While a Segment of the file lives, they are referenced
        # here, so that none is deallocated (which closes its descriptor) then; once
        # none lives, only weakly, and they go when nothing else refers to them.
        self.maps: list[mmap.mmap] = []
        self.weak: list[weakref.ref[mmap.mmap]] = []
        self.mutexes: dict[int, _Mutex] = {}


_files: dict[tuple[int, int], _File] = {}
_files_lock = threading.Lock()
_segments: weakref.WeakSet[Segment] = weakref.WeakSet()
_unused: set[tuple[int, int]] = set()  # files no Segment uses, whose mappings may live on


def _leave(key: tuple[int, int]) -> None:
    """A Segment of the file ``key`` is gone: once none is left, let go of the file."""
    with _files_lock:
        file = _files.get(key)
        if file is not None:
            file.users -= 1
            if file.users <= 0:
                for fd in file.fds:
                    os.close(fd)  # no lock can be held: no Segment, no pointer is left
                file.fds.clear()
                file.mutexes.clear()
                file.weak = [weakref.ref(buf) for buf in file.maps]
                file.maps.clear()  # a mapping nothing else refers to goes here, now
                _unused.add(key)
        for other in list(_unused):
            file = _files[other]
            if file.users > 0:
                _unused.discard(other)
            elif all(ref() is None for ref in file.weak):
                del _files[other]
                _unused.discard(other)


class Segment:
    """A named shared-memory object mapped into this process.

    ``Segment(name, size)`` creates it (failing if the name exists);
    ``Segment(name)`` opens an existing one.  The mapping lives as long as this
    object; ``unlink(name)`` removes the name.
    """

    __slots__ = ("__weakref__", "_file", "address", "buf", "name", "size")

    def __init__(self, name: str, size: int = 0) -> None:
        path = _path(name)
        flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
        if size:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)
            except OSError:
                os.close(fd)
                os.unlink(path)
                raise
        else:
            fd = os.open(path, flags)
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        with _files_lock:
            file = _files.get(key)
            if file is None:
                file = _files[key] = _File()
            if file.users <= 0:  # mappings of earlier Segments may still live: keep them
                file.maps = [buf for buf in (ref() for ref in file.weak) if buf is not None]
                file.weak = []
                _unused.discard(key)
            file.users += 1
            file.fds.append(fd)
        try:
            size = size or info.st_size
            self.buf = mmap.mmap(fd, size)
            with _files_lock:
                file.maps.append(self.buf)
        except BaseException:
            _leave(key)
            raise
        weakref.finalize(self, _leave, key)
        self._file = (fd, key, file)
        self.name, self.size = name, size
        view = ctypes.c_char.from_buffer(self.buf)
        self.address = ctypes.addressof(view)
        del view
        _segments.add(self)

    def pointer(self, offset: int) -> ctypes.c_void_p:
        """A C pointer to ``offset`` bytes into the mapping."""
        return _Pointer(self, offset)

    def _mutex(self, offset: int) -> _Mutex:
        """This process's side of the mutex at ``offset`` (one object per file and offset)."""
        fd, _, file = self._file
        mutex = file.mutexes.get(offset)
        if mutex is None:
            with _files_lock:
                mutex = file.mutexes.get(offset)
                if mutex is None:
                    mutex = file.mutexes[offset] = _Mutex(self, fd, offset)
        return mutex


class _Pointer(ctypes.c_void_p):
    """A pointer into a Segment that knows its segment (and, once used, its mutex)."""

    __slots__ = ("mutex", "offset", "segment")
    mutex: _Mutex
    offset: int
    segment: Segment

    def __init__(self, segment: Segment, offset: int) -> None:
        super().__init__(segment.address + offset)
        self.segment, self.offset = segment, offset


def unlink(name: str) -> bool:
    """Remove the shared-memory name; False if it was already gone."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------------- mutexes


class _Mutex:
    """This process's side of one shared mutex."""

    __slots__ = ("count", "fd", "lock", "offset", "owner", "recursive", "state")

    def __init__(self, segment: Segment, fd: int, offset: int) -> None:
        flags = ctypes.c_uint32.from_address(segment.address + offset + 4).value
        if flags & _MAGIC_MASK != _MAGIC:
            raise RuntimeError(
                f"the mutex at {offset} in {segment.name} was not set up by taskkit's portable "
                f"primitives: every process sharing primitives must use the same implementation "
                f"(set TASKKIT_PORTABLE_PRIMITIVES the same way, before importing taskkit)"
            )
        self.recursive = bool(flags & _RECURSIVE)
        self.state = ctypes.c_uint32.from_address(segment.address + offset)
        self.fd, self.offset = fd, offset
        self.lock = threading.Lock()  # between this process's threads
        self.owner: int | None = None  # the holding thread (threading.get_ident())
        self.count = 0


def _reset_after_fork() -> None:
    """A forked child holds no fcntl lock, and its threads but one are gone."""
    global _files_lock
    _files_lock = threading.Lock()
    for file in _files.values():
        for mutex in file.mutexes.values():
            mutex.lock = threading.Lock()
            mutex.owner, mutex.count = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _mutex_of(pointer: ctypes.c_void_p) -> _Mutex:
    try:
        return pointer.mutex  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        pass
    if isinstance(pointer, _Pointer):
        pointer.mutex = mutex = pointer.segment._mutex(pointer.offset)
        return mutex
    address = pointer.value or 0
    for segment in list(_segments):
        if segment.address <= address < segment.address + segment.size:
            return segment._mutex(address - segment.address)
    raise ValueError(f"no mapped segment holds address {address:#x}")


def mutex_init(address: int, recursive: bool = False) -> None:
    """Initialise a shared mutex at ``address`` (in a Segment's mapping)."""
    ctypes.memset(address, 0, MUTEX_SIZE)
    ctypes.c_uint32.from_address(address + 4).value = _MAGIC | (_RECURSIVE if recursive else 0)


_get_ident = threading.get_ident
_BUSY = (errno.EAGAIN, errno.EACCES)  # what F_SETLK fails with when another process holds it
if fcntl is not None:
    _lockf = fcntl.lockf
    _TRY, _WAIT, _UNLOCK = fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_EX, fcntl.LOCK_UN

_thread = threading.local()  # .tid: this thread's id as the state word holds it


def _tid() -> int:
    try:
        return _thread.tid  # type: ignore[no-any-return]
    except AttributeError:
        _thread.tid = tid = (threading.get_native_id() & _TID_MASK) or _TID_MASK
        return tid


def _forget_tid() -> None:
    global _thread
    _thread = threading.local()  # a forked child's thread has an id of its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_tid)


def _own(m: _Mutex, me: int) -> int:
    """We hold both locks now: note it, and say whether the last holder died holding it."""
    m.owner, m.count = me, 1
    state = m.state
    previous = state.value
    state.value = _tid()
    return errno.EOWNERDEAD if previous else 0


def _lock_again(m: _Mutex) -> bool:
    """The calling thread holds ``m``: lock it once more if it is recursive (True)."""
    if m.recursive:
        m.count += 1
        return True
    return False


def mutex_trylock(mutex: ctypes.c_void_p) -> int:
    """Try to lock: 0, ``EBUSY`` or ``EOWNERDEAD`` (locked; the last holder died)."""
    try:
        m: _Mutex = mutex.mutex  # type: ignore[attr-defined]
    except AttributeError:
        m = _mutex_of(mutex)
    me = _get_ident()
    if m.owner == me:
        return 0 if _lock_again(m) else errno.EBUSY
    if not m.lock.acquire(False):
        return errno.EBUSY
    try:
        _lockf(m.fd, _TRY, 1, m.offset)
    except BaseException as exc:
        m.lock.release()
        if isinstance(exc, OSError) and exc.errno in _BUSY:
            return errno.EBUSY
        raise
    return _own(m, me)


def _try_file_lock(m: _Mutex) -> bool:
    try:
        _lockf(m.fd, _TRY, 1, m.offset)
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def _wait_file_lock(m: _Mutex, deadline: float | None) -> bool:
    """Take the fcntl lock another process holds; False at ``deadline``."""
    # Retry at once for a little while: critical sections last microseconds, and
    # sleeping costs both sides a context switch.
    until = time.perf_counter() + _SPIN
    while time.perf_counter() < until:
        if _try_file_lock(m):
            return True
    if deadline is None:
        try:
            _lockf(m.fd, _WAIT, 1, m.offset)  # F_SETLKW: the kernel wakes us
            return True
        except OSError as exc:
            # The kernel's deadlock check works on processes, not threads: another
            # thread of ours may hold the lock the other process waits for.  Poll.
            if exc.errno != errno.EDEADLK:
                raise
    pause = _POLL_FIRST
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
        else:
            time.sleep(pause)
        if _try_file_lock(m):
            return True
        pause = min(2 * pause, _POLL_MAX)


def mutex_lock(mutex: ctypes.c_void_p, deadline: float | None) -> int:
    """Lock, waiting until ``deadline`` (monotonic); 0, ``EOWNERDEAD`` or ``ETIMEDOUT``.

    ``EDEADLK`` if the calling thread holds this (non-recursive) mutex and
    ``deadline`` is None: that wait could never end.
    """
    m = _mutex_of(mutex)
    me = _get_ident()
    if m.owner == me:
        if _lock_again(m):
            return 0
        if deadline is None:
            return errno.EDEADLK
    if deadline is None:
        m.lock.acquire()
    elif not m.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        return errno.ETIMEDOUT
    try:
        if _try_file_lock(m) or _wait_file_lock(m, deadline):
            return _own(m, me)
    except BaseException:
        m.lock.release()
        raise
    m.lock.release()
    return errno.ETIMEDOUT


def mutex_unlock(mutex: ctypes.c_void_p) -> int:
    """Unlock: 0, or ``EPERM`` if the calling thread does not hold it."""
    try:
        m: _Mutex = mutex.mutex  # type: ignore[attr-defined]
    except AttributeError:
        m = _mutex_of(mutex)
    if m.owner != _get_ident():
        return errno.EPERM
    if m.count > 1:
        m.count -= 1
        return 0
    m.owner, m.count = None, 0
    m.state.value = 0  # before the file lock goes: a death after this is no takeover
    try:
        _lockf(m.fd, _UNLOCK, 1, m.offset)
    finally:
        m.lock.release()
    return 0


def mutex_consistent(mutex: ctypes.c_void_p) -> None:
    """Mark a mutex taken over from a dead holder usable again (nothing to do here)."""


#: The hot paths' names (the same functions here).
trylock, unlock = mutex_trylock, mutex_unlock


# --------------------------------------------------------------------------- words


def futex_wait(word: ctypes.c_void_p, seen: int, timeout: float | None) -> None:
    """Wait while the 32-bit word still equals ``seen``, up to ``timeout`` seconds.

    Returns once the word differs (noticed at most ``_POLL_MAX`` late), on a
    timeout, or at once if it differs already; callers re-check their condition.
    """
    cell = ctypes.c_uint32.from_address(word.value or 0)
    seen &= 0xFFFFFFFF
    if cell.value != seen:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = _POLL_FIRST
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(pause, left))
        else:
            time.sleep(pause)
        if cell.value != seen:
            return
        pause = min(2 * pause, _POLL_MAX)


def futex_wake(word: ctypes.c_void_p, n: int = 0x7FFFFFFF) -> None:
    """Nothing to do: waiters see the word change (change it before calling this)."""
