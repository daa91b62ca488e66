"""What only the dask backend does: its own LocalCluster, an existing scheduler, Dask primitives.

Two real clusters serve the module: one started by ``open_executor("dask")``
itself, and one made of ``dask scheduler`` and ``dask worker`` processes
started here on 127.0.0.1 and stopped by their pids.  Functions used as tasks
live at module level so that they are shipped by reference.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import pathlib
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import taskkit
from taskkit._primitives import QueueStatistics

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")


def square(x: int) -> int:
    return x * x


def cube(x: int) -> int:
    return x * x * x


def crash() -> None:
    os._exit(13)


def record_call(path: str) -> int:
    with open(path, "a") as f:
        f.write("x")
    return 1


def wait_for_file(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.002)
    return "opened"


def raise_value_error(x: int) -> None:
    raise ValueError(f"no good: {x}")


def unpicklable_result() -> Any:
    return lambda_holder()


class lambda_holder:
    def __reduce__(self) -> Any:
        raise TypeError("this object stays where it was made")


def produce(q: Any, n: int) -> int:
    for i in range(n):
        q.put((i, f"item {i}"))
    return n


def consume_until_closed(q: Any) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get())
        except taskkit.QueueClosed:
            return items


def locked_increment(lock: Any, value: Any) -> None:
    with lock:
        value.set(value.get() + 1)


def wait_for_event(event: Any) -> bool:
    return bool(event.wait(timeout=30))


def hold_permit(semaphore: Any, release: Any) -> int:
    with semaphore:
        release.wait(timeout=30)
        return 1


def _process_tree(pid: int) -> list[int]:
    try:
        parent = psutil.Process(pid)
        return [pid] + [child.pid for child in parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _gone(pids: list[int], timeout: float = 15.0) -> bool:
    _, alive = psutil.wait_procs(
        [p for pid in pids if (p := _maybe_process(pid)) is not None], timeout=timeout
    )
    return not alive


def _maybe_process(pid: int) -> Any:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


# ----------------------------------------------------------- own LocalCluster


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[taskkit.Executor]:
    directory = tmp_path_factory.mktemp("dask-local")
    executor = taskkit.open_executor("dask", max_workers=2, local_directory=directory)
    workers = list(executor.client.run(os.getpid).values())
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_pending=True, kill=True)
    assert executor.client.status == "closed"
    assert _gone(workers), "worker processes were left running"


def _listening(pid: int) -> list[tuple[str, int]]:
    """The addresses every process of ``pid``'s tree listens on (TCP, IPv4 and IPv6)."""
    found = []
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for conn in process.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found


def test_own_cluster_listens_on_loopback_with_random_ports(ex: Any) -> None:
    assert ex.scheduler_address.startswith("tls://127.0.0.1:")
    workers = ex.client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tls://127.0.0.1:") for address in workers)
    assert not ex.client.dashboard_link.endswith(":8787/status")
    assert ex.statistics().max_workers == 2


async def _identity(address: str, connection_args: dict[str, Any]) -> Any:
    """Ask the scheduler at ``address`` who it is, over a fresh connection."""
    comm = await distributed.comm.connect(address, timeout=5, **connection_args)
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        await comm.close()


def test_own_cluster_refuses_a_client_without_its_credentials(ex: Any) -> None:
    # Another local account can reach 127.0.0.1 but holds none of the cluster's
    # TLS credentials: before, a plain Client(address) connected and ran code.
    port = ex.scheduler_address.rsplit(":", 1)[1]
    # tls:// without credentials is refused at once (TypeError: no SSL context);
    # plain tcp:// to the TLS port gets no answer (the connection is closed or times out).
    for address in (ex.scheduler_address, f"tcp://127.0.0.1:{port}"):
        with pytest.raises((TypeError, OSError)):
            asyncio.run(_identity(address, {}))
    # The owner's credentials do connect: the refusals above are about them.
    owner = ex.client.security.get_connection_args("client")
    assert asyncio.run(_identity(ex.scheduler_address, owner))["type"] == "Scheduler"


