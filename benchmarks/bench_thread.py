"""Thread backend against concurrent.futures.ThreadPoolExecutor, in the same run.

Targets: submit().result() round trip <= 1.0x ThreadPoolExecutor's; map of
200,000 tiny calls <= 0.5x ThreadPoolExecutor.map; map(time.sleep, [0.005] * 2000)
on 200 workers <= 1.3x the ideal 0.05 s.
"""

from __future__ import annotations

import concurrent.futures
import time

import taskkit

from ._util import Row, interleaved, median_time, print_table


def square(x: int) -> int:
    return x * x


def _round_trips(ex: concurrent.futures.Executor, n: int) -> None:
    submit = ex.submit
    for i in range(n):
        submit(square, i).result()


def main(repeats: int) -> None:
    n_trips = 5_000
    with (
        taskkit.open_executor("thread", max_workers=4) as tk,
        concurrent.futures.ThreadPoolExecutor(max_workers=4) as tpe,
    ):
        # Alternate the two, repeat by repeat: a burst of load from elsewhere on a
        # shared machine then lands on both rather than on one.
        base, ours = "ThreadPoolExecutor submit().result()", "taskkit thread submit().result()"
        medians = interleaved(
            {base: lambda: _round_trips(tpe, n_trips), ours: lambda: _round_trips(tk, n_trips)},
            max(repeats, 9),
        )
        rows = [
            Row(base, medians[base] / n_trips),
            Row(ours, medians[ours] / n_trips, baseline=base, target="<= 1.0x"),
        ]
    print_table("thread: one submit().result() round trip", rows)

    xs = range(200_000)
    with (
        taskkit.open_executor("thread") as tk,
        concurrent.futures.ThreadPoolExecutor() as tpe,
    ):
        rows = [
            Row("serial list comprehension", median_time(lambda: [square(x) for x in xs], repeats)),
            Row(
                "ThreadPoolExecutor.map",
                median_time(lambda: list(tpe.map(square, xs)), max(1, repeats // 2)),
            ),
            Row(
                "taskkit thread map",
                median_time(lambda: list(tk.map(square, xs)), repeats),
                baseline="ThreadPoolExecutor.map",
                target="<= 0.5x",
            ),
        ]
    print_table("thread: map of 200,000 calls of x * x", rows)

    sleeps = [0.005] * 2000
    with (
        taskkit.open_executor("thread", max_workers=200) as tk,
        concurrent.futures.ThreadPoolExecutor(max_workers=200) as tpe,
    ):
        list(tk.map(time.sleep, sleeps[:400]))  # start the threads, as a warm pool would have
        list(tpe.map(time.sleep, sleeps[:400]))
        rows = [
            Row("ideal (2000 x 5 ms / 200 workers)", 0.05),
            Row(
                "ThreadPoolExecutor.map",
                median_time(lambda: list(tpe.map(time.sleep, sleeps)), repeats),
                baseline="ideal (2000 x 5 ms / 200 workers)",
            ),
            Row(
                "taskkit thread map",
                median_time(lambda: list(tk.map(time.sleep, sleeps)), repeats),
                baseline="ideal (2000 x 5 ms / 200 workers)",
                target="<= 1.3x",
            ),
        ]
    print_table("thread: map(time.sleep, [0.005] * 2000) on 200 workers", rows)
