"""The ``process`` backend: a pool of worker processes, for pure-Python computation.

Data flow (one socket per worker; one task per worker at a time)::

    submit(fn, *args) ─ pickle once (fails here with SerializationError) ─► _Task
        │ an idle worker?  yes: send T(fn, args, kwargs) on its socket, in the caller's thread
        │                  no:  queue it; the manager thread starts a worker (up to max_workers)
        ▼
    manager thread: one epoll over every worker's socket and process sentinel
        socket readable ─► A message: the worker is set up; its task's deadline starts now
                        ─► R/C/E message ─► give the worker its next queued task, then settle
                                            the future (result, or exception + remote traceback)
                        ─► bytes that are no message (_wire.ProtocolError), or half a message
                           for _STALL_SECONDS ─► kill that worker (_break); like a crash,
                           but its task's WorkerCrashed says it broke the protocol
        sentinel ready  ─► the worker died: if it held a task, that future fails with
                           WorkerCrashed(pid, exit status) (or is retried); start a replacement
    a caller blocked in result() reads its worker's reply itself (no thread hand-off)
    deadline thread: a task overran ─► SIGKILL the worker's process group ─► TaskTimeout
    future.cancel() of a running task ─► the same kill, the future is cancelled

The parts, as in CPython's ``concurrent/futures/process.py``: ``_ProcessBackend`` is
the backend (it pickles each call, then hands the task to its manager) and
``ProcessExecutor`` its public face; ``_Manager`` owns the workers, their sockets and
the manager thread, and copies once what it needs of the backend.  ``_Manager`` is
written in three layers: ``_Pool`` (what callers use: give a task to an idle worker
or queue it, start, stop and kill workers), ``_CallerReads`` (the
``process_caller_reads`` fast path: a caller reads its own reply; see
``taskkit._core._fastpaths``) and ``_Manager`` itself (the manager thread's loop: read
replies, settle futures, notice exits).

Why this shape: because each worker holds at most one task and has its own
socket, the parent always knows which task a dead worker took with it, so a
crash fails exactly that future and nothing else (a shared result queue, as in
``concurrent.futures``, cannot tell, which is why one crash breaks that pool).
Nothing a worker writes is trusted: a message is checked as it arrives and
read without blocking, so one garbled or silent worker fails only its own
task, and whatever unpickling a result raises settles that future.
Workers run in their own process groups, so a kill takes the task's child
processes too, and a Ctrl-C at the terminal reaches only the parent, which
then kills the workers itself.  Workers die with the parent: each watches its
socket for hang-up and kills its own process group.
"""

from __future__ import annotations

import collections
import functools
import itertools
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast, final

from ..._core import _serialize
from ..._core._backend import Backend, check_max_workers
from ..._core._calls import run_chunk
from ..._core._compat import add_forkserver_preload, register_atexit
from ..._core._compat import get_running_loop_or_none as asyncio_running_loop
from ..._core._errors import (
    InitializerFailed,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    WorkerCrashed,
)
from ..._core._executor import Executor
from ..._core._fastpaths import PROCESS_CALLER_READS
from ..._core._future import Future, current_await_hook, set_help
from ..._core._future import settled as _done
from ..._core._ledger import Task as _Task
from ..._core._ledger import attempt_of, call_of, handle_of, set_handle, set_width
from ..._core._map import MapRun, MapSpec
from . import _wire
from ._worker import run_column, worker_main

__all__ = ["ProcessExecutor"]

# Numbers the executors, so that worker titles tell pools apart.
_pool_numbers = itertools.count(1)

START_METHODS = ("fork", "forkserver", "spawn")

# epoll may be changed from another thread while the manager waits on it, which
# lets a caller borrow a worker's socket (see _CallerReads._help); poll may not.
_HAS_EPOLL = hasattr(select, "epoll")
# A caller blocked in result() reads its worker's reply itself: a fast path (_fastpaths).
_CALLER_READS = _HAS_EPOLL and PROCESS_CALLER_READS
_FOREVER = -1
_POLL_SLICE_MS = 200
_EDGE_IN = select.EPOLLIN | select.EPOLLET if _HAS_EPOLL else select.POLLIN
_EDGE_MUTED = select.EPOLLET if _HAS_EPOLL else 0  # hang-up only, reported once
_HELPING = -1
_CLAIM_GRACE = 0.001  # seconds a claimed reply waits for its caller
_HANDLED, _EMPTY, _EOF = 1, 0, -1
# A worker that leaves a message half-sent this long broke the protocol: an honest
# one writes each reply in one go, and the parent reads as fast as it arrives.
_STALL_SECONDS = 10.0


class _Claims(threading.local):
    # (executor, worker, weak reference to the task) while this thread holds a
    # claim; a class default so that reading it never raises inside getattr.  The
    # task is held weakly: a claim the manager took over stays here until this
    # thread dispatches again, and must not keep the call's function alive.
    claim: tuple[_CallerReads, _Worker, weakref.ref[_Task]] | None = None


