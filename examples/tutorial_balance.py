"""The tutorial's bank balance: two tasks add and subtract n many times; it must end at 0.

Three ways, each printing the final balance:

* with a lock around each change, on the thread backend (the tutorial's fix);
* the same on the process backend, where the balance is an ``ex.value(0)``
  shared by the worker processes and the lock is a process lock;
* with ``balance.update(fn)``, an atomic read-modify-write that needs no lock.

Run: python examples/tutorial_balance.py [times]   (default 100000, as in the tutorial)
"""

from __future__ import annotations

import sys
import time

import taskkit


def change_it(balance: taskkit.Value[int], lock: taskkit.Lock, n: int, times: int) -> None:
    """balance = balance + n; balance = balance - n, under the lock, ``times`` times."""
    for _ in range(times):
        with lock:
            balance.set(balance.get() + n)
            balance.set(balance.get() - n)


def change_it_atomically(balance: taskkit.Value[int], n: int, times: int) -> None:
    """The same with update(fn): each change is one atomic step, no lock needed."""
    for _ in range(times):
        balance.update(lambda b: b + n)
        balance.update(lambda b: b - n)


def run(backend: taskkit.BackendName, times: int, with_lock: bool) -> None:
    start = time.perf_counter()
    with taskkit.open_executor(backend, max_workers=2) as ex:
        balance, lock = ex.value(0), ex.lock()
        if with_lock:
            futures = [ex.submit(change_it, balance, lock, n, times) for n in (5, 8)]
        else:
            futures = [ex.submit(change_it_atomically, balance, n, times) for n in (5, 8)]
        for future in futures:
            future.result()
        how = "a lock" if with_lock else "value.update, no lock"
        seconds = time.perf_counter() - start
        print(f"{backend:>7} backend, {how:<22}: balance = {balance.get()}  ({seconds:.2f} s)")


def main() -> None:
    times = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"two tasks change the balance {times} times each (n = 5 and n = 8)")
    run("thread", times, with_lock=True)
    run("process", times, with_lock=True)
    run("thread", times, with_lock=False)
    run("process", times, with_lock=False)


if __name__ == "__main__":
    main()
