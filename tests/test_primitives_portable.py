"""The portable shared-memory layer (``_shm_portable``): files, fcntl locks, polled words.

Its functions are tested directly here, whichever implementation ``_shm`` uses in
this run; the primitive suites run on it when ``TASKKIT_PORTABLE_PRIMITIVES=1`` is
set (a CI step does), and the first tests check that the variable really selects it.
Other processes are child interpreters that talk through their stdin and stdout, so
every wait is for a message, never for time to pass.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskkit._backends.process import _shm, _shm_portable

pytestmark = pytest.mark.skipif(
    not _shm_portable.available(), reason=_shm_portable.unavailable_reason
)

P = _shm_portable
SIZE = 4096


def child_env(portable: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TASKKIT_PORTABLE_PRIMITIVES", None)
    if portable is not None:
        env["TASKKIT_PORTABLE_PRIMITIVES"] = portable
    return env


def run(code: str, portable: str | None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(portable),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------ selecting the implementation


def test_this_run_uses_the_implementation_the_environment_asks_for() -> None:
    """Guards the CI step that runs the primitive suites with the variable set."""
    if os.environ.get("TASKKIT_PORTABLE_PRIMITIVES", "").strip() not in ("", "0"):
        assert _shm.implementation == "portable"
        assert _shm.mutex_lock is P.mutex_lock
        assert _shm.Segment is P.Segment
    else:
        assert (_shm.implementation == "portable") == (_shm.mutex_lock is P.mutex_lock)


SELECTED = """
    from taskkit._backends.process import _shm, _shm_portable
    from taskkit._backends.process._primitives import Lock
    from taskkit._primitives._common import shut_down
    lock = Lock()
    magic = int.from_bytes(lock._ctrl.buf[4:8], "little") >> 16
    print(_shm.implementation, _shm.Segment is _shm_portable.Segment, hex(magic))
    shut_down(lock, close=True)
