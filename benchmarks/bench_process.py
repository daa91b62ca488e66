"""The process backend against ProcessPoolExecutor, multiprocessing.Pool, loky, pebble and mpire.

Every figure is a median over ``repeats`` runs, taken in the same run as its
peers (the machine is shared, so only same-run ratios mean anything):

* map: 200,000 calls of ``x * x`` with default options (target: <= 1.0x
  ``multiprocessing.Pool.map`` with its default chunking, while staying lazy;
  <= 0.25x ``ProcessPoolExecutor.map(chunksize=1000)``);
* round trip: sequential ``submit(f, i).result()`` (target: <= 2.0x a raw
  ``multiprocessing.Pipe`` ping-pong between two processes);
* CPU speed-up: 8 tasks of 0.25 s of pure-Python work on 2 workers (target: >= 1.9x);
* start-up: executor creation to first result (target: <= 1.2x
  ProcessPoolExecutor with the same start method);
* big arguments: 50 tasks each given 16 MiB as ``bytes`` and as a NumPy array
  (target: at least as fast as ProcessPoolExecutor).

Every pool has 2 workers.  Peers that are not installed are skipped with a note.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from typing import Any

import taskkit
from benchmarks._util import Row, interleaved, median_time, print_table

WORKERS = 2
N_MAP = 200_000
N_TRIPS = 2000
BIG = 16 * 2**20
N_BIG = 50


def square(x: int) -> int:
    return x * x


def nbytes(data: Any) -> int:
    return len(data) if isinstance(data, bytes) else int(data.nbytes)


def burn(loops: int) -> int:
    """Pure-Python work: ``_calibrate`` finds how many loops take 0.25 s."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def _calibrate(seconds: float) -> int:
    loops = 1_000_000
    start = time.perf_counter()
    burn(loops)
    return int(loops * seconds / (time.perf_counter() - start))


def _burn_all(loops: list[int]) -> None:
    for n in loops:
        burn(n)


def _echo(conn: Any) -> None:
    while True:
        item = conn.recv()
        if item is None:
            return
        conn.send(item)


@contextlib.contextmanager
def _peer(name: str, notes: list[str]) -> Iterator[None]:
    try:
        yield
    except ImportError:
        notes.append(f"{name} is not installed: skipped")


# ------------------------------------------------------------------- map


def bench_map(repeats: int) -> list[Row]:
    rows: list[Row] = []
    notes: list[str] = []
    data = range(N_MAP)
    with taskkit.open_executor("process", max_workers=WORKERS) as ex:
        rows.append(
            Row(
                "taskkit map (lazy, auto chunks)",
                median_time(lambda: sum(ex.map(square, data)), repeats),
                "mp.Pool.map",
                "<= 1.0x",
            )
        )
    with multiprocessing.get_context("forkserver").Pool(WORKERS) as pool:
        rows.append(
            Row(
                "mp.Pool.map",
                median_time(lambda: sum(pool.map(square, data)), repeats),
                note="eager: reads the whole input first; default chunking",
            )
        )
    with concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=multiprocessing.get_context("forkserver")
    ) as ppe:
        rows.append(
            Row(
                "PPE.map(chunksize=1000)",
                median_time(lambda: sum(ppe.map(square, data, chunksize=1000)), repeats),
            )
        )
    rows[0] = Row(
        rows[0].name,
        rows[0].seconds,
        "mp.Pool.map",
        "<= 1.0x",
        f"{rows[0].seconds / rows[2].seconds:.2f}x PPE (target <= 0.25x)",
    )
    with _peer("loky", notes):
        import loky

        executor = loky.get_reusable_executor(WORKERS)
        rows.append(
            Row(
                "loky map(chunksize=1000)",
                median_time(lambda: sum(executor.map(square, data, chunksize=1000)), repeats),
                "mp.Pool.map",
            )
        )
    with _peer("pebble", notes):
        import pebble

        with pebble.ProcessPool(WORKERS) as ppool:
            rows.append(
                Row(
                    "pebble map(chunksize=1000)",
                    median_time(
                        lambda: sum(ppool.map(square, data, chunksize=1000).result()), repeats
                    ),
                    "mp.Pool.map",
                )
            )
    with _peer("mpire", notes):
        import mpire

        with mpire.WorkerPool(WORKERS, keep_alive=True) as wpool:
            rows.append(
                Row(
                    "mpire map (auto chunks)",
                    median_time(lambda: sum(wpool.map(square, data, progress_bar=False)), repeats),
                    "mp.Pool.map",
                )
            )
    for note in notes:
        print("  note:", note)
    return rows


# ------------------------------------------------------------ round trip


def _per_trip(run: Callable[[int], object]) -> Callable[[], None]:
    def go() -> None:
        for i in range(N_TRIPS):
            run(i)

    return go


