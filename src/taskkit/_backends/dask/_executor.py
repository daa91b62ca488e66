"""The ``dask`` backend: the same Executor on a Dask distributed cluster.

Data flow::

    submit ──► _Task ──► _dispatch: (fn, args, kwargs) as pickled in submit, ledger.begin(task),
                         client.submit(run_payload, payload, pure=False) ──► Dask future
                                                                                │
    client IO loop: _watch awaits the Dask future (results are fetched concurrently)
                         │ (task, token, status, outcome)
                         ▼
    "taskkit-dask-results" thread: decode ──► ledger.succeeded / failed (retries re-dispatch)
                                                 KilledWorker ──► WorkerCrashed

    task with a timeout: run_payload logs "started" on a Dask event topic ──►
        the client arms the deadline then (not while the task waits in the
        scheduler's queue); when it passes, the Dask future is cancelled.

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
import math
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
from ..._core._calls import run_chunk
from ..._core._errors import ExecutorClosed, WorkerCrashed
from ..._core._executor import Executor
from ..._core._ledger import Task as _Task
from ..._core._timer import Deadline, call_later
from ._cluster import Connection, connect
from ._remote import decode, run_payload, worker_keys

if TYPE_CHECKING:
    from ..._primitives._protocols import Event, Lock, Queue, Semaphore, Value
    from ._primitives import _Shared

__all__ = ["DaskExecutor"]

_P = TypeVar("_P", bound="_Shared")
_T = TypeVar("_T")

_ADDRESS_VARIABLE = "TASKKIT_DASK_ADDRESS"
# How long shutdown(cancel_pending=True) waits for the workers to drop cancelled tasks.
_CANCEL_SETTLE = 2.0

# distributed is only partly typed: its objects are handled as Any here.
distributed: Any = _distributed


class _ArmedOnStart(Deadline):
    """A task's deadline that starts counting when a worker starts the task.

    A task may wait in the scheduler's queue for a long time; its ``timeout``
    is about how long it *runs*, as on every other backend.
    """

    __slots__ = ("armed",)

    def __init__(self, callback: Callable[[], object]) -> None:
        super().__init__(math.inf, callback)
        self.armed: Deadline | None = None

    def arm(self, timeout: float) -> None:
        if not self.cancelled and self.armed is None:
            self.armed = call_later(timeout, self.callback)

    def cancel(self) -> None:
        super().cancel()
        if self.armed is not None:
            self.armed.cancel()


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
            super().__init__(max_workers=max_workers)  # validates it before a cluster starts
        for module in ship_modules:
            _ship(module)
        self._connection: Connection = connect(
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
        self._client: Any = self._connection.client
        if max_workers is None:
            max_workers = (
                (os.cpu_count() or 1) * threads_per_worker if local else self._cluster_threads()
            )
            super().__init__(max_workers=max(1, max_workers))
        # task -> (token, Dask future) of the attempt in flight.  Whoever takes
        # the entry out (the outcome, or a cancel/timeout) decides how it ends.
        self._running: dict[_Task, tuple[int, Any]] = {}
        self._running_lock = threading.Lock()
        self._cancelling: set[asyncio.Future[Any]] = set()  # cancels run on the loop
        self._starts: dict[int, _Task] = {}
        self._tokens = itertools.count()
        self._topic = f"taskkit-started-{uuid.uuid4().hex}"
        self._client.subscribe_topic(self._topic, self._started)
        self._outcomes: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
        self._settler = threading.Thread(
            target=self._settle_outcomes, name="taskkit-dask-results", daemon=True
        )
        self._settler.start()
        self._close_lock = threading.Lock()
        self._closing = False
        self._primitives_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this executor submits through."""
        return self._client

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, e.g. ``"tcp://127.0.0.1:40123"``."""
        return self._connection.address

    def _cluster_threads(self) -> int:
        return sum(self._client.nthreads().values())

    # ------------------------------------------------------------- submitting

    def _check_arguments(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        # Pickle at submit, so an unpicklable argument is the caller's error
        # there; _dispatch reuses the bytes.
        _pickled.check(fn, args, kwargs)

    def _dispatch(self, task: _Task) -> None:
        payload = _pickled.take(task._fn, task._args, task._kwargs)
        if not self._ledger.begin(task):
            return
        token = next(self._tokens)
        topic = None
        deadline = task._deadline
        if isinstance(deadline, _ArmedOnStart) and not deadline.cancelled:
            topic = self._topic
            self._starts[token] = task
        future = self._client.submit(run_payload, payload, topic, token, key=_key(task), pure=False)
        with self._running_lock:
            self._running[task] = (token, future)
        task._stop_running = self._ledger.stop_hook
        self._client.loop.add_callback(self._watch, future, task, token)

    def _schedule_deadline(self, task: _Task, timeout: float) -> Deadline:
        return _ArmedOnStart(lambda: self._ledger.deadline_passed(task))

    def _started(self, event: tuple[float, int]) -> None:
        # On the client's IO loop: a worker started an attempt that has a deadline.
        task = self._starts.pop(event[1], None)
        if task is not None and isinstance(task._deadline, _ArmedOnStart):
            timeout = task._options.timeout
            if timeout is not None:
                task._deadline.arm(timeout)

    async def _watch(self, future: Any, task: _Task, token: int) -> None:
        # On the client's IO loop, one coroutine per task, so results are
        # fetched concurrently; settling happens on our own thread.
        try:
            outcome = await future._result(raiseit=False)
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
                self._ledger.fail_now(task, exc)  # never leave a future hanging
            del item, task  # not kept while waiting: the caller may have dropped the result

    def _settle(self, task: _Task, token: int, status: str, outcome: Any) -> None:
        self._starts.pop(token, None)
        with self._running_lock:
            entry = self._running.get(task)
            if entry is None or entry[0] != token:
                return  # this attempt was cancelled or timed out (and perhaps retried)
            del self._running[task]
        task._stop_running = None
        if status == "finished":
            ok, value = decode(outcome)
            if ok:
                self._ledger.succeeded(task, value)
            else:
                self._ledger.failed(task, value)
        elif status == "cancelled":
            self._ledger.stopped(task)  # cancelled on the cluster, not by us
        else:
            self._ledger.failed(task, self._remote_error(task, outcome))

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

    def _stop_running(self, task: _Task) -> bool:
        with self._running_lock:
            entry = self._running.pop(task, None)
        if entry is None:
            return False  # not in flight, or its outcome is being settled now
        future = entry[1]
        task._stop_running = None
        if self._closing or self._client.status != "running":
            return True  # the cluster is going or gone, and the call with it
        pending = future.cancel()
        if inspect.isawaitable(pending):
            # Called on the client's own event loop (a map's chunks collected there as
            # garbage): Dask hands back the cancel to await, so it runs as a task there.
            cancelling = asyncio.ensure_future(pending)
            self._cancelling.add(cancelling)  # held until done: the loop keeps weak refs
            cancelling.add_done_callback(self._cancelling.discard)
        return True

    def shutdown(
        self,
        wait: bool = True,
        *,
        cancel_pending: bool = False,
        kill: bool = False,
        cancel_futures: bool | None = None,
    ) -> None:
        """Close the executor and, if it owns it, its cluster (see ``Executor.shutdown``)."""
        if (cancel_pending or cancel_futures) and not kill:
            self.close()  # nothing new arrives while the queued tasks are cancelled
            self._cancel_queued()
        super().shutdown(
            wait, cancel_pending=cancel_pending, kill=kill, cancel_futures=cancel_futures
        )

    def _cancel_queued(self) -> None:
        """Cancel the tasks no Dask worker has started.

        Every task is handed to Dask at once, so the base class sees none as
        pending: ask the workers which tasks they have started (the scheduler's
        "processing" also counts tasks a worker holds in its own queue), and
        cancel the others.  Started includes finished: a worker may have run a
        task to its end before the news reaches this client (its Dask future
        is not done yet), and such a task keeps its result.  Dask passes a
        cancel on asynchronously, so then wait, briefly, until no worker holds
        them, lest one start them meanwhile.  A task that starts between the
        question and the cancel is cancelled as a running one is (its result
        is dropped).
        """
        with self._running_lock:
            entries = list(self._running.items())
        if not entries:
            return
        try:
            started = {key for keys, _ in self._client.run(worker_keys).values() for key in keys}
        except Exception:
            return  # the cluster is unreachable: what was queued there is lost with it
        cancelled = set()
        for task, (_, future) in entries:
            if future.key not in started and not future.done() and task.cancel():
                cancelled.add(future.key)
        deadline = time.monotonic() + _CANCEL_SETTLE
        while cancelled and time.monotonic() < deadline:
            try:
                # The scheduler first (it sends "free" after "compute" on the same
                # stream), then the workers.
                held = {key for keys in self._client.processing().values() for key in keys}
                held |= {key for _, keys in self._client.run(worker_keys).values() for key in keys}
            except Exception:
                return
            cancelled &= held
            if cancelled:
                time.sleep(0.005)  # the cancel has yet to reach them

    def _timeout_detail(self) -> str:
        return (
            "Dask cannot interrupt a running call, so it was cancelled on the cluster "
            "and its result will be dropped; it may run on in its worker until it returns"
        )

    def _worker_count(self) -> int:
        if self._closing:
            return 0
        try:
            return len(self._client.scheduler_info()["workers"])
        except Exception:
            return 0

    def _shutdown_workers(self, *, wait: bool, kill: bool) -> None:
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
        self.join()
        self._close(kill=False)

    def _close(self, *, kill: bool) -> None:
        try:
            if self._client.status == "running":
                self._client.unsubscribe_topic(self._topic)
                if self._connection.owns_client:
                    self._detach_primitives()
            self._connection.close(kill=kill)
        finally:
            self._outcomes.put(None)
            if threading.current_thread() is not self._settler:
                self._settler.join()

    # ------------------------------------------------------------- primitives

    # The primitives are Dask objects on the scheduler, so the executor makes
    # them itself rather than through the shared families.  It keeps them (in
    # the base class's weak set) for two reasons: shutdown(wait=True) closes
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
        if self._shut_down or self._client.status != "running":
            raise ExecutorClosed(
                "this executor is shut down or its Dask client is closed: "
                "shared objects can no longer be made"
            )
        return self._client

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
        if self._connection.cluster is not None:
            reason = "its executor was shut down, and the Dask cluster it started with it"
        else:
            reason = "its executor was shut down and closed its Dask client"
        with self._primitives_lock:
            primitives = list(self._primitives)
        for primitive in primitives:
            primitive._detach(reason)


def _ship(module: ModuleType | str) -> None:
    if isinstance(module, str):
        import importlib

        module = importlib.import_module(module)
    _serialize.ship_by_value(module)


def _key(task: _Task) -> str:
    # Dask groups tasks by the key's prefix on its dashboard; a number per
    # task would make a group per task, so only the function's name is used.
    fn = task._args[0] if task._fn is run_chunk else task._fn
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "call"
    name = re.sub(r"[^0-9A-Za-z_.]+", "_", name).strip("_") or "call"
    prefix = "map_" if task._fn is run_chunk else ""
    return f"{prefix}{name}-{uuid.uuid4().hex}"


def _encode_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    return _serialize.dumps_bytes((fn, args, kwargs))


# The call pickled by the submit in progress on each thread, for its dispatch.
_pickled = _serialize.PickledAtSubmit(_encode_call)


backend_class = DaskExecutor