"""


def test_the_variable_selects_the_portable_implementation() -> None:
    out = run(SELECTED, portable="1").split()
    assert out == ["portable", "True", hex(P._MAGIC >> 16)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="futexes are Linux's")
@pytest.mark.parametrize("value", [None, "", "0"])
def test_without_the_variable_linux_uses_futexes(value: str | None) -> None:
    out = run(SELECTED, portable=value).split()
    assert out[:2] == ["futex", "False"]


def test_without_futexes_the_portable_implementation_is_chosen() -> None:
    out = run(
        """
        import platform
        platform.machine = lambda: "a machine with no futex call known"
        from taskkit._backends.process import _shm
        print(_shm.implementation, _shm.available())
        """,
        portable=None,
    )
    assert out.split() == ["portable", "True"]


@pytest.mark.parametrize("forced", [True, False], ids=["forced", "chosen"])
def test_without_posix_creating_a_primitive_says_why(forced: bool) -> None:
    """What Windows gets (no futexes, no fcntl), simulated by hiding both."""
    out = run(
        """
        import platform, sys
        platform.machine = lambda: "a machine with no futex call known"
        sys.modules["fcntl"] = None  # importing it now fails
        import taskkit
        from taskkit._backends.process import _shm
        print(_shm.implementation, _shm.available())
        ex = taskkit.open_executor("process", max_workers=1)
        try:
            ex.queue()
        except taskkit.BackendUnavailable as exc:
            print(exc)
        ex.shutdown()
        """,
        portable="1" if forced else None,
    )
    first, message = out.splitlines()
    assert first == ("portable False" if forced else "none False")
    assert "need a POSIX system" in message
    assert "thread executor" in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="futexes are Linux's")
def test_a_portable_process_refuses_a_futex_primitive() -> None:
    attach = (
        "import sys\n"
        "from taskkit._backends.process._primitives import _attach\n"
        "try:\n"
        "    _attach('lock', sys.argv[1]).acquire(timeout=5)\n"
        "except RuntimeError as exc:\n"
        "    print('refused', 'TASKKIT_PORTABLE_PRIMITIVES' in str(exc))\n"
    )
    out = run(
        f"""
        import os, subprocess, sys
        from taskkit._backends.process import _shm
        from taskkit._backends.process._primitives import Lock
        from taskkit._primitives._common import shut_down
        assert _shm.implementation == "futex"
        lock = Lock()
        done = subprocess.run(
            [sys.executable, "-c", {attach!r}, lock.name],
            env={{**os.environ, "TASKKIT_PORTABLE_PRIMITIVES": "1"}},
            capture_output=True, text=True, timeout=60,
        )
        print(done.stdout.strip() or done.stderr)
        shut_down(lock, close=True)
        """,
        portable=None,
    )
    assert out.strip() == "refused True"


# ------------------------------------------------------------------------ segments


@pytest.fixture
def segment() -> Iterator[P.Segment]:
    name = f"/tktest{os.getpid()}-{os.urandom(4).hex()}"
    seg = P.Segment(name, SIZE)
    P.mutex_init(seg.address)
    P.mutex_init(seg.address + 64, recursive=True)
    try:
        yield seg
    finally:
        P.unlink(name)


def test_a_segment_is_shared_by_name_and_outlives_its_name(segment: P.Segment) -> None:
    with pytest.raises(FileExistsError):
        P.Segment(segment.name, SIZE)
    other = P.Segment(segment.name)
    assert other.size == SIZE
    segment.buf[200:205] = b"hello"
    assert other.buf[200:205] == b"hello"
    assert ctypes.string_at(segment.pointer(200).value or 0, 5) == b"hello"
    assert P.unlink(segment.name)
    assert not P.unlink(segment.name)
    with pytest.raises(FileNotFoundError):
        P.Segment(segment.name)
    other.buf[300] = 7  # both mappings stay valid
    assert segment.buf[300] == 7


def test_dropping_a_second_mapping_keeps_the_first_ones_locks(segment: P.Segment) -> None:
    """Closing any descriptor of a file drops the process's fcntl locks on it."""
    lock = segment.pointer(0)
    assert P.mutex_trylock(lock) == 0
    other = P.Segment(segment.name)
    del other
    code = CHILD + "print(P.mutex_trylock(seg.pointer(0)))\n"
    assert run_child(code, segment.name) == str(errno.EBUSY)
    assert P.mutex_unlock(lock) == 0


def test_a_mapping_outliving_its_segment_keeps_another_segments_locks() -> None:
    """A mapping still exported when its Segment goes must not close its descriptor
    later, while another Segment of the file holds a lock."""
    name = f"/tktest{os.getpid()}-{os.urandom(4).hex()}"
    first = P.Segment(name, SIZE)
    try:
        P.mutex_init(first.address)
        view = memoryview(first.buf)
        del first  # no Segment of the file is left; the view keeps its mapping alive
        second = P.Segment(name)
        lock = second.pointer(0)
        assert P.mutex_trylock(lock) == 0
        view.release()  # the old mapping can go now
        del view
        code = CHILD + "print(P.mutex_trylock(seg.pointer(0)))\n"
        assert run_child(code, name) == str(errno.EBUSY)
        assert P.mutex_unlock(lock) == 0
    finally:
        P.unlink(name)


def test_segments_that_are_gone_leave_no_descriptor_behind() -> None:
    def key(name: str) -> tuple[int, int]:
        info = os.stat(P._path(name))
        return info.st_dev, info.st_ino

    def held() -> set[tuple[int, int]]:
        return {key(name) for name in names} & set(P._files)

    def descriptors() -> int:
        """Descriptors this process has open on the test's files."""
        ours, count = {key(name) for name in names}, 0
        for fd in os.listdir("/dev/fd"):
            try:
                info = os.fstat(int(fd))
            except OSError:
                continue  # the listing's own, or closed meanwhile by another thread
            count += (info.st_dev, info.st_ino) in ours
        return count

    names = [f"/tktest{os.getpid()}-{i}-{os.urandom(4).hex()}" for i in range(20)]
    try:
        segments = [P.Segment(name, SIZE) for name in names]
        again = [P.Segment(name) for name in names]
        view = memoryview(again[0].buf)  # outlives its Segment
        assert descriptors() == 80  # each Segment's and each mapping's
        assert len(held()) == 20
        del segments, again
        assert held() == {key(names[0])}  # the file whose mapping the view holds
        assert descriptors() == 1  # that mapping's own
        view.release()
        del view
        P.Segment(names[1])  # any Segment that goes lets go of unused files...
        assert descriptors() == 0
        # ...but its own, which it still referred to then, until the next one goes.
        assert held() == {key(names[1])}
        P.Segment(names[2])
        assert held() == {key(names[2])}
    finally:
        for name in names:
            P.unlink(name)


