"""The tour's last part: which backend for which workload, measured on this machine."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import taskkit

__all__ = ["tour_section"]


def _cpu_task(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _io_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def _async_task(seconds: float) -> float:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        await taskkit.sleep(seconds)  # on the coroutine scheduler
    else:
        await asyncio.sleep(seconds)
    return seconds


def _tiny_task(x: int) -> int:
    return x * x


_WORKLOADS: dict[str, tuple[str, Callable[..., Any], list[Any]]] = {
    "cpu": ("8 pure-Python loops", _cpu_task, [400_000] * 8),
    "io": ("64 blocking 20 ms waits", _io_task, [0.02] * 64),
    "async": ("500 async 20 ms waits", _async_task, [0.02] * 500),
    "tiny": ("100,000 tiny calls", _tiny_task, list(range(100_000))),
}

# Pairs left out: a blocking call stalls an event loop, and the serial backend
# runs each coroutine alone, one after another.
_UNSUITED = {
    ("coroutine", "io"),
    ("asyncio", "io"),
    ("coroutine", "cpu"),
    ("asyncio", "cpu"),
    ("serial", "async"),
    ("process", "async"),
}


def _time_workload(backend: str, workload: str) -> float | None:
    _, fn, args = _WORKLOADS[workload]
    options: dict[str, Any] = {}
    if workload in {"io", "async"} and backend in {"thread"}:
        options["max_workers"] = 64
    try:
        with taskkit.open_executor(backend, **options) as ex:  # type: ignore[call-overload]
            ex.submit(_tiny_task, 1).result()  # start-up is not the workload
            start = time.perf_counter()
            list(ex.map(fn, args, ordered=False))
            return time.perf_counter() - start
    except taskkit.BackendUnavailable:
        return None


def tour_section() -> None:
    print("\n== Which backend for which workload, measured on this machine ==")
    backends = []
    for name in ("serial", "thread", "process", "asyncio", "coroutine"):
        try:
            taskkit.open_executor(name).shutdown()
        except taskkit.BackendUnavailable:
            continue
        backends.append(name)
    print(f"({os.cpu_count()} CPUs; dask is left out: a cluster's start-up dominates here)")
    print("(each cell: the median of two runs, start-up excluded)")
    header = f"{'workload':<26}" + "".join(f"{b:>11}" for b in backends) + "   recommended"
    print(header)
    for workload, (label, _, _) in _WORKLOADS.items():
        cells, times = [], {}
        for backend in backends:
            if (backend, workload) in _UNSUITED:
                cells.append(f"{'-':>11}")
                continue
            runs = [_time_workload(backend, workload) for _ in range(2)]
            measured = [run for run in runs if run is not None]
            if not measured:
                cells.append(f"{'n/a':>11}")
                continue
            times[backend] = statistics.median(measured)
            cells.append(f"{times[backend]:>10.3f}s")
        best = min(times, key=times.__getitem__) if times else "-"
        print(f"{workload + ': ' + label:<26}" + "".join(cells) + f"   {best}")
    print(
        "('-': left out: a blocking call would stall that backend's event loop, or the\n"
        " backend would run the coroutines one after another; recommended: the fastest here)"
    )
