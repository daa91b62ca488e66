"""The asyncio backend against raw asyncio, in the same run.

* 100,000 no-op tasks submitted and awaited, against ``asyncio.TaskGroup`` (target:
  <= 1.3x): ``ex.map`` (one hand-off per chunk; its calls become asyncio tasks),
  and ``ex.submit`` per task -- from code on the same loop (the executor opened
  inside the running loop, which it then uses; each future is then awaited, which
  TaskGroup's tasks are not), and, for comparison, from a plain thread to the
  executor's own loop;
* 1,000 concurrent ``asyncio.sleep(0.2)`` (target: <= 0.4 s), against ``gather``;
* ``submit(coro_fn).result()`` from a plain thread against
  ``asyncio.run_coroutine_threadsafe(...).result()`` (target: <= 1.5x), also on uvloop.

Peers are timed in alternation, repeat by repeat; the table shows medians.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import sys
import threading
from collections.abc import Callable

from benchmarks._util import Row, interleaved, print_table
from benchmarks.bench_coroutine import noop, noop1
from taskkit import AsyncioExecutor, open_executor

N = 100_000
SLEEPERS = 1_000
ROUND_TRIPS = 2_000


async def _taskgroup(n: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(noop())


async def _submit_on_loop(n: int) -> None:
    async with open_executor("asyncio") as ex:  # opened inside the loop: it uses it
        futures = [ex.submit(noop) for _ in range(n)]
        for future in futures:
            await future


async def _gather_sleeps(n: int) -> None:
    await asyncio.gather(*(asyncio.sleep(0.2) for _ in range(n)))


def _own_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _round_trip_fns(
    ex: AsyncioExecutor, loop: asyncio.AbstractEventLoop, label: str
) -> dict[str, Callable[[], object]]:
    def threadsafe() -> None:
        for _ in range(ROUND_TRIPS):
            asyncio.run_coroutine_threadsafe(noop(), loop).result()

    def taskkit_submit() -> None:
        for _ in range(ROUND_TRIPS):
            ex.submit(noop).result()

    return {f"run_coroutine_threadsafe{label}": threadsafe, f"taskkit{label}": taskkit_submit}


def main(repeats: int) -> None:
    with open_executor("asyncio") as ex:
        assert isinstance(ex, AsyncioExecutor)

        def submit_from_thread() -> None:
            futures = [ex.submit(noop) for _ in range(N)]
            concurrent.futures.wait(futures)

        base = "asyncio.TaskGroup"
        names = {
            "map": "taskkit ex.map from a plain thread",
            "loop": "taskkit ex.submit + await, same loop (opened in it)",
            "thread": "taskkit ex.submit x 100,000 from a plain thread",
        }
        medians = interleaved(
            {
                base: lambda: asyncio.run(_taskgroup(N)),
                names["map"]: lambda: collections.deque(ex.map(noop1, range(N)), 0),
                names["loop"]: lambda: asyncio.run(_submit_on_loop(N)),
                names["thread"]: submit_from_thread,
            },
            repeats,
        )
        print_table(
            f"{N:,} no-op tasks submitted and awaited (median of {repeats})",
            [
                Row(base, medians[base]),
                Row(names["map"], medians[names["map"]], base, "<= 1.3x"),
                Row(names["loop"], medians[names["loop"]], base, "<= 1.3x"),
                Row(names["thread"], medians[names["thread"]], base),
            ],
        )

        def taskkit_sleeps() -> None:
            futures = [ex.submit(asyncio.sleep, 0.2) for _ in range(SLEEPERS)]
            concurrent.futures.wait(futures)

        medians = interleaved(
            {
                "asyncio.gather": lambda: asyncio.run(_gather_sleeps(SLEEPERS)),
                "taskkit ex.submit": taskkit_sleeps,
            },
            repeats,
        )
        print_table(
            f"{SLEEPERS:,} concurrent asyncio.sleep(0.2)",
            [
                Row("asyncio.gather", medians["asyncio.gather"]),
                Row(
                    "taskkit ex.submit", medians["taskkit ex.submit"], "asyncio.gather", "<= 0.4 s"
                ),
            ],
        )

        loop, thread = _own_loop()
        try:
            medians = interleaved(_round_trip_fns(ex, loop, ""), repeats)
        finally:
            _stop(loop, thread)
    rows = [
        Row("run_coroutine_threadsafe", medians["run_coroutine_threadsafe"] / ROUND_TRIPS),
        Row("taskkit", medians["taskkit"] / ROUND_TRIPS, "run_coroutine_threadsafe", "<= 1.5x"),
    ]
    try:
        import uvloop
    except ImportError:
        print("\n(uvloop is not installed: its rows are skipped)")
    else:
        with open_executor("asyncio", uvloop=True) as ex:
            assert isinstance(ex, AsyncioExecutor)
            loop = uvloop.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            try:
                medians = interleaved(_round_trip_fns(ex, loop, " (uvloop)"), repeats)
            finally:
                _stop(loop, thread)
        rows += [
            Row(
                "run_coroutine_threadsafe (uvloop)",
                medians["run_coroutine_threadsafe (uvloop)"] / ROUND_TRIPS,
            ),
            Row(
                "taskkit (uvloop)",
                medians["taskkit (uvloop)"] / ROUND_TRIPS,
                "run_coroutine_threadsafe (uvloop)",
                "<= 1.5x",
            ),
        ]
    print_table("submit(coro_fn).result() from a plain thread (per round trip)", rows)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