def test_a_mapping_stays_valid_while_referenced(segment: P.Segment) -> None:
    other = P.Segment(segment.name)
    buf = other.buf
    del other
    buf[500:503] = b"abc"  # as with a POSIX shared-memory mapping
    assert segment.buf[500:503] == b"abc"


# ------------------------------------------------------------------- mutex, one process


def in_thread(fn: object) -> object:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn()))  # type: ignore[operator]
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return result[0]


def test_mutex_between_threads(segment: P.Segment) -> None:
    lock = segment.pointer(0)
    assert P.mutex_trylock(lock) == 0
    assert ctypes.c_uint32.from_address(segment.address).value != 0  # the state word
    assert P.mutex_trylock(lock) == errno.EBUSY  # not recursive
    assert P.mutex_lock(lock, None) == errno.EDEADLK  # would wait for ever
    assert P.mutex_lock(lock, time.monotonic() + 0.01) == errno.ETIMEDOUT
    assert in_thread(lambda: P.mutex_trylock(lock)) == errno.EBUSY
    assert in_thread(lambda: P.mutex_lock(lock, time.monotonic() + 0.01)) == errno.ETIMEDOUT
    assert in_thread(lambda: P.mutex_unlock(lock)) == errno.EPERM
    assert P.mutex_unlock(lock) == 0
    assert ctypes.c_uint32.from_address(segment.address).value == 0
    assert P.mutex_unlock(lock) == errno.EPERM
    assert in_thread(lambda: (P.mutex_lock(lock, None), P.mutex_unlock(lock))) == (0, 0)


def test_a_recursive_mutex_counts(segment: P.Segment) -> None:
    lock = segment.pointer(64)
    assert [P.mutex_trylock(lock), P.mutex_lock(lock, None), P.mutex_trylock(lock)] == [0, 0, 0]
    assert in_thread(lambda: P.mutex_trylock(lock)) == errno.EBUSY
    assert [P.mutex_unlock(lock) for _ in range(3)] == [0, 0, 0]
    assert P.mutex_unlock(lock) == errno.EPERM
    assert in_thread(lambda: P.mutex_trylock(lock)) == 0  # and that thread ended holding it


def test_a_waiting_thread_gets_the_mutex_on_release(segment: P.Segment) -> None:
    lock = segment.pointer(0)
    assert P.mutex_lock(lock, None) == 0
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(P.mutex_lock(lock, None)))
    waiter.start()
    assert P.mutex_unlock(lock) == 0
    waiter.join(60)
    assert got == [0]


def test_a_plain_pointer_works_too(segment: P.Segment) -> None:
    plain = ctypes.c_void_p(segment.address)
    assert P.mutex_trylock(plain) == 0
    assert P.mutex_trylock(segment.pointer(0)) == errno.EBUSY  # the same mutex
    assert P.mutex_unlock(plain) == 0
    with pytest.raises(ValueError, match="no mapped segment"):
        P.mutex_trylock(ctypes.c_void_p(16))


def test_a_mutex_another_implementation_set_up_is_refused(segment: P.Segment) -> None:
    ctypes.memset(segment.address + 128, 0, 64)  # as a pthread mutex starts
    with pytest.raises(RuntimeError, match="TASKKIT_PORTABLE_PRIMITIVES"):
        P.mutex_trylock(segment.pointer(128))


# ---------------------------------------------------------------- mutex, two processes

