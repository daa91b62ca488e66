"""The shared-state part of ``python -m taskkit tour``: the tutorial's queue, lock and balance.

Runs the tutorial's two programs on taskkit: a writer and a reader sharing a
queue and a lock on the process backend (item 3, where the tutorial needs
``multiprocessing.Manager()``), and the bank balance changed by two tasks (item
6) with a lock on the thread and process backends and with ``value.update``.
The functions are module-level so that worker processes can import them.
"""

from __future__ import annotations

import os
import time

from taskkit import BackendName, Lock, Queue, QueueClosed, Value, open_executor

__all__ = ["tour_section"]

_TIMES = 10_000


def _write(q: Queue[str], lock: Lock) -> int:
    for value in "ABCD":
        q.put(value)
    return os.getpid()


def _read(q: Queue[str], lock: Lock) -> tuple[int, list[str]]:
    got: list[str] = []
    while True:
        with lock:
            try:
                got.append(q.get())
            except QueueClosed:
                return os.getpid(), got


def _change_it(balance: Value[int], lock: Lock, n: int, times: int) -> None:
    for _ in range(times):
        with lock:
            balance.set(balance.get() + n)
            balance.set(balance.get() - n)


def _change_it_atomically(balance: Value[int], n: int, times: int) -> None:
    for _ in range(times):
        balance.update(lambda b: b + n)
        balance.update(lambda b: b - n)


def _balance(backend: BackendName, with_lock: bool) -> str:
    start = time.perf_counter()
    with open_executor(backend, max_workers=2) as ex:
        balance, lock = ex.value(0), ex.lock()
        if with_lock:
            futures = [ex.submit(_change_it, balance, lock, n, _TIMES) for n in (5, 8)]
        else:
            futures = [ex.submit(_change_it_atomically, balance, n, _TIMES) for n in (5, 8)]
        for future in futures:
            future.result()
        how = "with a lock" if with_lock else "with value.update, no lock"
        took = time.perf_counter() - start
        return f"    {backend:>7}, {how:<27} final balance {balance.get()}  ({took:.2f} s)"


def tour_section() -> None:
    """Run the tutorial's shared-queue and balance programs on taskkit and report."""
    print("Shared state: ex.queue(), ex.lock(), ex.value() (tutorial items 3 and 6)")
    with open_executor("process", max_workers=2) as ex:
        q, lock = ex.queue(), ex.lock()
        writer = ex.submit(_write, q, lock)
        reader = ex.submit(_read, q, lock)
        writer_pid = writer.result()
        q.close()
        reader_pid, got = reader.result()
    print(f"  writer process {writer_pid} put A, B, C, D; reader process {reader_pid} got {got},")
    print("  through a queue and a lock passed as plain arguments: shared memory, no Manager.")
    print(f"  Two tasks add and subtract n (5, 8) {_TIMES} times each; the balance must end at 0:")
    print(_balance("thread", with_lock=True))
    print(_balance("process", with_lock=True))
    print(_balance("process", with_lock=False))
