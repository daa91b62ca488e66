"""``python -m taskkit tour``: the tutorial's scenarios on every backend, then measured advice.

Each area of taskkit contributes a section as a module ``taskkit._tour_<area>``
with a ``tour_section()`` function; the sections run in the tutorial's order,
and a section whose module is absent is left out.  The tour ends with a table
of timings per workload and backend, measured here, and the backend it
recommends for each workload.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import taskkit

from ._backends import backend_class

__all__ = ["main"]

# The tutorial's order: subprocesses, the process pool, shared state, threads
# and the GIL, the data race, coroutines and async I/O; then scaling out.
_SECTIONS = ("pipeline", "process", "primitives", "threads", "testing", "async", "dask")


def _heading(title: str) -> None:
    print(f"\n== {title} ==")


def _threads_section() -> None:
    _heading("Threads and the GIL (tutorial: threading)")
    names: list[str] = []

    def loop() -> str:
        names.append(threading.current_thread().name)
        return threading.current_thread().name

    with taskkit.open_executor("thread", max_workers=1) as ex:
        name = ex.submit(loop).result()
    print(f"a task ran on thread {name!r}; the main thread is {threading.main_thread().name!r}")

    def count(n: int) -> int:
        total = 0
        for i in range(n):
            total += i
        return total

    work = [300_000] * 4
    start = time.perf_counter()
    for n in work:
        count(n)
    alone = time.perf_counter() - start
    with taskkit.open_executor("thread", max_workers=4) as ex:
        start = time.perf_counter()
        list(ex.map(count, work, chunksize=1))
        threaded = time.perf_counter() - start
    print(
        f"pure-Python work: {alone:.2f} s in one thread, {threaded:.2f} s on 4 threads "
        "-- the GIL lets one thread compute at a time"
    )
    with taskkit.open_executor("thread", max_workers=8) as ex:
        start = time.perf_counter()
        list(ex.map(time.sleep, [0.1] * 8, chunksize=1))
        waited = time.perf_counter() - start
    print(f"waiting: 8 sleeps of 0.1 s took {waited:.2f} s on 8 threads -- threads overlap I/O")


def _run_section(name: str) -> None:
    if name == "threads":
        _threads_section()
        return
    try:
        module = importlib.import_module(f"taskkit._tour_{name}")
    except ImportError:
        return
    try:
        module.tour_section()
    except taskkit.BackendUnavailable as exc:
        print(f"(skipped: {exc})")


# ------------------------------------------------------------ the timing table


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


def _timing_table() -> None:
    _heading("Which backend for which workload, measured on this machine")
    backends = []
    for name in ("serial", "thread", "process", "asyncio", "coroutine"):
        try:
            backend_class(name)
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


def main() -> None:
    """Run the tour."""
    print("taskkit tour: the tutorial's scenarios, each on the backend that fits it.")
    for name in _SECTIONS:
        _run_section(name)
    _timing_table()