_claims = _Claims()


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _may_wait_here() -> bool:
    """False on a thread that runs an event loop: it awaits futures, never blocks on them."""
    return asyncio_running_loop() is None and current_await_hook() is None


def default_start_method() -> str:
    """``forkserver`` where it exists (POSIX), else ``spawn``.

    ``fork`` is fastest to start but copies the parent at an arbitrary moment:
    a lock held by another thread of the parent stays locked forever in the
    child (the reason Python 3.14 moved its own default to forkserver).
    forkserver forks each worker from a small, single-threaded server process
    instead; taskkit preloads its worker code there, so a worker starts in a
    few milliseconds once the server is up.
    """
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class _Worker:
    """The parent's record of one worker process."""

    __slots__ = (
        "broken",
        "claimer",
        "conn",
        "done",
        "fd",
        "killed",
        "pid",
        "poller",
        "process",
        "reader",
        "reading",
        "ready",
        "retiring",
        "sentinel",
        "task",
    )

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.pid: int = process.pid
        self.conn = conn
        self.fd: int = conn.fileno()
        os.set_blocking(self.fd, False)
        self.sentinel: int = process.sentinel
        self.reader = _wire.Reader(self.fd, _wire.TO_PARENT)
        # Held by whichever thread reads this worker's socket: the manager, or a
        # caller waiting in result() for this worker's task (see _help).
        self.reading = threading.Lock()
        # Who holds ``reading``: None (free, or the manager), the id of a
        # thread that sent this worker a task and may soon wait for it (a
        # claim), or _HELPING (a thread is reading now).
        self.claimer: int | None = None
        self.poller: Any = None
        self.task: _Task | None = None
        self.done = 0  # tasks sent to it
        self.killed = False  # we killed it: its task was already settled
        self.retiring = False  # reached max_tasks_per_child: it exits after its task
        self.ready = False  # it said it is set up: a task's deadline may run
        self.broken: str | None = None  # why the parent stopped trusting it (it is killed)

    def kill(self) -> None:
        """SIGKILL the worker and every process in its process group."""
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass  # not yet a group leader, or already gone
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


_live_backends: weakref.WeakSet[_ProcessBackend] = weakref.WeakSet()


def _at_exit() -> None:
    # Runs before the interpreter joins threads, and before multiprocessing's own
    # exit hook joins every child.  After an uncaught Ctrl-C, kill at once (one
    # Ctrl-C is enough); otherwise let submitted work finish, as
    # concurrent.futures does.  An executor already shut down without waiting
    # stays in _live_backends until its manager thread has let every worker go:
    # waiting for it here is what lets such a program exit (issue 19), and keeps
    # the manager from reaping workers while multiprocessing's hook does too.
    interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
    for backend in list(_live_backends):
        if backend.owner != os.getpid():
            continue  # a forked copy: its workers belong to the original process
        if interrupted:
            backend.executor.shutdown(wait=True, cancel_pending=True, kill=True)
        else:
            backend.executor.shutdown(wait=True)


register_atexit(_at_exit)