def test_address_with_the_clusters_security_connects(ex: Any) -> None:
    # A TLS cluster of the user's own (here: the one taskkit started) is
    # reached with address= and the user's security=.
    with taskkit.open_executor(
        "dask", address=ex.scheduler_address, security=ex.client.security
    ) as other:
        assert other.submit(square, 7).result(timeout=30) == 49
    with pytest.raises(taskkit.BackendUnavailable, match="security="):
        taskkit.open_executor("dask", address=ex.scheduler_address, connect_timeout=2)


@pytest.mark.parametrize("processes", [True, False])
def test_every_listener_of_an_own_cluster_is_on_loopback(
    processes: bool, tmp_path: pathlib.Path
) -> None:
    with taskkit.open_executor(
        "dask", max_workers=2, processes=processes, local_directory=tmp_path
    ) as ex:
        assert ex.submit(square, 2).result(timeout=30) == 4
        listening = _listening(os.getpid())
    assert listening, "the cluster's HTTP servers at least listen"
    assert [] == [(ip, port) for ip, port in listening if ip not in ("127.0.0.1", "::1")]


def test_lambdas_closures_and_main_style_functions_run(ex: taskkit.Executor) -> None:
    base = 10

    def closure(x: int) -> int:
        return x + base

    assert ex.submit(lambda: 41 + 1).result(timeout=30) == 42
    assert ex.submit(closure, 5).result(timeout=30) == 15
    assert list(ex.map(closure, [1, 2])) == [11, 12]


def test_identical_calls_each_run(ex: taskkit.Executor, tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "calls")
    futures = [ex.submit(record_call, path) for _ in range(3)]
    assert [f.result(timeout=30) for f in futures] == [1, 1, 1]
    assert pathlib.Path(path).read_text() == "xxx"  # Dask did not merge them


def test_tuples_and_objects_round_trip(ex: taskkit.Executor) -> None:
    value = {"a": (1, 2), "b": {3, 4}, "c": b"\x00"}
    assert ex.submit(dict, value).result(timeout=30) == value


def test_exception_keeps_its_type_and_remote_traceback(ex: taskkit.Executor) -> None:
    with pytest.raises(ValueError, match="no good: 3") as info:
        ex.submit(raise_value_error, 3).result(timeout=30)
    assert "raise_value_error" in str(info.value.__cause__)


def test_unpicklable_argument_is_named_at_submit(ex: taskkit.Executor) -> None:
    with pytest.raises(taskkit.SerializationError, match=r"keyword 'x'.*lambda_holder"):
        ex.submit(print, x=lambda_holder())
    with pytest.raises(taskkit.SerializationError, match="argument 2"):
        ex.submit(print, 1, lambda_holder())


def test_unpicklable_result_is_a_serialization_error(ex: taskkit.Executor) -> None:
    with pytest.raises(taskkit.SerializationError, match="result"):
        ex.submit(unpicklable_result).result(timeout=30)


def test_awaitable_and_as_completed(ex: taskkit.Executor) -> None:
    async def main() -> int:
        return await ex.submit(square, 7)

    assert asyncio.run(main()) == 49
    futures = [ex.submit(square, i) for i in range(5)]
    assert sorted(f.result() for f in taskkit.as_completed(futures, timeout=30)) == [
        0,
        1,
        4,
        9,
        16,
    ]


def test_map_chunks_tiny_calls(ex: taskkit.Executor) -> None:
    before = ex.statistics().submitted
    assert sum(ex.map(square, range(5000))) == sum(x * x for x in range(5000))
    assert ex.statistics().submitted - before == 5000
    # Far fewer Dask tasks than calls: the scheduler saw chunks.
    prefixes = ex.client.run_on_scheduler(
        lambda dask_scheduler: sum(
            prefix.state_counts["memory"]
            + prefix.state_counts["released"]
            + prefix.state_counts["forgotten"]
            for name, prefix in dask_scheduler.task_prefixes.items()
            if name.startswith("map_square")
        )
    )
    assert 0 < prefixes < 200


