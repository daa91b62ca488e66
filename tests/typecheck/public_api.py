"""What a user's code sees under ``mypy --strict``; checked by tests/test_docs_examples.py.

Not run: each ``assert_type`` is a claim about a static type, and each assignment to a
protocol-typed name a claim that an implementation provides that protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import Any

from typing_extensions import assert_type

import taskkit
from taskkit._backends.dask import _primitives as dask_primitives
from taskkit._backends.process import _primitives as _process
from taskkit._primitives import _local
from taskkit._primitives._common import (
    EventStatistics,
    LockStatistics,
    QueueStatistics,
    SemaphoreStatistics,
    ValueStatistics,
)
from taskkit.testing import Counterexample, Scheduler, replay


def square(x: int) -> int:
    return x * x


async def asquare(x: int) -> int:
    return x * x


def backends() -> None:
    assert_type(taskkit.open_executor(), taskkit.ThreadExecutor)
    assert_type(taskkit.open_executor("thread"), taskkit.ThreadExecutor)
    assert_type(taskkit.open_executor("process"), taskkit.ProcessExecutor)
    assert_type(taskkit.open_executor("asyncio"), taskkit.AsyncioExecutor)
    assert_type(taskkit.open_executor("coroutine"), taskkit.CoroutineExecutor)
    assert_type(taskkit.open_executor("serial"), taskkit.SerialExecutor)
    assert_type(taskkit.open_executor("dask"), taskkit.DaskExecutor)
    assert_type(taskkit.open_executor(workload="io"), taskkit.ThreadExecutor)
    assert_type(taskkit.open_executor(workload="cpu"), taskkit.ProcessExecutor)
    assert_type(taskkit.open_executor(workload="async"), taskkit.AsyncioExecutor)
    assert_type(taskkit.open_executor(workload="lightweight"), taskkit.CoroutineExecutor)
    assert_type(taskkit.open_executor(workload="debug"), taskkit.SerialExecutor)
    assert_type(taskkit.open_executor(workload="cluster"), taskkit.DaskExecutor)
    assert_type(
        taskkit.open_executor("process", workload="cpu", max_workers=2), taskkit.ProcessExecutor
    )
    name: taskkit.BackendName = "process"
    assert_type(taskkit.open_executor(name), taskkit.Executor)
    with taskkit.open_executor("coroutine") as ex:
        assert_type(ex, taskkit.CoroutineExecutor)
        assert_type(ex.time(), float)
    with taskkit.open_executor("asyncio") as aex:
        aex.loop.call_soon(print)


def futures(ex: taskkit.Executor) -> None:
    fut = ex.submit(square, 3)
    assert_type(fut, taskkit.Future[int])
    assert_type(fut.result(), int)
    assert_type(ex.submit(asquare, 3), taskkit.Future[int])
    assert_type(ex.options(timeout=1.0, retries=2).submit(square, 3), taskkit.Future[int])
    assert_type(ex.options(name="a").options(retries=1).submit(asquare, 3), taskkit.Future[int])
    by_future = {ex.submit(square, i): i for i in range(3)}
    for done in taskkit.as_completed(by_future):
        assert_type(done, taskkit.Future[int])
        assert_type(by_future[done], int)
    plain: list[concurrent.futures.Future[str]] = []
    for other in taskkit.as_completed(plain, timeout=1.0):
        assert_type(other, concurrent.futures.Future[str])
    stats = ex.statistics()
    assert_type(stats, taskkit.Statistics)
    assert_type(stats.submitted, int)
    assert_type(stats.backend, str)


async def awaiting(ex: taskkit.Executor) -> None:
    assert_type(await ex.submit(square, 3), int)
    assert_type(await ex.submit(asquare, 3), int)


def generate(x: int) -> Generator[None, None, str]:
    yield
    return str(x)


async def spawning(ex: taskkit.CoroutineExecutor) -> None:
    handles = [ex.spawn(asquare, i) for i in range(3)]
    assert_type([await handle for handle in handles], list[int])
    assert_type(await ex.spawn(generate, 1), str)
    assert_type(ex.spawn(asquare, 1).result(), int)
    ex.spawn(asquare, "one")  # type: ignore[call-overload]


def generator_task() -> Generator[Any, None, int]:
    yield from taskkit.sleep(0.1)
    yield from taskkit.checkpoint()
    return 1


async def async_task() -> None:
    await taskkit.sleep(0.1)
    await taskkit.checkpoint()
    await asyncio.gather(taskkit.sleep(0), taskkit.checkpoint())


def wrong_calls(ex: taskkit.Executor) -> None:
    ex.submit(square, "three")  # type: ignore[call-overload]
    ex.options(timeout=1.0).submit(square, "three")  # type: ignore[call-overload]
    taskkit.open_executor("threads")  # type: ignore[call-overload]


def primitives(ex: taskkit.Executor) -> None:
    total = ex.value(0)
    assert_type(total, taskkit.Value[int])
    assert_type(total.update(lambda n: n + 1), int)
    maybe: taskkit.Value[int | None] = ex.value(None)
    maybe.set(3)
    q: taskkit.Queue[int] = ex.queue()
    assert_type(q.get(), int)
    q.put("no")  # type: ignore[arg-type]
    assert_type(ex.queue(), taskkit.Queue[Any])
    assert_type(q.statistics(), QueueStatistics)
    lock = ex.lock()
    with lock as acquired:
        assert_type(acquired, bool)
    assert_type(lock.statistics(), LockStatistics)
    assert_type(ex.event().statistics(), EventStatistics)
    assert_type(ex.semaphore(2).statistics(), SemaphoreStatistics)
    assert_type(total.statistics(), ValueStatistics)
    with taskkit.open_executor("dask") as dex:
        assert_type(dex.value(0), taskkit.Value[int])
        assert_type(dex.queue(), taskkit.Queue[Any])


def implementations() -> None:
    # Every backend's primitives provide the protocols users annotate with.
    queues: list[taskkit.Queue[int]] = [
        _local.Queue[int](),
        _local.SerialQueue[int](),
        _process.Queue[int](),
        dask_primitives.DaskQueue(None),
    ]
    locks: list[taskkit.Lock] = [
        _local.make_lock(_local.Lock),
        _local.make_lock(_local.ThreadLock),
        _local.make_lock(_local.SerialLock),
        _process.Lock(),
        dask_primitives.DaskLock(None),
    ]
    events: list[taskkit.Event] = [
        _local.Event(),
        _local.SerialEvent(),
        _process.Event(),
        dask_primitives.DaskEvent(None),
    ]
    semaphores: list[taskkit.Semaphore] = [
        _local.Semaphore(1),
        _local.SerialSemaphore(1),
        _process.Semaphore(1),
        dask_primitives.DaskSemaphore(None, 1),
    ]
    values: list[taskkit.Value[int]] = [
        _local.Value(0),
        _process.Value(0),
        dask_primitives.DaskValue(None, 0),
    ]
    del queues, locks, events, semaphores, values


def race_testing(cx: Counterexample) -> None:
    assert_type(replay("T0@1>T1"), Scheduler)
    replay("T0@1>T1").run([square], args=(1,))
    assert_type(replay(cx), None)