class _Pool:
    """The manager's side that callers use: hand tasks to workers, start and stop them.

    ``_Manager`` is this, ``_CallerReads`` and the manager thread's own loop, apart
    from ``_ProcessBackend`` (as CPython's ``_ExecutorManagerThread`` is apart from its
    executor); every method here runs with ``self`` a ``_Manager``.
    """

    def __init__(self, backend: _ProcessBackend) -> None:
        # What the manager needs of its backend, copied once, as CPython's
        # _ExecutorManagerThread copies what it needs of its executor.
        self._backend = backend  # listed in _live_backends while the thread runs
        self._ledger = backend.ledger  # begin, succeeded, failed...
        self._payload_for = backend.payload_for  # the pickled call to send
        self._log = backend.log  # the backend's logger
        self._max_workers = backend.max_workers  # the most workers at once
        self._max_tasks = backend.max_tasks  # tasks per worker before it is replaced
        self._setup = backend.setup  # the pickled initializer for each new worker
        self._start_method = backend.start_method  # how a worker process is started
        self._context = backend.context  # the multiprocessing context of that method
        self._lock = threading.Lock()
        self._workers: dict[int, _Worker] = {}  # by pid
        self._idle: list[_Worker] = []
        self._pending: collections.deque[_Task] = collections.deque()
        self._running: dict[_Task, _Worker] = {}
        self._starting = 0  # workers asked of the manager thread, not yet started
        self._spawned = 0  # workers started so far: a worker's number in its title
        self._number = next(_pool_numbers)  # tells this executor's workers from others'
        self._stopping = False
        self._killing = False
        self._broken: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._poller: Any = select.epoll() if _HAS_EPOLL else select.poll()
        self._by_fd: dict[int, tuple[_Worker, bool]] = {}
        self._stale: dict[_Worker, float] = {}  # claimed replies the manager waits to take
        self._recheck: list[_Worker] = []  # sockets let go of with a reply unread
        self._unfinished: set[_Worker] = set()  # a message half-read (see _stall_timeout)

    def dispatch(self, task: _Task) -> None:
        self._payload_for(task)
        wake = False
        with self._lock:
            if self._broken is not None:
                error = self._broken
            elif self._killing:
                error = None
                task.cancel()
                return
            else:
                error = None
                worker = self._idle.pop() if self._idle else None
                if worker is None:
                    self._pending.append(task)
                    live = len(self._workers) + self._starting
                    if live < self._max_workers and len(self._pending) > self._starting:
                        self._starting += 1
                        wake = True
                elif not self._assign(worker, task):
                    self._idle.append(worker)
                    return
        if error is not None:
            self._ledger.failed(task, _initializer_failed(error))
            return
        if wake:
            self._wake()
        elif worker is not None:
            # An idle worker means the manager thread runs: claim unless this is it.
            manager = self._thread
            if (
                _CALLER_READS
                and manager is not None
                and threading.get_ident() != manager.ident
                and _may_wait_here()
            ):
                self._claim(worker, task)
            self._send_task(worker, task)

    def _assign(self, worker: _Worker, task: _Task) -> bool:
        """Give ``task`` to ``worker`` (under the lock); False if it was cancelled meanwhile."""
        self._ledger.stoppable(task)
        set_width(task, 1)  # running again (a retry): see _on_readable
        # A worker still starting (or running its initializer) gives the task no
        # deadline yet: it is armed when the worker says it is ready (see _on_ready).
        if not self._ledger.begin(task, worker.pid, timed=worker.ready):
            return False
        worker.task = task
        worker.done += 1
        if self._max_tasks and worker.done >= self._max_tasks:
            worker.retiring = True
        self._running[task] = worker
        return True

    def _send_task(self, worker: _Worker, task: _Task) -> None:
        try:
            _wire.send(worker.fd, _wire.TASK, self._payload_for(task))
        except OSError:
            pass  # the worker died; its sentinel reports the crash

    def _manage(self) -> None:
        raise NotImplementedError  # the manager thread's loop: _Manager._manage

    def _claim(self, worker: _Worker, task: _Task) -> None:
        raise NotImplementedError  # the caller-reads fast path: _CallerReads._claim

    def _wake(self) -> None:
        with self._lock:
            if self._thread is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_w, False)
                self._thread = threading.Thread(
                    target=self._manage, name="taskkit-process-manager", daemon=True
                )
                _live_backends.add(self._backend)  # until the manager ends (see _at_exit)
                self._thread.start()
                return
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake, or shut down

    def _next_task(self, worker: _Worker) -> _Task | None:
        """Under the lock: give ``worker`` the next queued task, or make it idle."""
        if self._stopping and self._killing:
            return None
        while self._pending:
            task = self._pending.popleft()
            if self._assign(worker, task):
                return task
        self._idle.append(worker)
        return None

    def _start_workers(self) -> None:
        while True:
            with self._lock:
                if self._starting <= 0:
                    return
                if self._killing or self._broken is not None:
                    self._starting = 0
                    return
            try:
                worker = self._spawn()
            except BaseException as exc:
                with self._lock:
                    self._starting = 0
                    self._broken = exc
                self._fail_pending(exc)
                return
            self._watch(worker.fd, worker, False)
            self._watch(worker.sentinel, worker, True)
            with self._lock:
                self._starting -= 1
                self._workers[worker.pid] = worker
                task = self._next_task(worker)
            if task is not None:
                self._send_task(worker, task)

    def _spawn(self) -> _Worker:
        if self._start_method == "forkserver":
            _preload_worker_in_forkserver()
        parent_end, child_end = self._context.Pipe(duplex=True)
        inherited: tuple[int, ...] = ()
        if self._start_method == "fork":
            # A forked child inherits every descriptor; it closes these at once.
            inherited = (
                parent_end.fileno(),
                self._wake_r,
                self._wake_w,
                *(w.fd for w in self._workers.values()),
            )
        self._spawned += 1
        title = (
            f"taskkit worker {self._spawned} of process executor {self._number} "
            f"(parent {os.getpid()})"
        )
        process = self._context.Process(
            target=worker_main,
            args=(child_end, inherited, title, f"taskkit-w{self._spawned}"),
            name=f"taskkit-process-{self._number}_{self._spawned}",
            daemon=False,
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        self._log.debug("worker %d started (%s)", process.pid, self._start_method)
        try:
            _wire.send(worker.fd, _wire.SETUP, self._setup)
        except OSError:
            pass  # it died already; the sentinel says how
        return worker

    def _watch(self, fd: int, worker: _Worker, is_sentinel: bool) -> None:
        self._by_fd[fd] = (worker, is_sentinel)
        # Sockets are edge-triggered under epoll: the manager is told once per
        # reply, so a reply a helping caller reads does not wake it again.
        events = select.POLLIN if is_sentinel or not _HAS_EPOLL else _EDGE_IN
        self._poller.register(fd, events)

    def _unwatch(self, fd: int) -> None:
        if self._by_fd.pop(fd, None) is not None:
            try:
                self._poller.unregister(fd)
            except (KeyError, OSError):
                pass

    def stop_running(self, task: _Task) -> bool:
        with self._lock:
            worker = self._running.pop(task, None)
            if worker is None:
                try:
                    self._pending.remove(task)  # queued again for a retry
                except ValueError:
                    return False
                return True
            worker.task = None
            worker.killed = True
        worker.kill()
        return True

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        with self._lock:
            self._stopping = True
            if kill:
                self._killing = True
                for task in self._pending:
                    task.cancel()
            thread = self._thread
        if thread is None:
            _live_backends.discard(self._backend)
            return
        self._wake()
        if wait and thread is not threading.current_thread():
            thread.join()

    def _purge_pending(self) -> None:
        if any(task.done() for task in self._pending):
            self._pending = collections.deque(t for t in self._pending if not t.done())

    def _finish_stopping(self) -> bool:
        """While stopping: let idle workers go once no work is left; True when all are gone."""
        with self._lock:
            self._purge_pending()
            if self._killing:
                victims = [w for w in self._workers.values() if not w.killed]
                self._idle.clear()
            else:
                victims = []
                if self._pending or self._running or self._starting:
                    return False
            idle, self._idle = self._idle, []
            gone = not self._workers
        for worker in victims:
            worker.kill()
        for worker in idle:
            try:
                _wire.send(worker.fd, _wire.QUIT, (b"", []))
            except OSError:
                pass
            worker.retiring = True
        return gone

    def _fail_pending(self, exc: BaseException | None) -> None:
        with self._lock:
            pending, self._pending = self._pending, collections.deque()
        error = _initializer_failed(exc)
        for task in pending:
            self._ledger.fail_now(task, error)

    def _fail_everything(self, exc: BaseException) -> None:  # pragma: no cover - see _manage
        with self._lock:
            self._broken = exc
            tasks = list(self._pending) + list(self._running)
            workers = list(self._workers.values())
        for worker in workers:
            worker.kill()
        for task in tasks:
            self._ledger.fail_now(task, exc)


class _CallerReads(_Pool):
    """The ``process_caller_reads`` fast path (see ``_fastpaths``): a caller blocked in
    ``result()`` reads its worker's reply itself; its plain twin is the manager's read."""

    def _drain(self, worker: _Worker) -> None:
        raise NotImplementedError  # the manager's read: _Manager._drain

    def _break(self, worker: _Worker, reason: str) -> None:
        raise NotImplementedError  # _Manager._break

    def _on_readable(self, worker: _Worker) -> int:
        raise NotImplementedError  # _Manager._on_readable

    def _claim(self, worker: _Worker, task: _Task) -> None:
        """In the dispatching thread: reserve the reply of ``task`` for this thread."""
        self._end_claim()
        if not worker.reading.acquire(blocking=False):
            return
        worker.claimer = threading.get_ident()
        _claims.claim = (self, worker, weakref.ref(task))

    def _end_claim(self) -> None:
        """Let go of this thread's claim, if it has one."""
        claim = _claims.claim
        if claim is None:
            return
        _claims.claim = None
        executor, worker, _ = claim
        with executor._lock:
            owned = worker.claimer == threading.get_ident()
            if owned:
                worker.claimer = None
        if owned:
            executor._release_reading(worker)

    def _claims_timeout(self) -> float | int:
        if not self._stale:
            return _FOREVER
        now = time.monotonic()
        for worker, deadline in list(self._stale.items()):
            if deadline > now:
                continue
            del self._stale[worker]
            with self._lock:
                stolen = worker.claimer is not None and worker.claimer != _HELPING
                if stolen:
                    worker.claimer = None  # its held lock is now the manager's
            if stolen:
                self._drain(worker)
                self._release_reading(worker)
        if not self._stale:
            return _FOREVER
        return max(0.0, min(self._stale.values()) - now)

    def _release_reading(self, worker: _Worker) -> None:
        with self._lock:
            worker.claimer = None
        worker.reading.release()
        # A reply that arrived while the lock was held produced its one edge
        # then: if it is still unread, the manager must read it.  (Only a
        # worker that holds a task can have sent one.)
        if worker.task is not None and worker.fd in self._by_fd and _readable(worker.fd):
            with self._lock:
                self._recheck.append(worker)
            if threading.current_thread() is not self._thread:
                self._wake()

    def _serve_rechecks(self) -> None:
        with self._lock:
            rechecks, self._recheck = self._recheck, []
        for worker in rechecks:
            if worker.fd in self._by_fd and worker.reading.acquire(blocking=False):
                self._drain(worker)
                self._release_reading(worker)

    def _help(self, task: _Task, timeout: float | None) -> None:
        """Wait for ``task`` by reading its worker's socket in the calling thread.

        A synchronous ``submit(...).result()`` then costs one process round
        trip: the caller sleeps in poll() on the worker's socket and reads the
        reply itself, instead of the manager thread reading it and waking the
        caller.  Returns when the task is done, the time is up, or helping is
        not possible (the manager then does the work).
        """
        # Once this thread holds the worker's reading lock as the helper, it must let
        # go whatever happens, Ctrl-C included: the manager waits for that lock when
        # the worker exits, so one left held would hang shutdown.
        claim = _claims.claim
        helping = False
        try:
            if claim is not None and claim[0] is self and claim[2]() is task:
                _claims.claim = None
                worker = claim[1]
                with self._lock:
                    if worker.claimer != threading.get_ident():
                        return  # the manager took the reply over: it has the lock
                    worker.claimer, helping = _HELPING, True
            else:
                self._end_claim()
                running = self._running.get(task)
                if running is None:
                    return
                worker = running
                helping = worker.reading.acquire(blocking=False)
                if not helping:
                    return
                with self._lock:
                    worker.claimer = _HELPING
            # Mute the socket in the manager's poller meanwhile, so the reply does
            # not wake the manager too (it would compete for the GIL just when
            # this thread needs it); re-arming reports anything left unread.
            try:
                self._poller.modify(worker.fd, _EDGE_MUTED)
            except (OSError, ValueError):
                return
            self._read_for(worker, task, timeout)
        finally:
            if helping:
                if worker.fd in self._by_fd:
                    try:
                        self._poller.modify(worker.fd, _EDGE_IN)
                    except (OSError, ValueError):
                        pass
                self._release_reading(worker)

    def _read_for(self, worker: _Worker, task: _Task, timeout: float | None) -> None:
        if worker.poller is None:
            worker.poller = select.poll()
            worker.poller.register(worker.fd, select.POLLIN)
            worker.poller.register(worker.sentinel, select.POLLIN)
        poll = worker.poller.poll
        deadline = None if timeout is None else time.monotonic() + timeout
        future = task
        while not _done(future) and worker.task is task:
            wait_ms = _POLL_SLICE_MS
            if deadline is not None:
                left = int((deadline - time.monotonic()) * 1000)
                wait_ms = max(0, min(wait_ms, left))
            ready = dict(poll(wait_ms))
            if worker.fd in ready:
                state = _HANDLED
                while state == _HANDLED and not _done(future):
                    state = self._on_readable(worker)
                if state == _EOF:
                    return
            elif worker.sentinel in ready:
                return  # it died: the manager reports it
            elif deadline is not None and time.monotonic() >= deadline:
                return
            since = worker.reader.since
            if since and time.monotonic() - since >= _STALL_SECONDS:
                self._break(worker, _stalled())
                return


@final
class _Manager(_CallerReads):
    """The workers, their sockets and the manager thread of one ``ProcessExecutor``."""

    def _manage(self) -> None:
        poller = self._poller
        poller.register(self._wake_r, select.POLLIN)
        try:
            while True:
                self._start_workers()
                # Before the stopping check: taking over a claimed reply may have
                # settled the last running task, after which nothing wakes us.
                timeout = self._next_wait()
                if self._stopping and self._finish_stopping():
                    return
                for fd, _ in poller.poll(timeout):
                    if fd == self._wake_r:
                        try:
                            os.read(self._wake_r, 4096)
                        except OSError:
                            pass
                        continue
                    entry = self._by_fd.get(fd)
                    if entry is None:
                        continue
                    worker, is_sentinel = entry
                    if is_sentinel:
                        self._on_exit(worker)
                    elif worker.reading.acquire(blocking=False):
                        self._drain(worker)
                        self._release_reading(worker)
                    elif worker.claimer is not None and worker.claimer != _HELPING:
                        # Claimed by the thread that sent the task: give it a
                        # moment to come and wait, then read the reply here.
                        self._stale.setdefault(worker, time.monotonic() + _CLAIM_GRACE)
                self._serve_rechecks()
        except BaseException as exc:  # pragma: no cover - a bug in taskkit: never hang the caller
            self._fail_everything(exc)
            raise
        finally:
            if _HAS_EPOLL:
                poller.close()  # a select.poll object has nothing to close
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
            _live_backends.discard(self._backend)  # nothing left for _at_exit to wait for

    def _next_wait(self) -> float | int:
        """Do what is due (claims to take over, stalled senders); the poll's timeout."""
        claims = self._claims_timeout()
        stalls = self._stall_timeout()
        wait = max(claims, stalls) if _FOREVER in (claims, stalls) else min(claims, stalls)
        if not _HAS_EPOLL and wait != _FOREVER:
            return int(wait * 1000) + 1  # select.poll counts milliseconds
        return wait

    def _stall_timeout(self) -> float | int:
        """Break workers that left a message half-sent for _STALL_SECONDS."""
        if not self._unfinished:
            return _FOREVER
        now = time.monotonic()
        wait: float | None = None
        with self._lock:
            unfinished = list(self._unfinished)
        for worker in unfinished:
            since = worker.reader.since
            if not since or worker.broken is not None:
                with self._lock:
                    self._unfinished.discard(worker)
                continue
            left = since + _STALL_SECONDS - now
            if left <= 0:
                # Not while a caller reads it: that caller checks for itself.
                if worker.reading.acquire(blocking=False):
                    try:
                        if worker.reader.since == since:
                            self._break(worker, _stalled())
                            continue
                    finally:
                        worker.reading.release()
                left = _POLL_SLICE_MS / 1000
            wait = left if wait is None else min(wait, left)
        return _FOREVER if wait is None else max(0.0, wait)

    def _drain(self, worker: _Worker) -> None:
        """Handle every reply waiting on ``worker``'s socket (its lock held)."""
        while self._on_readable(worker) == _HANDLED:
            pass

    def _on_readable(self, worker: _Worker) -> int:
        """Read and handle one message from ``worker`` (its ``reading`` lock held).

        Returns _HANDLED, _EMPTY (nothing to read), or _EOF (the worker is
        exiting; its sentinel says how).
        """
        try:
            message = worker.reader.recv()
        except BlockingIOError:
            if worker.reader.since:
                self._note_unfinished(worker)
            return _EMPTY
        except (OSError, EOFError):
            message = None
        except _wire.ProtocolError as exc:
            self._break(worker, f"it broke the protocol: it sent {exc}")
            return _EOF
        except BaseException as exc:
            # MemoryError for a huge reply, or a Ctrl-C landing in a caller that
            # reads it: the rest of the socket can no longer be framed.
            self._break(worker, f"its reply could not be read ({_reason(exc)})")
            if isinstance(exc, Exception):
                return _EOF
            raise
        if message is None:
            self._unwatch(worker.fd)
            return _EOF
        tag, stream, buffers = message
        if tag == _wire.READY:
            self._on_ready(worker)
            return _HANDLED
        failure = None
        if tag == _wire.INIT_FAILED:
            # Sent once, instead of A: decoded here, before any state changes.
            try:
                if worker.ready:
                    raise _wire.ProtocolError("its initializer failed after it said it was ready")
                failure = _decode_exception(stream)
            except BaseException as exc:
                self._break(worker, f"it broke the protocol: {_reason(exc)}")
                if isinstance(exc, Exception):
                    return _EOF
                raise
        with self._lock:
            task = worker.task
            stray = task is None and not worker.killed and tag != _wire.INIT_FAILED
            worker.task = None
            if task is not None:
                self._running.pop(task, None)
                # Its reply is in: it runs no more, though it settles only after its
                # worker has its next task (statistics() must not count both as running).
                set_width(task, 0)
            following = None
            if tag == _wire.INIT_FAILED:
                self._broken = failure
            elif not worker.retiring and not worker.killed and not stray:
                following = self._next_task(worker)
        if stray:
            self._break(worker, "it broke the protocol: it answered a task it was not given")
            return _EOF
        try:
            if following is not None:
                try:
                    self._send_task(worker, following)
                except BaseException:  # a Ctrl-C in a caller that reads: its next task
                    self._break(worker, "sending it its next task was interrupted")
                    raise
            if tag == _wire.INIT_FAILED:
                self._fail_pending(self._broken)
                if task is not None:
                    self._ledger.failed(task, _initializer_failed(self._broken))
            elif task is not None:
                self._settle(task, tag, stream, buffers)
        except BaseException as exc:
            # Only a Ctrl-C in a caller that reads gets here: the task it answered
            # settles all the same.
            if task is not None and not _done(task):
                self._ledger.failed(task, _unpickle_failed(exc))
            raise
        if self._stopping and not self._on_manager_thread():
            self._wake()  # a caller settled a task: the manager may now let the worker go
        return _HANDLED

    def _break(self, worker: _Worker, reason: str) -> None:
        """Stop trusting ``worker``: kill it; its task fails with ``WorkerCrashed(reason)``.

        Only that worker is affected: _on_exit fails its task (or retries it)
        and starts a replacement, as for any worker that died.
        """
        with self._lock:
            if worker.broken is None:
                worker.broken = reason
            self._unfinished.discard(worker)
        self._unwatch(worker.fd)
        worker.kill()

    def _on_manager_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _note_unfinished(self, worker: _Worker) -> None:
        with self._lock:
            new = worker not in self._unfinished
            self._unfinished.add(worker)
        if new and not self._on_manager_thread():
            self._wake()  # the manager times the stall (see _stall_timeout)

    def _on_ready(self, worker: _Worker) -> None:
        """``worker`` is set up: arm the deadline of the task already sent to it."""
        with self._lock:
            worker.ready = True
            if worker.task is not None:
                self._ledger.arm_deadline(worker.task)

    def _settle(
        self, task: _Task, tag: bytes, stream: bytes | bytearray, buffers: list[bytearray]
    ) -> None:
        # Unpickling runs the result's own code: a __reduce__ may raise anything,
        # SystemExit included, and a Ctrl-C may land meanwhile.  Whatever it is,
        # the task settles with it, and the pool goes on.
        value: Any = None
        error: BaseException | None = None
        try:
            if tag == _wire.RESULT:
                value = _wire.loads(stream, buffers)
            elif tag == _wire.CHUNK:
                results, encoded, retried, elapsed = _wire.loads(stream, buffers)
                if type(results) is bytes:
                    results = _wire.unpack_ints(results)
                failures = [(index, _decode_exception(failure)) for index, failure in encoded]
                value = (results, failures, retried, elapsed)
            else:
                error = _decode_exception(stream)
        except BaseException as exc:
            self._ledger.failed(task, _unpickle_failed(exc))
            if isinstance(exc, KeyboardInterrupt) and not self._on_manager_thread():
                raise  # a real Ctrl-C, in the main thread reading the reply: the user's
            return
        self._ledger.report_outcome(task, value, error)

    def _on_exit(self, worker: _Worker) -> None:
        with self._lock:
            stolen = worker.claimer is not None and worker.claimer != _HELPING
            if stolen:
                worker.claimer = None  # a claim's held lock is now the manager's
        if not stolen:
            worker.reading.acquire()  # a helping caller lets go within one poll slice
        if not worker.killed and worker.fd in self._by_fd:
            # A worker that exits on its own (max_tasks_per_child) sends its last reply
            # first, but the poll may report its exit before that reply: read it now.
            self._drain(worker)
        self._stale.pop(worker, None)
        self._unwatch(worker.fd)
        worker.reading.release()
        with self._lock:
            self._unfinished.discard(worker)
        self._unwatch(worker.sentinel)
        worker.process.join()
        exitcode = worker.process.exitcode
        worker.conn.close()
        worker.process.close()
        with self._lock:
            self._workers.pop(worker.pid, None)
            if worker in self._idle:
                self._idle.remove(worker)
            task = worker.task
            worker.task = None
            if task is not None:
                self._running.pop(task, None)
            self._purge_pending()
            if (
                self._pending
                and not self._killing
                and len(self._workers) + self._starting < self._max_workers
            ):
                self._starting += 1
        crashed = task is not None and (not worker.killed or worker.broken is not None)
        if crashed and task is not None:
            self._log.warning(
                "worker %d %s while it ran %s%s",
                worker.pid,
                _how_it_ended(exitcode),
                task.name,
                f" ({worker.broken})" if worker.broken else "",
            )
            crash = WorkerCrashed(task.name, worker.pid, exitcode, worker.broken or "")
            self._ledger.failed(task, crash)
        else:
            self._log.debug("worker %d %s", worker.pid, _how_it_ended(exitcode))


_SLICED = (range, list, tuple)


class _ProcessMapRun(MapRun):
    """``MapRun`` with shortcuts for processes, same semantics.

    * one iterable: its values are sent as a plain list (``run_column``),
      not as 1-tuples made by ``zip`` and unpacked again in the worker;
    * one ``range``, ``list`` or ``tuple``: chunks are slices of it, taken at
      C speed, and a slice of a range is a range, which pickles in a few
      bytes however many calls it stands for.
    """

    def __init__(
        self,
        executor: ProcessExecutor,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        spec: MapSpec,
    ) -> None:
        # Set before the base's __init__, which submits the first window.
        column = iterables[0] if len(iterables) == 1 and callable(fn) else None
        self._column: Iterator[Any] | None = None if column is None else iter(column)
        # Exact types only: a subclass may iterate differently from its slices.
        self._sequence: Sequence[Any] | None = (
            cast("Sequence[Any]", column) if type(column) in _SLICED else None
        )
        self._position = 0  # of the next item of _sequence to read
        # What Executor.submit comes down to, without its frame: the ledger's submit.
        self._submit_task = executor._process.ledger.submit
        super().__init__(executor, fn, iterables, spec)

    def _read(self, size: int) -> Sequence[Any]:
        if self._sequence is not None:
            # What the list's iterator would give: the items there now.
            start = self._position
            items = self._sequence[start : start + size]
            self._position = start + len(items)
            return items
        if self._column is None:
            return super()._read(size)
        values: list[Any] = []
        try:
            values.extend(itertools.islice(self._column, size))
        except Exception as exc:
            # Raised to the consumer once the results before it are out.
            self._source_error, self._exhausted = exc, True
        return values

    def _submit_items(self, items: Sequence[Any]) -> Future[Any]:
        if self._column is None:
            return super()._submit_items(items)
        options = self._chunk_options
        args: tuple[Any, ...] = (self._fn, items)
        if options.retries or self._return_exceptions:
            args += (options.retries, self._return_exceptions)
        return self._submit_task(run_column, args, {}, options, len(items))

    def _submit_one(self, item: Any) -> Future[Any]:
        return super()._submit_one(item if self._column is None else (item,))


@final
class ProcessExecutor(Executor):
    """Run tasks in a pool of worker processes, one task per worker at a time."""

    backend = "process"
    # A chunk of a map should take long enough that the ~0.1 ms round trip is noise.
    _chunk_target = 0.01
    _map_run_class = _ProcessMapRun

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        start_method: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
    ) -> None:
        if max_workers is None:
            max_workers = _usable_cpus()
        check_max_workers(max_workers)
        if start_method is None:
            start_method = default_start_method()
        if start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be one of {', '.join(START_METHODS)}, got {start_method!r}"
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method {start_method!r} is not available on this platform")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        if max_tasks_per_child is not None and (
            isinstance(max_tasks_per_child, bool)
            or not isinstance(max_tasks_per_child, int)
            or max_tasks_per_child < 1
        ):
            raise ValueError(
                f"max_tasks_per_child must be a whole number >= 1, got {max_tasks_per_child!r}"
            )
        try:
            setup = _wire.dumps((initializer, initargs, max_tasks_per_child or 0))
        except Exception as exc:
            parts = [("the initializer", initializer), ("initargs", initargs)]
            raise _serialize.diagnose(
                parts, exc, "initializer or initargs", type(initializer).__name__
            ) from exc
        self._process = _ProcessBackend(max_workers, start_method, setup, max_tasks_per_child or 0)
        super().__init__(self._process)

    @property
    def start_method(self) -> str:
        """How worker processes are started: ``"fork"``, ``"forkserver"`` or ``"spawn"``."""
        return self._process.start_method

    def _default_window(self) -> int:
        return self._fixed_window or max(64 * self._max_workers, 32768)


