"""Dask backend against Dask used by hand, on the same 2-worker LocalCluster, in the same run.

Targets:

* ``map`` of 10,000 tiny calls >= 20x faster than one ``client.submit`` per
  call (then ``client.gather``): Dask spends about 2 ms on each task, and
  taskkit's ``map`` sends the calls in chunks;
* ``open_executor("dask")`` to the first result <= 1.2x creating
  ``LocalCluster`` + ``Client`` by hand and getting a first result from it.

Every cluster is ``n_workers=2, threads_per_worker=1, processes=True`` on
127.0.0.1 with a random dashboard port.
"""

from __future__ import annotations

import tempfile
from typing import Any

from ._util import Row, median_time, print_table

N_CALLS = 10_000


def square(x: int) -> int:
    return x * x


def _cluster_options(directory: str) -> dict[str, Any]:
    return {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        "local_directory": directory,
    }


def main(repeats: int) -> None:
    try:
        import distributed  # noqa: F401 - only to learn whether the extra is installed
    except ImportError:
        print('\n## dask: distributed is not installed (pip install "taskkit[dask]"); skipped')
        return
    repeats = max(3, repeats)
    _startup_section(repeats)  # first: nothing left over from the other section
    _map_section(repeats)


def _map_section(repeats: int) -> None:
    import distributed

    import taskkit

    expected = sum(x * x for x in range(N_CALLS))
    with tempfile.TemporaryDirectory(prefix="taskkit-bench-dask-") as directory:
        cluster = distributed.LocalCluster(**_cluster_options(directory))
        client = distributed.Client(cluster, set_as_default=False)
        ex = taskkit.open_executor("dask", client=client)
        try:

            def by_hand() -> None:
                futures = [client.submit(square, x, pure=False) for x in range(N_CALLS)]
                assert sum(client.gather(futures)) == expected

            def by_client_map() -> None:
                futures = client.map(square, range(N_CALLS), pure=False)
                assert sum(client.gather(futures)) == expected

            def by_taskkit() -> None:
                assert sum(ex.map(square, range(N_CALLS))) == expected

            rows = [
                Row("client.submit per call + gather", median_time(by_hand, repeats, warmup=0)),
                Row(
                    "client.map + gather",
                    median_time(by_client_map, repeats, warmup=0),
                    "client.submit per call + gather",
                ),
                Row(
                    "taskkit dask map",
                    median_time(by_taskkit, repeats),
                    "client.submit per call + gather",
                    "<= 0.05x (20x faster)",
                ),
            ]
        finally:
            ex.shutdown()
            client.close()
            cluster.close()
    print_table(f"dask: {N_CALLS:,} calls of x * x on a 2-worker LocalCluster", rows)


def _startup_section(repeats: int) -> None:
    import distributed

    import taskkit

    def start_by_hand() -> None:
        with tempfile.TemporaryDirectory(prefix="taskkit-bench-dask-") as directory:
            cluster = distributed.LocalCluster(**_cluster_options(directory))
            client = distributed.Client(cluster, set_as_default=False)
            assert client.submit(square, 3, pure=False).result() == 9
            _stop_clock()
            client.close()
            cluster.close()

    def start_taskkit() -> None:
        ex = taskkit.open_executor("dask", max_workers=2)
        assert ex.submit(square, 3).result() == 9
        _stop_clock()
        ex.shutdown()

    # Start-up is noisy (it spawns processes): the two are run alternately,
    # so both see the same load, and more often than the other measurements.
    hand, ours = _alternate(start_by_hand, start_taskkit, max(8, 2 * repeats))
    print_table(
        "dask: start a 2-worker cluster and get a first result (shutdown not timed)",
        [
            Row("LocalCluster + Client by hand", hand),
            Row('open_executor("dask")', ours, "LocalCluster + Client by hand", "<= 1.2x"),
        ],
    )


# Start-up is timed up to the first result: closing the cluster is not part of it.
_stops: list[float] = []


def _stop_clock() -> None:
    import time

    _stops.append(time.perf_counter())


def _alternate(first: Any, second: Any, repeats: int) -> tuple[float, float]:
    import statistics
    import time

    times: tuple[list[float], list[float]] = ([], [])
    pairs = [(first, times[0]), (second, times[1])]
    for i in range(repeats):
        # ABBA order: a drift in the machine's load hits both sides alike.
        for fn, record in pairs if i % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            fn()
            record.append(_stops.pop() - start)
    return statistics.median(times[0]), statistics.median(times[1])
