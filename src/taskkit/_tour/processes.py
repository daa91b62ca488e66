"""The process-pool part of ``python -m taskkit tour``: the tutorial's ``Pool`` of sleeping tasks.

The tutorial starts four tasks that each sleep for a while on a four-process
pool (``Pool().apply_async``, ``close``, ``join``) and sees them finish in
about the time of one.  This section runs the same scenario on the process
backend, with the same ``close()``/``join()`` idiom, and then shows what the
standard pools cannot do: a worker that dies takes only its own task with it.
The functions are module-level so that worker processes can import them.
"""

from __future__ import annotations

import os
import time

from taskkit import WorkerCrashed, open_executor

__all__ = ["tour_section"]

_NAP = 0.3  # seconds each task sleeps


def _long_time_task(name: str) -> tuple[str, int, float]:
    start = time.perf_counter()
    time.sleep(_NAP)
    return name, os.getpid(), time.perf_counter() - start


def _die() -> None:
    os._exit(1)


def _square(x: int) -> int:
    return x * x


def tour_section() -> None:
    """Run four sleeping tasks on four worker processes, then crash one worker."""
    print("The process pool (tutorial: multiprocessing.Pool, apply_async, close, join)")
    print(f"  parent process {os.getpid()}; 4 tasks that each sleep {_NAP} s, on 4 workers")
    ex = open_executor("process", max_workers=4)
    ex.submit(_square, 0).result()  # start the workers before timing, as Pool() does
    start = time.perf_counter()
    futures = [ex.submit(_long_time_task, str(i)) for i in range(4)]
    print("  waiting for all subprocesses done...")
    ex.close()
    ex.join()
    took = time.perf_counter() - start
    for future in futures:
        name, pid, slept = future.result()
        print(f"    task {name} ran in process {pid} and slept {slept:.2f} s")
    print(f"  all done in {took:.2f} s: about one task's time, not four ({4 * _NAP:.1f} s)")
    ex.shutdown()

    print("  Crash isolation: one task kills its own worker (os._exit), three others run.")
    with open_executor("process", max_workers=2) as ex:
        crash = ex.submit(_die)
        others = [ex.submit(_square, i) for i in (2, 3, 4)]
        try:
            crash.result()
        except WorkerCrashed as exc:
            print(f"    the crashed task's future failed: WorkerCrashed: {exc}")
        print(f"    the other tasks still finished: {[f.result() for f in others]}")
        print(f"    and the pool keeps working: 5 * 5 = {ex.submit(_square, 5).result()}")
    print("  (multiprocessing.Pool would hang here; ProcessPoolExecutor would fail every task.)")