class _ProcessBackend(Backend):
    """What a ``ProcessExecutor`` runs on: pickles each call, and hands it to its manager."""

    name = "process"
    chunk_runners = frozenset({run_chunk, run_column})
    timeout_detail = "its worker process (and its process group) was killed and replaced"

    def __init__(self, max_workers: int, start_method: str, setup: Any, max_tasks: int) -> None:
        super().__init__(max_workers)
        self.setup = setup  # the pickled initializer, its arguments and max_tasks
        self.start_method = start_method
        self.owner = os.getpid()
        self.context: Any = multiprocessing.get_context(start_method)
        self.max_tasks = max_tasks
        self.manager = _Manager(self)
        _live_backends.add(self)

    def check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        # Pickle now, once: a bad argument fails in the caller, and the bytes
        # are kept for sending (see payload_for).
        _pickled.check(fn, args, kwargs)

    def payload_for(self, task: _Task) -> _wire.Payload:
        """The pickled call of ``task``, kept as its handle until it settles."""
        payload: _wire.Payload | None = handle_of(task)
        if payload is not None:
            return payload
        payload = _pickled.take(*call_of(task))
        set_handle(task, payload)
        if _CALLER_READS and attempt_of(task) == 0:
            # Before anyone can wait on it (the future was just made by submit):
            # a caller blocked in result() reads the worker's reply itself.
            set_help(task, functools.partial(self.manager._help, task))
        return payload

    def dispatch(self, task: _Task) -> None:
        self.manager.dispatch(task)

    def stop_running(self, task: _Task) -> bool:
        return self.manager.stop_running(task)

    def worker_count(self) -> int:
        return len(self.manager._workers)

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        self.manager.shutdown_workers(wait=wait, kill=kill)


