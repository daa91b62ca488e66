"""The coroutine backend against asyncio, in the same run.

* 100,000 no-op tasks spawned and completed: ``ex.spawn`` inside a task (the cheap
  path; with the blocking detector off, as asyncio times no step outside debug mode,
  and on), ``ex.map`` from outside (one hand-off per chunk) and plain ``ex.submit`` x
  100,000 from outside, against ``asyncio.TaskGroup`` (target: spawn >= 5x faster);
* a switch: one task awaiting ``taskkit.checkpoint()`` against ``asyncio.sleep(0)``;
* ``submit(coro_fn).result()`` from a plain thread against
  ``asyncio.run_coroutine_threadsafe(...).result()`` (target: <= 1.5x);
* concurrent sleepers, each in a fresh child process so that its peak RSS is its
  own: 100,000 and 1,000,000 tasks each awaiting ``taskkit.sleep(0.01)``, against
  ``asyncio.gather`` of 100,000 (and 1,000,000) ``asyncio.sleep(0.01)``.

Peers are timed in alternation, repeat by repeat, so that a noisy machine slows
both alike; the table shows medians.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable

from benchmarks._util import Row, interleaved, print_table
from taskkit import BlockingWarning, CoroutineExecutor, checkpoint, open_executor

N = 100_000
ROUND_TRIPS = 2_000
SWITCHES = 200_000


async def noop() -> None:
    pass


async def noop1(_: object) -> None:
    pass


async def _taskgroup(n: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(noop())


async def _spawn_all(ex: CoroutineExecutor, n: int) -> None:
    spawn = ex.spawn
    handles = [spawn(noop) for _ in range(n)]
    for handle in handles:
        await handle


async def _switches(n: int) -> None:
    for _ in range(n):
        await checkpoint()


async def _asyncio_switches(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


SLEEPERS = """
import asyncio, os, sys, threading, time
import taskkit
n, kind = int(sys.argv[1]), sys.argv[2]
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
base = peak = rss()
done = threading.Event()
def sample():  # ru_maxrss proved unreliable here: sample the resident size instead
    global peak
    while not done.wait(0.005):
        peak = max(peak, rss())
threading.Thread(target=sample, daemon=True).start()
async def sleeper():
    await taskkit.sleep(0.01)
start = time.perf_counter()
if kind == "taskkit":
    with taskkit.open_executor("coroutine", blocking_warning=None) as ex:
        async def main():
            spawn = ex.spawn
            handles = [spawn(sleeper) for _ in range(n)]
            for handle in handles:
                await handle
        ex.submit(main).result()
else:
    async def main():
        await asyncio.gather(*(asyncio.sleep(0.01) for _ in range(n)))
    asyncio.run(main())
