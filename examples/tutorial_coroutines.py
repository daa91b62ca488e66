"""The tutorial's coroutines: many cooperative tasks on one thread, and why one blocking call hurts.

Ten thousand tasks sleep together in about the time of one; a task that calls
time.sleep instead of awaiting taskkit.sleep holds every other task up, and
taskkit warns about it by name.
Run: python examples/tutorial_coroutines.py
"""

import time
import warnings

import taskkit


async def nap(i: int) -> int:
    await taskkit.sleep(0.2)
    return i


async def rude() -> None:
    time.sleep(0.3)  # blocks the scheduler: every other task waits


if __name__ == "__main__":
    with taskkit.open_executor("coroutine") as ex:
        start = time.perf_counter()
        total = sum(ex.map(nap, range(10_000)))
        print(
            f"10,000 tasks each sleeping 0.2 s: {time.perf_counter() - start:.2f} s (sum {total})"
        )

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", taskkit.BlockingWarning)
            ex.submit(rude).result()
        for warning in caught:
            print(f"warning: {warning.message}")
