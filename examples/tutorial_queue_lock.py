"""The tutorial's writer and reader sharing a Queue and a Lock, on taskkit's process backend.

The tutorial needs ``multiprocessing.Manager()`` for this: a server process that
owns the queue and the lock, reached through proxies, one round trip per
operation.  Here ``ex.queue()`` and ``ex.lock()`` live in shared memory and are
passed to the pool's tasks as ordinary arguments.

Run: python examples/tutorial_queue_lock.py
"""

from __future__ import annotations

import os

import taskkit
from taskkit import QueueClosed


def write(q: taskkit.Queue[str], lock: taskkit.Lock) -> None:
    """Put A, B, C, D on the queue."""
    for value in ["A", "B", "C", "D"]:
        with lock:
            print(f"process {os.getpid()} puts {value}")
        q.put(value)


def read(q: taskkit.Queue[str], lock: taskkit.Lock) -> list[str]:
    """Take values under the lock until the queue is closed and empty."""
    got: list[str] = []
    while True:
        with lock:
            try:
                value = q.get()
            except QueueClosed:
                return got
            print(f"process {os.getpid()} got {value}")
            got.append(value)


def main() -> None:
    print(f"parent process {os.getpid()}")
    with taskkit.open_executor("process", max_workers=2) as ex:
        q, lock = ex.queue(), ex.lock()
        writer = ex.submit(write, q, lock)
        reader = ex.submit(read, q, lock)
        writer.result()
        q.close()  # no more values: the reader stops once it has taken them all
        print(f"the reader got {reader.result()}")


if __name__ == "__main__":
    main()