def test_crashed_worker_is_worker_crashed_at_once(ex: taskkit.Executor) -> None:
    start = time.monotonic()
    with pytest.raises(taskkit.WorkerCrashed, match="crash") as info:
        ex.submit(crash).result(timeout=30)
    assert time.monotonic() - start < 5
    assert info.value.pid is not None
    assert ex.submit(square, 3).result(timeout=60) == 9  # the pool keeps running


def test_timeout_counts_from_the_start_not_from_the_queue(
    ex: taskkit.Executor, tmp_path: pathlib.Path
) -> None:
    gate = str(tmp_path / "gate")
    blockers = [ex.submit(wait_for_file, gate) for _ in range(2)]  # both workers busy
    queued = ex.options(timeout=0.3).submit(square, 4)
    with pytest.raises(TimeoutError):
        queued.result(timeout=0.6)  # waits in the queue longer than its timeout
    pathlib.Path(gate).touch()
    assert queued.result(timeout=30) == 16
    assert [b.result(timeout=30) for b in blockers] == ["opened", "opened"]


def test_cancel_releases_the_dask_task(ex: taskkit.Executor, tmp_path: pathlib.Path) -> None:
    gate = str(tmp_path / "gate")
    blocker = ex.submit(wait_for_file, gate)
    assert blocker.cancel()
    assert blocker.cancelled()
    pathlib.Path(gate).touch()
    assert ex.submit(square, 2).result(timeout=30) == 4


def test_a_cancel_made_on_the_clients_own_loop_is_carried_out(
    ex: taskkit.Executor, tmp_path: pathlib.Path
) -> None:
    # A map's chunks collected as garbage on the client's event loop thread cancel their
    # futures there, where Dask hands back the cancel as a coroutine: it must be run, not
    # dropped ("coroutine 'Client._cancel' was never awaited").
    gate = str(tmp_path / "gate")
    running = ex.submit(wait_for_file, gate)
    assert running.running()  # handed to the cluster at once: running, for taskkit
    answer: list[bool] = []
    done = threading.Event()

    def on_loop() -> None:
        answer.append(running.cancel())
        done.set()

    ex.client.loop.add_callback(on_loop)
    assert done.wait(30)
    assert answer == [True]
    assert running.cancelled()
    gc.collect()  # a coroutine never awaited warns (an error here) when collected
    pathlib.Path(gate).touch()
    assert ex.submit(square, 2).result(timeout=30) == 4


def test_shutdown_cancel_pending_keeps_a_task_its_worker_has_finished(ex: Any) -> None:
    # A worker ran the task to its end, but the scheduler's word of it ("key-in-memory")
    # has not reached this client yet: the task is not queued, and keeps its result.
    # The word is held back here until shutdown() has decided.
    client = ex.client
    report = client._stream_handlers["key-in-memory"]
    held: list[dict[str, Any]] = []
    finished = threading.Event()

    def hold(**msg: Any) -> None:  # on the client's event loop
        held.append(msg)
        if str(msg.get("key", "")).startswith("cube-"):
            finished.set()

    own = taskkit.open_executor("dask", client=client)
    client._stream_handlers["key-in-memory"] = hold
    try:
        done = own.submit(cube, 3)
        assert finished.wait(30)  # its worker holds its result; the client does not know
        own.shutdown(wait=False, cancel_pending=True)
        assert not done.cancelled()
    finally:
        client._stream_handlers["key-in-memory"] = report
        for msg in held:
            client.loop.add_callback(functools.partial(report, **msg))
    assert done.result(timeout=30) == 27
    closer = next((t for t in threading.enumerate() if t.name == "taskkit-dask-close"), None)
    if closer is not None:
        closer.join(timeout=30)


# ----------------------------------------------------------------- primitives


def test_queue_between_program_and_tasks(ex: Any) -> None:
    q = ex.queue()
    assert ex.submit(produce, q, 5).result(timeout=30) == 5
    assert [(i, f"item {i}") for i in range(5)] == [q.get(timeout=10) for _ in range(5)]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert q.empty()
    assert q.qsize() == 0


def test_bounded_queue_is_full(ex: Any) -> None:
    q = ex.queue(maxsize=1)
    q.put_nowait("a")
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait("b")
    with pytest.raises(queue.Full):
        q.put("b", timeout=0.05)
    assert q.get_nowait() == "a"


