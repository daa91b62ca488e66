"""Each fast path against its plain twin (see ``taskkit._core._fastpaths``), in the same run.

The fast paths are chosen once, when taskkit is imported, so each contender runs in
a child interpreter with ``TASKKIT_FAST_PATHS`` set: the fast one with every fast
path on, the plain one with every fast path on but the one measured.  Children
alternate, repeat by repeat, and the table shows medians.  A fast path is worth its
code only while its row stays well under 1.0x its plain twin.

* ``process_caller_reads``: ``submit(square, i).result()`` round trips on a process
  executor with two workers;
* ``asyncio_inline_submit``: 100,000 no-op ``async def`` tasks submitted and awaited
  from code on the executor's own loop.
"""

from __future__ import annotations

import asyncio
import os
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


def _process_caller_reads() -> float:
    import taskkit

    with taskkit.open_executor("process", max_workers=2) as ex:
        for i in range(200):  # warm-up: workers started
            ex.submit(square, i).result()
        start = time.perf_counter()
        for i in range(ROUND_TRIPS):
            ex.submit(square, i).result()
        return (time.perf_counter() - start) / ROUND_TRIPS


def _asyncio_inline_submit() -> float:
    import taskkit

    async def run() -> float:
        async with taskkit.open_executor("asyncio") as ex:  # opened inside the loop
            start = time.perf_counter()
            futures = [ex.submit(noop) for _ in range(SUBMITS)]
            for future in futures:
                await future
            return (time.perf_counter() - start) / SUBMITS

    return asyncio.run(run())


_WORKLOADS = {
    "process_caller_reads": (_process_caller_reads, "process submit().result() round trip"),
    "asyncio_inline_submit": (_asyncio_inline_submit, "asyncio submit + await, on its loop"),
}


def _child(name: str, fast: bool) -> float:
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
    return float(out.split()[-1])


def main(repeats: int) -> None:
    rows: list[Row] = []
    for name, (_, label) in _WORKLOADS.items():
        fast: list[float] = []
        plain: list[float] = []
        for _ in range(max(repeats, 3)):
            fast.append(_child(name, fast=True))
            plain.append(_child(name, fast=False))
        base = f"{label}, plain"
        rows.append(Row(base, statistics.median(plain)))
        rows.append(Row(f"{label}, fast ({name})", statistics.median(fast), base, "< 1.0x"))
    print_table("fast paths against their plain twins (per call)", rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(_WORKLOADS[sys.argv[2]][0]())
    else:
        main(5)
