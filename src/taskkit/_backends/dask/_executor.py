"""The ``dask`` backend: the same Executor on a Dask distributed cluster.

Data flow::

    submit ──► _Task ──► dispatch: (fn, args, kwargs) as pickled in submit, ledger.begin(task),
                         client.submit(run_payload, payload, pure=False) ──► Dask future
                                                                                │
    client IO loop: _watch awaits the Dask future (results are fetched concurrently)
                         │ (task, token, status, outcome)
                         ▼
    "taskkit-dask-results" thread: decode ──► ledger.succeeded / failed (retries re-dispatch)
                                                 KilledWorker ──► WorkerCrashed

    task with a timeout: begun with ledger.begin(task, timed=False); run_payload logs
        "started" on a Dask event topic ──► ledger.arm_deadline(task) then (not while
        the task waits in the scheduler's queue); when it passes, the Dask future is
        cancelled.

Futures are settled on taskkit's own thread, never on the Dask client's IO
loop, so a done-callback that blocks (or submits) cannot stall the client.

What Dask cannot do, and taskkit therefore does not promise here: a call
that is already running on a worker cannot be interrupted.  Cancelling it
(``cancel()``, a per-task ``timeout``, ``shutdown(kill=True)``) releases it on
the cluster and drops its result; the call itself runs on in its worker
thread until it returns, unless the executor owns the cluster and closes it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, final

import distributed as _distributed

from ..._core import _serialize
from ..._core._backend import Backend, check_max_workers
from ..._core._calls import run_chunk
from ..._core._compat import dask_outcome
from ..._core._errors import ExecutorClosed, WorkerCrashed
from ..._core._executor import Executor
from ..._core._ledger import Task as _Task
from ..._core._ledger import call_of, timeout_of
from ._cluster import Connection, connect
from ._remote import decode, run_payload, worker_keys

if TYPE_CHECKING:
    from ..._primitives._protocols import Event, Lock, Queue, Semaphore, Value
    from ._primitives import _Shared

__all__ = ["DaskExecutor"]

_P = TypeVar("_P", bound="_Shared")
_T = TypeVar("_T")

_ADDRESS_VARIABLE = "TASKKIT_DASK_ADDRESS"
# How long shutdown(cancel_pending=True) waits for the scheduler and workers to drop
# cancelled tasks.
_CANCEL_SETTLE = 2.0
# The scheduler's states of a task that it has let go of: it will not hand it to a worker.
_LET_GO = frozenset({None, "released", "forgotten"})

# distributed is only partly typed: its objects are handled as Any here.
distributed: Any = _distributed


_Outcome = tuple[_Task, int, str, Any]


@final
class DaskExecutor(Executor):
    """Run tasks on a Dask cluster: a private ``LocalCluster`` or an existing scheduler."""

    backend = "dask"
    # Dask spends about 2 ms on each task, so map chunks aim well above that.
    _chunk_target = 0.05

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        address: str | None = None,
        client: Any = None,
        processes: bool = True,
        threads_per_worker: int = 1,
        local_directory: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
        security: Any = None,
        ship_modules: Iterable[ModuleType | str] = (),
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Start a local cluster, or connect to an existing one.

        Args:
            max_workers: with a local cluster, the number of worker processes
                (default: one per CPU); with an existing cluster, only how
                ``map`` divides work (default: the cluster's thread count).
            address: an existing scheduler, e.g. ``"tcp://10.0.0.5:8786"``;
                default: ``$TASKKIT_DASK_ADDRESS`` if set, else a local cluster.
            client: an existing ``distributed.Client`` to use (and not close).
            processes: local cluster only: workers are processes (True) or
                threads of this process (False).
            threads_per_worker: local cluster only: tasks run at once per worker.
            local_directory: local cluster only: where workers keep files
                (default: a temporary directory, removed at shutdown).
            connect_timeout: seconds to wait for ``address`` to answer.
            security: a ``distributed.security.Security`` for a cluster that
                speaks TLS (``address="tls://..."``); a local cluster, without
                it, makes credentials of its own that only this process holds.
            ship_modules: modules (or their names) that are not installed on
                the workers: their functions are sent by value with each task.
            cluster_options: more keyword arguments for ``distributed.LocalCluster``.
        """
        if address is not None and client is not None:
            raise ValueError("give address= or client=, not both")
        if client is not None and security is not None:
            raise ValueError("security= is for address= or a local cluster; client= has its own")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout!r}")
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be at least 1, got {threads_per_worker}")
        if client is None and address is None:
            address = os.environ.get(_ADDRESS_VARIABLE) or None
        local = client is None and address is None
        if max_workers is not None:
            check_max_workers(max_workers)  # before a cluster starts
        for module in ship_modules:
            _ship(module)
        connection = connect(
            address=address,
            client=client,
            n_workers=max_workers or os.cpu_count() or 1,
            threads_per_worker=threads_per_worker,
            processes=processes,
            local_directory=local_directory,
            connect_timeout=connect_timeout,
            security=security,
            cluster_options=dict(cluster_options or {}),
        )
        if max_workers is None:
            threads = (
                (os.cpu_count() or 1) * threads_per_worker
                if local
                else sum(connection.client.nthreads().values())
            )
            max_workers = max(1, threads)
        self._primitives_lock = threading.Lock()
        self._dask = _DaskBackend(max_workers, connection, self._detach_primitives)
        super().__init__(self._dask)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this executor submits through."""
        return self._dask.client

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, e.g. ``"tcp://127.0.0.1:40123"``."""
        return self._dask.connection.address

    # ------------------------------------------------------------- primitives

    # The primitives are Dask objects on the scheduler, so the executor makes
    # them itself rather than through the shared families.  It keeps them (in
    # the executor's weak set) for two reasons: shutdown(wait=True) closes
    # the queues, as on every backend, and before the executor closes a client
    # it made, each object keeps what reads need (see _detach_primitives).

    def queue(self, maxsize: int = 0) -> Queue[Any]:
        """Return a queue shared by this program and its tasks (a Dask ``Queue``)."""
        from ._primitives import DaskQueue

        return self._keep(DaskQueue(self._live_client(), maxsize))

    def lock(self) -> Lock:
        """Return a lock shared by this program and its tasks (a Dask ``Lock``)."""
        from ._primitives import DaskLock

        return self._keep(DaskLock(self._live_client()))

    def event(self) -> Event:
        """Return an event shared by this program and its tasks (a Dask ``Event``)."""
        from ._primitives import DaskEvent

        return self._keep(DaskEvent(self._live_client()))

    def semaphore(self, n: int = 1) -> Semaphore:
        """Return a semaphore with ``n`` permits (a Dask ``Semaphore``)."""
        from ._primitives import DaskSemaphore

        return self._keep(DaskSemaphore(self._live_client(), n))

    def value(self, initial: _T) -> Value[_T]:
        """Return a shared value (a Dask ``Variable`` guarded by a Dask ``Lock``)."""
        from ._primitives import DaskValue

        return self._keep(DaskValue(self._live_client(), initial))

    def _live_client(self) -> Any:
        if self._shut_down or self._dask.client.status != "running":
            raise ExecutorClosed(
                "this executor is shut down or its Dask client is closed: "
                "shared objects can no longer be made"
            )
        return self._dask.client

    def _keep(self, primitive: _P) -> _P:
        with self._primitives_lock:
            self._primitives.add(primitive)
        return primitive

    def _detach_primitives(self) -> None:
        """Let each shared object keep its last state before the client closes.

        A queue keeps the items left in it (so ``get`` still returns them, then
        raises ``QueueClosed``), a value its value, the others their flag or
        count; anything else they are asked raises ``ExecutorClosed``.
        """
        if self._dask.connection.cluster is not None:
            reason = "its executor was shut down, and the Dask cluster it started with it"
        else:
            reason = "its executor was shut down and closed its Dask client"
        with self._primitives_lock:
            primitives = list(self._primitives)
        from ._primitives import detach

        for primitive in primitives:
            detach(primitive, reason)