def test_closed_queue_drains_then_raises(ex: Any) -> None:
    q = ex.queue()
    consumer = ex.submit(consume_until_closed, q)
    for i in range(3):
        q.put(i)
    q.close()
    assert q.closed
    assert consumer.result(timeout=30) == [0, 1, 2]
    with pytest.raises(taskkit.QueueClosed):
        q.get(timeout=10)
    with pytest.raises(taskkit.QueueClosed):
        q.put(4)
    # Counted by this copy: the consumer's gets were made by the task's own copy.
    assert q.statistics() == QueueStatistics(
        size=0, maxsize=0, closed=True, puts=3, gets=0, waiting_getters=0, waiting_putters=0
    )


def test_queue_async_twins(ex: Any) -> None:
    q = ex.queue()

    async def main() -> Any:
        await q.aput([1, (2, 3)])
        return await q.aget(timeout=10)

    assert asyncio.run(main()) == [1, (2, 3)]


def test_lock_and_value_count_every_increment(ex: Any) -> None:
    lock, value = ex.lock(), ex.value(0)
    futures = [ex.submit(locked_increment, lock, value) for _ in range(20)]
    for f in futures:
        f.result(timeout=60)
    assert value.get() == 20
    assert not lock.locked()
    assert lock.acquire(timeout=5)
    assert not lock.previous_holder_died
    assert lock.locked()
    assert not ex.submit(lambda lk: lk.acquire(timeout=0.05), lock).result(timeout=30)
    lock.release()


def test_value_update_is_atomic_and_async(ex: Any) -> None:
    value = ex.value([1])
    assert value.update(lambda v: [*v, 2]) == [1, 2]
    value.set((3,))

    async def main() -> Any:
        return await value.aupdate(lambda v: (*v, 4))

    assert asyncio.run(main()) == (3, 4)
    assert value.get() == (3, 4)


def test_event_wakes_a_task(ex: Any) -> None:
    event = ex.event()
    waiter = ex.submit(wait_for_event, event)
    assert not event.is_set()
    assert not event.wait(timeout=0.05)
    event.set()
    assert waiter.result(timeout=30) is True
    event.clear()
    assert not event.is_set()
    assert asyncio.run(event.await_(timeout=0.05)) is False


def test_semaphore_counts_permits(ex: Any) -> None:
    semaphore, release = ex.semaphore(2), ex.event()
    assert semaphore.value == 2
    holder = ex.submit(hold_permit, semaphore, release)
    assert semaphore.acquire(timeout=10)  # the second permit
    deadline = time.monotonic() + 30
    while semaphore.value != 0 and time.monotonic() < deadline:
        assert not holder.done()
        release.wait(timeout=0.01)  # let the task take the first permit
    assert semaphore.value == 0
    assert not semaphore.acquire(timeout=0.05)
    release.set()
    assert holder.result(timeout=30) == 1
    semaphore.release()
    assert semaphore.value == 2


# ------------------------------------------------------------ errors, options


def test_missing_distributed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith(("taskkit._backends.dask._executor", "taskkit._backends.dask._cluster")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(taskkit.BackendUnavailable, match=r'pip install "taskkit\[dask\]"'):
        taskkit.open_executor("dask")


def test_unreachable_address_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing listens once closed
    start = time.monotonic()
    with pytest.raises(taskkit.BackendUnavailable, match="could not reach"):
        taskkit.open_executor("dask", address=f"tcp://127.0.0.1:{port}", connect_timeout=0.5)
    assert time.monotonic() - start < 5


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="not both"):
        taskkit.open_executor("dask", address="tcp://127.0.0.1:1", client=object())
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        taskkit.open_executor("dask", client=object())
    with pytest.raises(ValueError, match="security"):
        taskkit.open_executor("dask", client=object(), security=object())