# --------------------------------------------------------------- helpers


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_preloaded = False
_WORKER_MODULE = "taskkit._backends.process._worker"


def _preload_worker_in_forkserver() -> None:
    """Have the forkserver import the worker code once, so each fork starts warm."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    add_forkserver_preload(_WORKER_MODULE)  # not if the server already runs


def _wire_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The call as sent: a map chunk over one iterable travels as a plain list of values."""
    if fn is run_chunk and len(args) >= 2:
        user_fn, items, *policy = args
        if items and len(items[0]) == 1:  # zip of one iterable: every item is a 1-tuple
            return run_column, (user_fn, [item[0] for item in items], *policy), {}
    return fn, args, kwargs


def _encode_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _wire.Payload:
    return _serialize.dumps(_wire_call(fn, args, kwargs))


def _call_parts(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    """The parts of a call to name in a SerializationError (a column chunk as a map chunk)."""
    if fn is run_column and len(args) >= 2:
        args = (args[0], [(value,) for value in args[1]])
        fn = run_chunk
    return _serialize.call_parts(fn, args, kwargs)


# The call pickled by the submit in progress on each thread, for its dispatch.
_pickled = _serialize.PickledAtSubmit(_encode_call, _call_parts)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _decode_exception(stream: bytes | bytearray) -> BaseException:
    exc, name, message, text = _wire.decode_error(stream)
    if exc is None:
        return RemoteError(name, message, text)
    exc.__cause__ = RemoteTraceback(f'\n"""\n{text}"""')
    return exc


def _unpickle_failed(exc: BaseException) -> SerializationError:
    error = SerializationError(
        "result", "unknown", f"it could not be unpickled here: {_reason(exc)}"
    )
    error.__cause__ = exc
    return error


def _stalled() -> str:
    return f"it broke the protocol: it left a message unfinished for {_STALL_SECONDS:g} s"


def _initializer_failed(exc: BaseException | None) -> BaseException:
    error = InitializerFailed("process", repr(exc))
    error.__cause__ = exc
    return error


backend_class = ProcessExecutor


def _how_it_ended(exitcode: int | None) -> str:
    """``exited with status 3``, ``was killed by SIGKILL``: for log records."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"
