"""The tutorial's process pool: four tasks that each sleep finish together.

multiprocessing's ``Pool().apply_async(fn, args)`` / ``close()`` / ``join()``
becomes ``submit`` / ``close()`` / ``join()`` on taskkit's process backend.
Run: python examples/tutorial_pool.py
"""

import os
import time

import taskkit


def long_time_task(name: int) -> float:
    print(f"Run task {name} ({os.getpid()})...")
    start = time.time()
    time.sleep(1)
    end = time.time()
    print(f"Task {name} runs {end - start:0.2f} seconds.")
    return end - start


if __name__ == "__main__":
    print(f"Parent process {os.getpid()}.")
    started = time.perf_counter()
    pool = taskkit.open_executor("process", max_workers=4)
    futures = [pool.submit(long_time_task, i) for i in range(4)]
    print("Waiting for all subprocesses done...")
    pool.close()
    pool.join()
    print("All subprocesses done.")
    print(f"4 tasks of 1 s each took {time.perf_counter() - started:.2f} s on 4 workers.")
    pool.shutdown()