def test_workload_cluster_starts_and_closes_its_own_cluster(tmp_path: pathlib.Path) -> None:
    ex: Any = taskkit.open_executor(
        workload="cluster", max_workers=1, processes=False, local_directory=tmp_path
    )
    assert ex.backend == "dask"
    with ex:
        assert ex.submit(square, 5).result(timeout=30) == 25
    assert ex.client.status == "closed"
    with pytest.raises(taskkit.ExecutorClosed):
        ex.submit(square, 1)


def test_kill_stops_its_own_cluster_without_waiting(tmp_path: pathlib.Path) -> None:
    gate = str(tmp_path / "gate")
    ex = taskkit.open_executor("dask", max_workers=1, processes=False, local_directory=tmp_path)
    running = ex.submit(wait_for_file, gate)
    queued = ex.submit(square, 2)
    start = time.monotonic()
    try:
        ex.shutdown(wait=True, kill=True)
        assert time.monotonic() - start < 5  # Dask alone would wait 30 s for the thread
        assert running.cancelled()
        assert queued.cancelled()
        assert ex.client.status == "closed"  # type: ignore[attr-defined]
    finally:
        pathlib.Path(gate).touch()  # lets the abandoned worker thread end


def started_then_wait_for_file(started: str, gate: str) -> str:
    pathlib.Path(started).touch()
    return wait_for_file(gate)


def test_shutdown_cancel_pending_cancels_the_queued_tasks(tmp_path: pathlib.Path) -> None:
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    ex = taskkit.open_executor("dask", max_workers=1, processes=False, local_directory=tmp_path)
    try:
        running = ex.submit(started_then_wait_for_file, started, gate)
        queued = [ex.submit(record_call, str(tmp_path / "calls")) for _ in range(3)]
        assert wait_for_file(started) == "opened"  # the one worker thread is busy now
        ex.shutdown(wait=False, cancel_pending=True)
        assert [f.cancelled() for f in queued] == [True, True, True]
        assert not running.cancelled()
    finally:
        pathlib.Path(gate).touch()
    assert running.result(timeout=30) == "opened"
    closer = next((t for t in threading.enumerate() if t.name == "taskkit-dask-close"), None)
    if closer is not None:
        closer.join(timeout=30)
    assert not (tmp_path / "calls").exists()  # none of them ran
    assert ex.statistics().cancelled == 3


def test_shutdown_without_wait_closes_once_the_work_is_done(tmp_path: pathlib.Path) -> None:
    gate = str(tmp_path / "gate")
    ex = taskkit.open_executor("dask", max_workers=1, processes=False, local_directory=tmp_path)
    running = ex.submit(wait_for_file, gate)
    ex.shutdown(wait=False)
    assert ex.client.status == "running"  # type: ignore[attr-defined]
    with pytest.raises(taskkit.ExecutorClosed):
        ex.submit(square, 1)
    pathlib.Path(gate).touch()
    assert running.result(timeout=30) == "opened"
    closer = next(t for t in threading.enumerate() if t.name == "taskkit-dask-close")
    closer.join(timeout=30)
    assert ex.client.status == "closed"  # type: ignore[attr-defined]


def test_own_cluster_shutdown_keeps_what_reads_need(tmp_path: pathlib.Path) -> None:
    ex = taskkit.open_executor("dask", max_workers=1, processes=False, local_directory=tmp_path)
    q, empty, v = ex.queue(), ex.queue(), ex.value({"n": 1})
    lock, event, sem = ex.lock(), ex.event(), ex.semaphore(3)
    q.put("left")
    q.put(("a", 1))
    v.update(lambda d: {"n": d["n"] + 1})
    event.set()
    sem.acquire()
    outcome: list[BaseException] = []

    def blocked_get() -> None:
        try:
            empty.get()  # no timeout: shutdown must end it, whenever it started
        except BaseException as exc:
            outcome.append(exc)

    getter = threading.Thread(target=blocked_get)
    getter.start()
    deadline = time.monotonic() + 10
    while empty.statistics().waiting_getters == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # polling a condition: the usual case is a getter already waiting
    ex.shutdown(wait=True)
    getter.join(10)
    assert [taskkit.QueueClosed] == [type(e) for e in outcome]
    assert q.closed
    assert q.qsize() == 2
    assert ["left", ("a", 1)] == [q.get(), q.get_nowait()]
    with pytest.raises(taskkit.QueueClosed):
        q.get()
    with pytest.raises(taskkit.QueueClosed):
        q.put("late")
    assert q.statistics() == QueueStatistics(0, 0, True, 2, 2, 0, 0)
    assert v.get() == {"n": 2}
    assert event.is_set()
    assert event.wait()
    assert (lock.locked(), sem.value) == (False, 2)
    for write in (lambda: v.set(0), event.clear, lock.acquire, sem.release):
        with pytest.raises(taskkit.ExecutorClosed, match="no longer reaches"):
            write()
    with pytest.raises(taskkit.ExecutorClosed):
        ex.queue()


