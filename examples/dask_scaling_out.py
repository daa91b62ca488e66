"""The same program on the process backend and on a Dask cluster.

Run as ``python examples/dask_scaling_out.py [tcp://scheduler:8786]``: without an
address the second run starts a local Dask cluster; with one it uses that cluster.
"""

from __future__ import annotations

import sys

import taskkit


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def report(progress: taskkit.Value[int], n: int) -> int:
    return progress.update(lambda done: done + n)


def program(ex: taskkit.Executor) -> tuple[int, int]:
    progress = ex.value(0)
    longest = max(ex.map(collatz_steps, range(1, 100_000)))  # sent to workers in chunks
    for f in [ex.submit(report, progress, 1) for _ in range(10)]:
        f.result()
    return longest, progress.get()


if __name__ == "__main__":
    with taskkit.open_executor("process", max_workers=2) as ex:
        print("process:", program(ex))
    options = {"address": sys.argv[1]} if len(sys.argv) > 1 else {"max_workers": 2}
    with taskkit.open_executor("dask", **options) as cluster:
        print("dask:   ", program(cluster))
