"""The threads part of ``python -m taskkit tour``: threads overlap waiting, not pure-Python work."""

from __future__ import annotations

import threading
import time

import taskkit

__all__ = ["tour_section"]


def tour_section() -> None:
    print("\n== Threads and the GIL (tutorial: threading) ==")
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