# ------------------------------------------------- existing scheduler (CLI)


SHIPPED_MODULE = textwrap.dedent(
    """
    def triple(x):
        return 3 * x
    """
)


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and a ``dask worker`` process on 127.0.0.1; yields the address."""
    tmp = tmp_path_factory.mktemp("dask-cli")
    scheduler_file = tmp / "scheduler.json"
    # The workers can import this test module (as a deployed cluster has the
    # project installed), but not modules the tests create elsewhere.
    # The workers import this test module, and the taskkit under test (not another install).
    source = os.path.dirname(os.path.dirname(taskkit.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), source])}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--dashboard-address", "127.0.0.1:0",
         "--scheduler-file", str(scheduler_file)],
        cwd=tmp, **quiet,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert scheduler.poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.05)  # polling a process we do not control
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
             str(scheduler_file), "--nworkers", "1", "--nthreads", "2", "--host", "127.0.0.1",
             "--local-directory", str(tmp), "--no-dashboard"],
            cwd=tmp, **quiet,
        )  # fmt: skip
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=30)
        yield address
    finally:
        pids = _process_tree(worker.pid) if worker is not None else []
        pids += _process_tree(scheduler.pid)
        # The worker first: once the scheduler is gone it would wait to reconnect.
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        assert _gone(pids), "dask CLI processes were left running"


def test_existing_scheduler_by_address(cli_cluster: str) -> None:
    with taskkit.open_executor("dask", address=cli_cluster) as ex:
        assert ex.max_workers == 2  # the cluster's threads
        assert ex.submit(square, 6).result(timeout=30) == 36
        assert [x * x for x in range(50)] == list(ex.map(square, range(50)))
        client = ex.client  # type: ignore[attr-defined]
    assert client.status == "closed"  # ours, so closed...


def test_existing_scheduler_keeps_running_after_shutdown(cli_cluster: str) -> None:
    with distributed.Client(cli_cluster, timeout=30, set_as_default=False) as client:
        with taskkit.open_executor("dask", client=client) as ex:
            assert ex.submit(square, 2).result(timeout=30) == 4
        assert client.status == "running"  # ...but a client we were given is not
        assert client.submit(square, 3, pure=False).result(timeout=30) == 9


def test_address_from_the_environment(cli_cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKKIT_DASK_ADDRESS", cli_cluster)
    with taskkit.open_executor("dask") as ex:
        assert ex.scheduler_address == cli_cluster  # type: ignore[attr-defined]


def test_module_missing_on_workers_is_shipped(
    cli_cluster: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "taskkit_shipped_example.py").write_text(SHIPPED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the workers
    import taskkit_shipped_example as shipped  # type: ignore[import-not-found]

    try:
        with (
            taskkit.open_executor("dask", address=cli_cluster) as ex,
            pytest.raises(ModuleNotFoundError, match="ship_modules"),
        ):
            ex.submit(shipped.triple, 2).result(timeout=30)
        with taskkit.open_executor("dask", address=cli_cluster, ship_modules=[shipped]) as ex:
            assert ex.submit(shipped.triple, 2).result(timeout=30) == 6
            assert list(ex.map(shipped.triple, range(3))) == [0, 3, 6]
    finally:
        import cloudpickle

        cloudpickle.unregister_pickle_by_value(shipped)
        sys.modules.pop("taskkit_shipped_example", None)