CHILD = """
import os, signal, sys, time
from taskkit._backends.process import _shm_portable as P
seg = P.Segment(sys.argv[1])
lock = seg.pointer(0)
"""


def run_child(code: str, name: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(None),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Child:
    """A child interpreter running ``CHILD + code``; ``say``/``hear`` exchange lines."""

    def __init__(self, code: str, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD + textwrap.dedent(code), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(None),
        )

    def hear(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end(self) -> int:
        self.process.communicate(timeout=60)  # closes the pipes
        return self.process.returncode


HOLD = """
print(P.mutex_lock(lock, None), flush=True)
if sys.stdin.readline().strip() == "die":
    os.kill(os.getpid(), signal.SIGKILL)
print(P.mutex_unlock(lock), flush=True)
"""


def test_a_mutex_excludes_another_process(segment: P.Segment) -> None:
    lock = segment.pointer(0)
    child = Child(HOLD, segment.name)
    assert child.hear() == "0"
    assert P.mutex_trylock(lock) == errno.EBUSY
    assert P.mutex_lock(lock, time.monotonic() + 0.05) == errno.ETIMEDOUT
    # A timed-out wait let go of the process's own side: a thread can try again.
    assert in_thread(lambda: P.mutex_trylock(lock)) == errno.EBUSY
    child.say("release")
    assert child.hear() == "0"
    assert child.end() == 0
    assert P.mutex_trylock(lock) == 0  # released: no takeover
    assert P.mutex_unlock(lock) == 0


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "timed"])
def test_a_dead_holders_mutex_is_taken_over(segment: P.Segment, blocking: bool) -> None:
    lock = segment.pointer(0)
    child = Child(HOLD, segment.name)
    assert child.hear() == "0"
    got: list[int] = []
    deadline = None if blocking else time.monotonic() + 60
    waiter = threading.Thread(target=lambda: got.append(P.mutex_lock(lock, deadline)))
    waiter.start()
    child.say("die")
    assert child.end() == -9
    waiter.join(60)
    assert got == [errno.EOWNERDEAD]
    assert in_thread(lambda: P.mutex_trylock(lock)) == errno.EBUSY  # the waiter holds it


def test_ctrl_c_while_waiting_for_another_process_leaves_the_mutex_usable(
    segment: P.Segment,
) -> None:
    holder = Child(HOLD, segment.name)
    assert holder.hear() == "0"
    waiter = Child(
        """
        try:
            print("waiting", flush=True)
            P.mutex_lock(lock, None)
            print("locked?", flush=True)
        except KeyboardInterrupt:  # this process's side of the mutex is free again
            print("interrupted", P._mutex_of(lock).lock.locked(), flush=True)
        print(P.mutex_lock(lock, None), flush=True)
        """,
        segment.name,
    )
    assert waiter.hear() == "waiting"
    waiter.process.send_signal(signal.SIGINT)
    assert waiter.hear() == "interrupted False"
    holder.say("release")
    assert holder.hear() == "0"
    assert holder.end() == 0
    assert waiter.hear() == "0"
    assert waiter.end() == 0


def test_trylock_reports_a_dead_holder(segment: P.Segment) -> None:
    lock = segment.pointer(0)
    child = Child(HOLD, segment.name)
    assert child.hear() == "0"
    child.say("die")
    assert child.end() == -9
    assert P.mutex_trylock(lock) == errno.EOWNERDEAD
    P.mutex_consistent(lock)
    assert P.mutex_unlock(lock) == 0
    assert P.mutex_trylock(lock) == 0
    assert P.mutex_unlock(lock) == 0


COUNT = """
counter = seg.buf
for _ in range(int(sys.argv[2])):
    assert P.mutex_lock(lock, None) == 0
    n = int.from_bytes(counter[1000:1008], "little")
    counter[1000:1008] = (n + 1).to_bytes(8, "little")
    assert P.mutex_unlock(lock) == 0
"""


