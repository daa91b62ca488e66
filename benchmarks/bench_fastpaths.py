"""Each fast path against its plain twin (see ``taskkit._core._fastpaths``), in the same run.

The fast paths are chosen once, when taskkit is imported, so each contender runs in
a child interpreter with ``TASKKIT_FAST_PATHS`` set: the fast one with every fast
path on, the plain one with every fast path on but the one measured.  Children
alternate, repeat by repeat, and the table shows medians.  A fast path is worth its
code only while its row stays well under 1.0x its plain twin.

Wall time per call swings by several times from one child to the next on a machine
whose cores are busy elsewhere, so each row's note also gives what load does not
change much: the parent's CPU time and its context switches (all its threads, the
voluntary ones: each is a thread going to sleep to be woken) per call.

* ``process_caller_reads``: ``submit(square, i).result()`` round trips on a process
  executor with two workers, each timed: the row gives the median round trip, which a
  few trips stalled for milliseconds by other processes on the machine do not move
  (their mean is mostly those stalls);
* ``asyncio_inline_submit``: 100,000 no-op ``async def`` tasks submitted and awaited
  from code on the executor's own loop.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks._util import Row, print_table

ROUND_TRIPS = 2_000
SUBMITS = 100_000


def square(x: int) -> int:
    return x * x


async def noop() -> None:
    pass


class _Meter:
    """Wall time, CPU time and voluntary context switches of this process over ``calls``."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.start = time.perf_counter()
        self.cpu = time.process_time()
        self.switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw

    def per_call(self) -> tuple[float, float, float]:
        wall = time.perf_counter() - self.start
        cpu = time.process_time() - self.cpu
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - self.switches
        return wall / self.calls, cpu / self.calls, switches / self.calls


def _process_caller_reads() -> tuple[float, float, float]:
    import taskkit

    with taskkit.open_executor("process", max_workers=2) as ex:
        for i in range(200):  # warm-up: workers started
            ex.submit(square, i).result()
        trips = []
        clock = time.perf_counter
        meter = _Meter(ROUND_TRIPS)
        for i in range(ROUND_TRIPS):
            start = clock()
            ex.submit(square, i).result()
            trips.append(clock() - start)
        _, cpu, switches = meter.per_call()
        return statistics.median(trips), cpu, switches


def _asyncio_inline_submit() -> tuple[float, float, float]:
    import taskkit

    async def run() -> tuple[float, float, float]:
        async with taskkit.open_executor("asyncio") as ex:  # opened inside the loop
            meter = _Meter(SUBMITS)
            futures = [ex.submit(noop) for _ in range(SUBMITS)]
            for future in futures:
                await future
            return meter.per_call()

    return asyncio.run(run())


_WORKLOADS = {
    "process_caller_reads": (_process_caller_reads, "process submit().result() round trip"),
    "asyncio_inline_submit": (_asyncio_inline_submit, "asyncio submit + await, on its loop"),
}


def _child(name: str, fast: bool) -> tuple[float, float, float]:
    from taskkit._core._fastpaths import NAMES

    setting = ",".join(NAMES) if fast else ",".join(n for n in NAMES if n != name) or "0"
    env = {**os.environ, "TASKKIT_FAST_PATHS": setting}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_fastpaths", "--child", name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall, cpu, switches = (float(word) for word in out.split()[-3:])
    return wall, cpu, switches


def _medians(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    wall, cpu, switches = (statistics.median(column) for column in zip(*runs, strict=True))
    return wall, cpu, switches


def _note(cpu: float, switches: float) -> str:
    return f"CPU {cpu * 1e6:.1f} us, {switches:.2f} context switches per call"


def main(repeats: int) -> None:
    rows: list[Row] = []
    for name, (_, label) in _WORKLOADS.items():
        fast: list[tuple[float, float, float]] = []
        plain: list[tuple[float, float, float]] = []
        for _ in range(max(repeats, 5)):
            fast.append(_child(name, fast=True))
            plain.append(_child(name, fast=False))
        base = f"{label}, plain"
        wall, cpu, switches = _medians(plain)
        rows.append(Row(base, wall, note=_note(cpu, switches)))
        wall, cpu, switches = _medians(fast)
        rows.append(Row(f"{label}, fast ({name})", wall, base, "< 1.0x", _note(cpu, switches)))
    print_table("fast paths against their plain twins (per call)", rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(*_WORKLOADS[sys.argv[2]][0]())
    else:
        main(5)
