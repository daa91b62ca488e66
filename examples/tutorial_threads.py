"""The tutorial's threads, and what the GIL means for them.

A named thread runs a loop; then the same pure-Python work on 1 and 4 threads
(no faster: the GIL) and the same waiting on 1 and 4 threads (4x faster).
Run: python examples/tutorial_threads.py
"""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import taskkit

A = TypeVar("A")


def loop() -> None:
    name = threading.current_thread().name
    print(f"thread {name} is running...")
    for n in range(1, 6):
        print(f"thread {name} >>> {n}")
        time.sleep(0.05)
    print(f"thread {name} ended.")


def compute(n: int) -> int:
    return sum(i * i for i in range(n))


def timed(backend_workers: int, fn: Callable[[A], object], args: list[A]) -> float:
    with taskkit.open_executor("thread", max_workers=backend_workers) as ex:
        start = time.perf_counter()
        list(ex.map(fn, args, chunksize=1))
        return time.perf_counter() - start


if __name__ == "__main__":
    print(f"thread {threading.current_thread().name} is running...")
    with taskkit.open_executor("thread", max_workers=1, thread_name_prefix="LoopThread") as ex:
        ex.submit(loop).result()
    print(f"thread {threading.current_thread().name} ended.")

    work = [400_000] * 4
    print(f"compute on 1 thread:  {timed(1, compute, work):.2f} s")
    print(f"compute on 4 threads: {timed(4, compute, work):.2f} s  (the GIL: no faster)")
    waits = [0.2] * 4
    print(f"waiting on 1 thread:  {timed(1, time.sleep, waits):.2f} s")
    print(f"waiting on 4 threads: {timed(4, time.sleep, waits):.2f} s  (I/O overlaps)")