def test_no_increment_is_lost_between_processes(segment: P.Segment) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD + COUNT, segment.name, "3000"], env=child_env(None)
        )
        for _ in range(2)
    ]
    lock = segment.pointer(0)
    for _ in range(3000):
        assert P.mutex_lock(lock, None) == 0
        n = int.from_bytes(segment.buf[1000:1008], "little")
        segment.buf[1000:1008] = (n + 1).to_bytes(8, "little")
        assert P.mutex_unlock(lock) == 0
    assert [child.wait(120) for child in children] == [0, 0]
    assert int.from_bytes(segment.buf[1000:1008], "little") == 9000


FORK = """
import threading
held, forked = threading.Event(), threading.Event()
def hold():
    P.mutex_lock(lock, None)
    held.set()
    forked.wait()
    P.mutex_unlock(lock)
holder = threading.Thread(target=hold)
holder.start()
held.wait()
tried_r, tried_w = os.pipe()
pid = os.fork()
if pid == 0:
    # The holding thread is not in the child, and the child's process holds no lock.
    first = P.mutex_trylock(lock)
    os.write(tried_w, b"x")
    second = P.mutex_lock(lock, None)
    os._exit(10 * first + second)
os.read(tried_r, 1)
forked.set()
holder.join()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_a_forked_child_waits_for_its_parents_hold() -> None:
    name = f"/tktest{os.getpid()}-{os.urandom(4).hex()}"
    seg = P.Segment(name, SIZE)
    P.mutex_init(seg.address)
    try:
        out = run_child(CHILD + FORK, name).split("\n")
    finally:
        P.unlink(name)
    assert out == [str(10 * errno.EBUSY)]


# --------------------------------------------------------------------------- words


def test_futex_wait_returns_at_once_or_on_a_change_or_at_the_timeout(segment: P.Segment) -> None:
    word = segment.pointer(256)
    cell = ctypes.c_uint32.from_address(segment.address + 256)
    cell.value = 5
    P.futex_wait(word, 4, None)  # differs already: no wait
    P.futex_wait(word, 5, 0)
    P.futex_wait(word, 5, 0.01)  # times out
    changer = threading.Thread(target=lambda: setattr(cell, "value", 6))
    changer.start()
    P.futex_wait(word, 5, None)  # the change is seen whenever it happened
    changer.join(60)
    assert cell.value == 6
    cell.value = 0xFFFFFFFF
    P.futex_wait(word, -1, 0)  # a u32 word, compared as one
    P.futex_wake(word)


def test_futex_wait_sees_another_processes_change(segment: P.Segment) -> None:
    child = Child(
        """
        cell = seg.buf
        print("ready", flush=True)
        P.futex_wait(seg.pointer(256), 0, None)
        print(int.from_bytes(cell[256:260], "little"), flush=True)
        """,
        segment.name,
    )
    assert child.hear() == "ready"
    segment.buf[256:260] = (3).to_bytes(4, "little")
    P.futex_wake(segment.pointer(256))
    assert child.hear() == "3"
    assert child.end() == 0


# ------------------------------------------------------- primitives on the portable layer

TAKEOVER = """
import os, signal, taskkit

def hold_and_die(lock, held):
    lock.acquire()
    held.set()
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    from taskkit._backends.process import _shm
    assert _shm.implementation == "portable"
    with taskkit.open_executor("process", max_workers=1) as ex:
        lock, held, q = ex.lock(), ex.event(), ex.queue()
        future = ex.submit(hold_and_die, lock, held)
        assert held.wait(30)
        try:
            future.result(timeout=30)
        except taskkit.WorkerCrashed:
            pass
        assert lock.acquire(timeout=30)
        print("taken over", lock.previous_holder_died, lock.statistics().takeovers)
        lock.release()
        ex.submit(q.put, "from a worker").result(timeout=30)
        print(q.get(timeout=30))
"""


def test_a_process_lock_survives_a_killed_worker_on_the_portable_layer(
    tmp_path: Path,
) -> None:
    script = os.path.join(str(tmp_path), "takeover.py")
    with open(script, "w") as f:
        f.write(TAKEOVER)
    done = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=120, env=child_env("1")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["taken over True 1", "from a worker"]