elapsed = time.perf_counter() - start
done.set()
print(elapsed, max(peak, rss()) - base)
"""


def _sleepers(n: int, kind: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", SLEEPERS, str(n), kind],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def _sleeper_rows(repeats: int) -> list[Row]:
    runs: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    cases = [(N, "asyncio"), (N, "taskkit"), (10 * N, "taskkit")]
    for _ in range(repeats):
        for n, kind in cases:
            runs[f"{kind} {n:,} x sleep(0.01)"].append(_sleepers(n, kind))
    # asyncio with a million sleepers takes long; once is enough to show the scale.
    runs[f"asyncio {10 * N:,} x sleep(0.01)"].append(_sleepers(10 * N, "asyncio"))
    rows = []
    for name, values in runs.items():
        seconds = statistics.median(v[0] for v in values)
        peak = statistics.median(v[1] for v in values)
        n = int(name.split()[1].replace(",", ""))
        baseline = f"asyncio {n:,} x sleep(0.01)"
        note = f"peak RSS +{peak / 2**20:.0f} MiB ({peak / n:.0f} B/task), {len(values)} run(s)"
        rows.append(Row(name, seconds, None if name == baseline else baseline, note=note))
    return rows


def _round_trips(
    ex: CoroutineExecutor, loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], object]]:
    def threadsafe() -> None:
        for _ in range(ROUND_TRIPS):
            asyncio.run_coroutine_threadsafe(noop(), loop).result()

    def taskkit_submit() -> None:
        for _ in range(ROUND_TRIPS):
            ex.submit(noop).result()

    return {"run_coroutine_threadsafe": threadsafe, "taskkit": taskkit_submit}


def _spawn_watched(watched: CoroutineExecutor, n: int) -> None:
    """``ex.spawn`` with the blocking detector on (its default threshold): every step timed."""
    with warnings.catch_warnings():
        # Spawning 100,000 tasks in one step may itself hold the scheduler past 0.1 s.
        warnings.simplefilter("ignore", BlockingWarning)
        watched.submit(_spawn_all, watched, n).result()


def main(repeats: int) -> None:
    # asyncio times no callback unless in debug mode: the like-for-like comparison is with
    # taskkit's blocking detector off; a row with it on shows what the timing costs.
    with (
        open_executor("coroutine", blocking_warning=None) as ex,
        open_executor("coroutine") as watched,
    ):
        assert isinstance(ex, CoroutineExecutor)
        assert isinstance(watched, CoroutineExecutor)

        def submit_all() -> None:
            futures = [ex.submit(noop) for _ in range(N)]
            for future in futures:
                future.result()

        medians = interleaved(
            {
                "asyncio.TaskGroup": lambda: asyncio.run(_taskgroup(N)),
                "taskkit ex.spawn inside a task": lambda: ex.submit(_spawn_all, ex, N).result(),
                "taskkit ex.spawn, blocking detector on": lambda: _spawn_watched(watched, N),
                "taskkit ex.map from outside": lambda: collections.deque(
                    ex.map(noop1, range(N)), 0
                ),
                "taskkit ex.submit x 100,000 from outside": submit_all,
            },
            repeats,
        )
        base = "asyncio.TaskGroup"
        print_table(
            f"{N:,} no-op tasks spawned and completed (median of {repeats})",
            [
                Row(base, medians[base]),
                Row(
                    "taskkit ex.spawn inside a task",
                    medians["taskkit ex.spawn inside a task"],
                    base,
                    "<= 0.2x (>= 5x faster)",
                ),
                Row(
                    "taskkit ex.spawn, blocking detector on",
                    medians["taskkit ex.spawn, blocking detector on"],
                    base,
                ),
                Row("taskkit ex.map from outside", medians["taskkit ex.map from outside"], base),
                Row(
                    "taskkit ex.submit x 100,000 from outside",
                    medians["taskkit ex.submit x 100,000 from outside"],
                    base,
                ),
            ],
        )

        medians = interleaved(
            {
                "asyncio.sleep(0)": lambda: asyncio.run(_asyncio_switches(SWITCHES)),
                "taskkit.checkpoint()": lambda: ex.submit(_switches, SWITCHES).result(),
            },
            repeats,
        )
        print_table(
            "one switch between tasks (per switch)",
            [
                Row("asyncio.sleep(0)", medians["asyncio.sleep(0)"] / SWITCHES),
                Row(
                    "taskkit.checkpoint()",
                    medians["taskkit.checkpoint()"] / SWITCHES,
                    "asyncio.sleep(0)",
                ),
            ],
        )

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            medians = interleaved(_round_trips(ex, loop), repeats)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
        print_table(
            "submit(coro_fn).result() from a plain thread (per round trip)",
            [
                Row("run_coroutine_threadsafe", medians["run_coroutine_threadsafe"] / ROUND_TRIPS),
                Row(
                    "taskkit",
                    medians["taskkit"] / ROUND_TRIPS,
                    "run_coroutine_threadsafe",
                    "<= 1.5x",
                ),
            ],
        )

    print_table("concurrent sleepers, each run in a fresh process", _sleeper_rows(repeats))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