def bench_round_trip(repeats: int) -> list[Row]:
    rows: list[Row] = []
    notes: list[str] = []
    parent, child = multiprocessing.Pipe()
    echo = multiprocessing.get_context("forkserver").Process(target=_echo, args=(child,))
    echo.start()

    def ping(i: int) -> None:
        parent.send(i)
        parent.recv()

    def measure(name: str, run: Callable[[int], object], **kw: Any) -> None:
        seconds = median_time(_per_trip(run), repeats) / N_TRIPS
        rows.append(Row(name, seconds, **kw))

    try:
        with taskkit.open_executor("process", max_workers=WORKERS) as ex:
            # The target pair is timed in alternation, repeat by repeat, so that a
            # burst of load from elsewhere on a shared machine lands on both.
            pipe, ours = "raw Pipe ping-pong", "taskkit submit().result()"
            medians = interleaved(
                {
                    pipe: _per_trip(ping),
                    ours: _per_trip(lambda i: ex.submit(square, i).result()),
                },
                repeats,
            )
            rows.append(Row(pipe, medians[pipe] / N_TRIPS))
            rows.append(Row(ours, medians[ours] / N_TRIPS, baseline=pipe, target="<= 2.0x"))
        with concurrent.futures.ProcessPoolExecutor(
            WORKERS, mp_context=multiprocessing.get_context("forkserver")
        ) as ppe:
            measure(
                "PPE submit().result()",
                lambda i: ppe.submit(square, i).result(),
                baseline="raw Pipe ping-pong",
            )
        with multiprocessing.get_context("forkserver").Pool(WORKERS) as pool:
            measure(
                "mp.Pool.apply", lambda i: pool.apply(square, (i,)), baseline="raw Pipe ping-pong"
            )
        with _peer("pebble", notes):
            import pebble

            with pebble.ProcessPool(WORKERS) as ppool:
                measure(
                    "pebble schedule().result()",
                    lambda i: ppool.schedule(square, (i,)).result(),
                    baseline="raw Pipe ping-pong",
                )
        with _peer("loky", notes):
            import loky

            executor = loky.get_reusable_executor(WORKERS)
            measure(
                "loky submit().result()",
                lambda i: executor.submit(square, i).result(),
                baseline="raw Pipe ping-pong",
            )
    finally:
        parent.send(None)
        echo.join()
    for note in notes:
        print("  note:", note)
    return rows


# ------------------------------------------------------------- speed-up


def bench_speedup(repeats: int) -> list[Row]:
    work = [_calibrate(0.25)] * 8
    rows = [Row("serial, 8 x 0.25 s", median_time(lambda: [burn(s) for s in work], repeats))]

    def bare() -> None:
        # The machine's ceiling: two bare processes, four tasks each, no pool.
        context = multiprocessing.get_context("fork")
        procs = [context.Process(target=_burn_all, args=(work[:4],)) for _ in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()

    rows.append(Row("2 bare processes (ceiling)", median_time(bare, repeats), "serial, 8 x 0.25 s"))
    with taskkit.open_executor("process", max_workers=WORKERS) as ex:
        ex.submit(square, 1).result()
        rows.append(
            Row(
                "taskkit, 2 workers",
                median_time(lambda: list(ex.map(burn, work)), repeats),
                "serial, 8 x 0.25 s",
                ">= 1.9x speed-up",
            )
        )
    with concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=multiprocessing.get_context("forkserver")
    ) as ppe:
        rows.append(
            Row(
                "PPE, 2 workers",
                median_time(lambda: list(ppe.map(burn, work)), repeats),
                "serial, 8 x 0.25 s",
            )
        )
    serial = rows[0].seconds
    return [
        Row(
            r.name,
            r.seconds,
            r.baseline,
            r.target,
            f"speed-up {serial / r.seconds:.2f}x" if r.baseline else "",
        )
        for r in rows
    ]


# -------------------------------------------------------------- start-up


def bench_startup(repeats: int) -> list[Row]:
    rows = []
    for method in ("forkserver", "fork", "spawn"):

        def tk(method: str = method) -> None:
            with taskkit.open_executor("process", max_workers=WORKERS, start_method=method) as ex:
                ex.submit(square, 2).result()

        def ppe(method: str = method) -> None:
            with concurrent.futures.ProcessPoolExecutor(
                WORKERS, mp_context=multiprocessing.get_context(method)
            ) as pool:
                pool.submit(square, 2).result()

        rows.append(Row(f"PPE ({method})", median_time(ppe, repeats)))
        rows.append(
            Row(f"taskkit ({method})", median_time(tk, repeats), f"PPE ({method})", "<= 1.2x")
        )
    return rows


# ------------------------------------------------------------ big arguments


def bench_big(repeats: int) -> list[Row]:
    rows: list[Row] = []
    payloads: list[tuple[str, Any]] = [("bytes", b"\1" * BIG)]
    try:
        import numpy

        payloads.append(("ndarray", numpy.ones(BIG // 8)))
    except ImportError:
        print("  note: numpy is not installed: the ndarray case is skipped")
    with (
        taskkit.open_executor("process", max_workers=WORKERS) as ex,
        concurrent.futures.ProcessPoolExecutor(
            WORKERS, mp_context=multiprocessing.get_context("forkserver")
        ) as ppe,
    ):
        for kind, data in payloads:

            def run(pool: Any, data: Any = data) -> None:
                futures = [pool.submit(nbytes, data) for _ in range(N_BIG)]
                assert all(f.result() == BIG for f in futures)

            base = f"PPE, 50 x 16 MiB {kind}"
            rows.append(
                Row(
                    base,
                    median_time(lambda: run(ppe), repeats),
                    note=f"{N_BIG * BIG / 2**30 / 1:.2f} GiB",
                )
            )
            seconds = median_time(lambda: run(ex), repeats)
            rows.append(
                Row(
                    f"taskkit, 50 x 16 MiB {kind}",
                    seconds,
                    base,
                    "<= 1.0x",
                    f"{N_BIG * BIG / seconds / 2**30:.2f} GiB/s",
                )
            )
    return rows


def main(repeats: int) -> None:
    print_table("process: map of 200,000 x*x calls, 2 workers", bench_map(repeats))
    print_table("process: sequential round trip (per call)", bench_round_trip(repeats))
    print_table("process: 8 x 0.25 s of pure Python on 2 workers", bench_speedup(repeats))
    print_table("process: executor creation to first result", bench_startup(repeats))
    print_table("process: 50 tasks given 16 MiB each", bench_big(repeats))


if __name__ == "__main__":
    main(3)