class _DaskBackend(Backend):
    """The Dask client behind a ``DaskExecutor``: tasks go to the cluster, outcomes back."""

    name = "dask"
    timeout_detail = (
        "Dask cannot interrupt a running call, so it was cancelled on the cluster "
        "and its result will be dropped; it may run on in its worker until it returns"
    )

    def __init__(
        self, max_workers: int, connection: Connection, detach_primitives: Callable[[], None]
    ) -> None:
        super().__init__(max_workers)
        self.connection = connection
        self.client: Any = connection.client
        self._detach_primitives = detach_primitives
        # task -> (token, Dask future) of the attempt in flight.  Whoever takes
        # the entry out (the outcome, or a cancel/timeout) decides how it ends.
        self._running: dict[_Task, tuple[int, Any]] = {}
        self._running_lock = threading.Lock()
        self._cancelling: set[asyncio.Future[Any]] = set()  # cancels run on the loop
        self._starts: dict[int, _Task] = {}
        self._tokens = itertools.count()
        self._topic = f"taskkit-started-{uuid.uuid4().hex}"
        self.client.subscribe_topic(self._topic, self._started)
        self._outcomes: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
        self._settler = threading.Thread(
            target=self._settle_outcomes, name="taskkit-dask-results", daemon=True
        )
        self._settler.start()
        self._close_lock = threading.Lock()
        self._closing = False

    # ------------------------------------------------------------- submitting

    def check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        # Pickle at submit, so an unpicklable argument is the caller's error
        # there; dispatch reuses the bytes.
        _pickled.check(fn, args, kwargs)

    def dispatch(self, task: _Task) -> None:
        fn, args, kwargs = call_of(task)
        payload = _pickled.take(fn, args, kwargs)
        # A task may wait in the scheduler's queue for a long time; its timeout is about
        # how long it *runs*, as on every other backend: its deadline is armed when a
        # worker starts it (see _started).
        if not self.ledger.begin(task, timed=False):
            return
        token = next(self._tokens)
        topic = None
        if timeout_of(task) is not None:
            topic = self._topic
            self._starts[token] = task
        future = self.client.submit(
            run_payload, payload, topic, token, key=_key(fn, args), pure=False
        )
        with self._running_lock:
            self._running[task] = (token, future)
        self.ledger.stoppable(task)
        self.client.loop.add_callback(self._watch, future, task, token)

    def _started(self, event: tuple[float, int]) -> None:
        # On the client's IO loop: a worker started an attempt that has a deadline.
        task = self._starts.pop(event[1], None)
        if task is not None:
            self.ledger.arm_deadline(task)

    async def _watch(self, future: Any, task: _Task, token: int) -> None:
        # On the client's IO loop, one coroutine per task, so results are
        # fetched concurrently; settling happens on our own thread.
        try:
            outcome = await dask_outcome(future)
            status = future.status
        except BaseException as exc:  # the connection to the cluster was lost
            outcome, status = exc, "error"
        self._outcomes.put((task, token, status, outcome))

    def _settle_outcomes(self) -> None:
        get = self._outcomes.get
        while (item := get()) is not None:
            task = item[0]
            try:
                self._settle(*item)
            except BaseException as exc:
                self.ledger.fail_now(task, exc)  # never leave a future hanging
            del item, task  # not kept while waiting: the caller may have dropped the result

    def _settle(self, task: _Task, token: int, status: str, outcome: Any) -> None:
        self._starts.pop(token, None)
        with self._running_lock:
            entry = self._running.get(task)
            if entry is None or entry[0] != token:
                return  # this attempt was cancelled or timed out (and perhaps retried)
            del self._running[task]
        self.ledger.stoppable(task, False)
        if status == "finished":
            ok, value = decode(outcome)
            if ok:
                self.ledger.succeeded(task, value)
            else:
                self.ledger.failed(task, value)
        elif status == "cancelled":
            self.ledger.stopped(task)  # cancelled on the cluster, not by us
        else:
            self.ledger.failed(task, self._remote_error(task, outcome))

    def _remote_error(self, task: _Task, outcome: Any) -> BaseException:
        if isinstance(outcome, tuple) and len(outcome) == 3:
            exc: BaseException = outcome[1].with_traceback(outcome[2])
        else:
            exc = outcome
        if isinstance(exc, distributed.KilledWorker):
            worker = getattr(exc, "last_worker", None)
            crashed = WorkerCrashed(task.name, getattr(worker, "pid", None), None)
            crashed.__cause__ = exc
            return crashed
        return exc

    # --------------------------------------------------------------- stopping

    def stop_running(self, task: _Task) -> bool:
        with self._running_lock:
            entry = self._running.pop(task, None)
        if entry is None:
            return False  # not in flight, or its outcome is being settled now
        future = entry[1]
        self.ledger.stoppable(task, False)
        if self._closing or self.client.status != "running":
            return True  # the cluster is going or gone, and the call with it
        pending = future.cancel()
        if inspect.isawaitable(pending):
            # Called on the client's own event loop (a map's chunks collected there as
            # garbage): Dask hands back the cancel to await, so it runs as a task there.
            cancelling = asyncio.ensure_future(pending)
            self._cancelling.add(cancelling)  # held until done: the loop keeps weak refs
            cancelling.add_done_callback(self._cancelling.discard)
        return True

    def cancel_queued(self) -> None:
        """Cancel the tasks no Dask worker has started.

        Every task is handed to Dask at once, so the executor sees none as
        pending: ask the workers which tasks they have started, and cancel the
        others.  Started includes finished: a worker may have run a task to its
        end before the news reaches this client (its Dask future is not done
        yet), and such a task keeps its result.  A task that starts between the
        question and the cancel is cancelled as a running one is (its result is
        dropped).

        The client tells the scheduler of new tasks and of cancels on a batched
        stream, which a question to the scheduler may overtake.  So first wait
        until the scheduler knows every task it was handed (then a task it no
        longer knows is one it has let go), and after the cancels wait, briefly,
        until neither the scheduler (queued or processing) nor any worker holds
        them, lest one start them meanwhile.
        """
        with self._running_lock:
            entries = list(self._running.items())
        if not entries:
            return
        deadline = time.monotonic() + _CANCEL_SETTLE
        try:
            while True:
                states = self._task_states([future.key for _, (_, future) in entries])
                unknown = any(
                    states.get(future.key) is None and not future.done()
                    for _, (_, future) in entries
                )
                if not unknown or time.monotonic() >= deadline:
                    break
                time.sleep(0.005)  # a task is still on its way to the scheduler
            started = {key for keys, _ in self.client.run(worker_keys).values() for key in keys}
        except Exception:
            return  # the cluster is unreachable: what was queued there is lost with it
        cancelled = set()
        for task, (_, future) in entries:
            if future.key not in started and not future.done() and task.cancel():
                cancelled.add(future.key)
        while cancelled and time.monotonic() < deadline:
            try:
                # The scheduler first (it sends "free" after "compute" on the same
                # stream), then the workers.
                held = {
                    key
                    for key, state in self._task_states(cancelled).items()
                    if state not in _LET_GO
                }
                held |= {key for _, keys in self.client.run(worker_keys).values() for key in keys}
            except Exception:
                return
            cancelled &= held
            if cancelled:
                time.sleep(0.005)  # the cancel has yet to reach them

    def _task_states(self, keys: Iterable[str]) -> dict[str, str | None]:
        """The scheduler's state of each of ``keys`` (None: it does not know the key)."""
        states: dict[str, str | None] = self.client.sync(
            self.client.scheduler.get_task_status, keys=list(keys)
        )
        return states

    def worker_count(self) -> int:
        if self._closing:
            return 0
        try:
            return len(self.client.scheduler_info()["workers"])
        except Exception:
            return 0

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        if wait or kill:
            self._close(kill=kill)
        else:
            # Work may still be running: close the cluster once it is done.  Not
            # a daemon, so that the interpreter waits for the work and the close.
            threading.Thread(target=self._close_when_idle, name="taskkit-dask-close").start()

    def _close_when_idle(self) -> None:
        self.executor.join()
        self._close(kill=False)

    def _close(self, *, kill: bool) -> None:
        try:
            if self.client.status == "running":
                self.client.unsubscribe_topic(self._topic)
                if self.connection.owns_client:
                    self._detach_primitives()
            self.connection.close(kill=kill)
        finally:
            self._outcomes.put(None)
            if threading.current_thread() is not self._settler:
                self._settler.join()


def _ship(module: ModuleType | str) -> None:
    if isinstance(module, str):
        import importlib

        module = importlib.import_module(module)
    _serialize.ship_by_value(module)


def _key(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    # Dask groups tasks by the key's prefix on its dashboard; a number per
    # task would make a group per task, so only the function's name is used.
    chunk = fn is run_chunk
    if chunk:
        fn = args[0]
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "call"
    name = re.sub(r"[^0-9A-Za-z_.]+", "_", name).strip("_") or "call"
    prefix = "map_" if chunk else ""
    return f"{prefix}{name}-{uuid.uuid4().hex}"


def _encode_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return _serialize.dumps_bytes((fn, args, kwargs))


# The call pickled by the submit in progress on each thread, for its dispatch.
_pickled = _serialize.PickledAtSubmit(_encode_call)


backend_class = DaskExecutor
