"""Shared-state primitives against the standard library's, in the same run.

Every figure is the median time of one operation (lower is better):

* process queue: a producer in a worker process puts small items, the parent
  gets them; timed from the first item the parent receives to the last.
  Peers: ``multiprocessing.Queue`` and ``multiprocessing.Manager().Queue()``.
* process lock: uncontended ``acquire()`` + ``release()`` in the parent.
  Peers: ``multiprocessing.Lock`` and ``Manager().Lock()``.
* thread queue: ``put`` + ``get`` in one thread, and a producer thread feeding
  a consumer thread.  Peer: ``queue.Queue``.
* thread lock: ``acquire()`` + ``release()`` and ``with lock:``.  Peer:
  ``threading.Lock``.
* the process primitives' two shared-memory layers, futexes and robust mutexes
  (Linux's default) against the portable one (files, fcntl locks, polled words;
  macOS and the BSDs, or ``TASKKIT_PORTABLE_PRIMITIVES=1``), each in a child
  interpreter: an uncontended lock, a lock two processes take in turn, a queue
  round trip to a worker and back, and the one-way queue stream above.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import taskkit
from benchmarks._util import Row, median_time, print_table

ITEMS = 50_000
MANAGER_ITEMS = 5_000
LOCK_OPS = 200_000
MANAGER_LOCK_OPS = 5_000
THREAD_OPS = 200_000


def _produce(q: Any, n: int) -> None:
    put = q.put
    for i in range(n):
        put(i)


def _consume(q: Any, n: int) -> float:
    """Seconds from the first item to the last."""
    get = q.get
    get()
    start = time.perf_counter()
    for _ in range(n - 1):
        get()
    return time.perf_counter() - start


def _process_queue_taskkit(ex: taskkit.Executor) -> float:
    q = ex.queue()
    done = ex.submit(_produce, q, ITEMS)
    seconds = _consume(q, ITEMS)
    done.result()
    return seconds / (ITEMS - 1)


def _process_queue_peer(make: Callable[[], Any], n: int) -> float:
    q = make()
    producer = multiprocessing.get_context("fork").Process(target=_produce, args=(q, n))
    producer.start()
    seconds = _consume(q, n)
    producer.join()
    return seconds / (n - 1)


def _lock_loop(lock: Any, n: int) -> float:
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return (time.perf_counter() - start) / n


def _lock_attr_loop(lock: Any, n: int) -> float:
    """``lock.acquire(); lock.release()`` as written in code (attribute looked up each time)."""
    start = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return (time.perf_counter() - start) / n


def _with_loop(lock: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        with lock:
            pass
    return (time.perf_counter() - start) / n


def _queue_pairs(q: Any, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        q.put(i)
        q.get()
    return (time.perf_counter() - start) / n


def _queue_threads(q: Any, n: int) -> float:
    producer = threading.Thread(target=_produce, args=(q, n))
    start = time.perf_counter()
    producer.start()
    get = q.get
    for _ in range(n):
        get()
    producer.join()
    return (time.perf_counter() - start) / n


LAYER_LOCK_OPS = 50_000
LAYER_CONTENDED_OPS = 10_000
LAYER_ROUND_TRIPS = 3_000


def _take_turns(lock: Any, n: int, ready: Any) -> None:
    ready.release()
    for _ in range(n):
        with lock:
            pass


def _echo(inbox: Any, outbox: Any, n: int) -> None:
    for _ in range(n):
        outbox.put(inbox.get())


def _contended_lock(ex: taskkit.Executor) -> float:
    """Seconds per acquire + release while a worker loops on the same lock."""
    lock, ready = ex.lock(), ex.semaphore(0)
    worker = ex.submit(_take_turns, lock, LAYER_CONTENDED_OPS, ready)
    ready.acquire()
    start = time.perf_counter()
    for _ in range(LAYER_CONTENDED_OPS):
        with lock:
            pass
    worker.result()
    return (time.perf_counter() - start) / (2 * LAYER_CONTENDED_OPS)


def _round_trip(ex: taskkit.Executor) -> float:
    """Seconds for one item to reach a waiting worker and come back."""
    there, back = ex.queue(), ex.queue()
    worker = ex.submit(_echo, there, back, LAYER_ROUND_TRIPS)
    there.put(0)
    back.get()  # the worker is running
    start = time.perf_counter()
    for i in range(1, LAYER_ROUND_TRIPS):
        there.put(i)
        back.get()
    seconds = time.perf_counter() - start
    worker.result()
    return seconds / (LAYER_ROUND_TRIPS - 1)


def layer_figures(repeats: int) -> dict[str, float]:
    """The process primitives' figures on the layer this interpreter imported."""
    from taskkit._backends.process import _shm

    with taskkit.open_executor("process", max_workers=1) as ex:
        ex.submit(int).result()  # start the worker before timing
        lock = ex.lock()
        return {
            "implementation": 1.0 if _shm.implementation == "portable" else 0.0,
            "uncontended lock": _median(lambda: _lock_loop(lock, LAYER_LOCK_OPS), repeats),
            "lock taken in turn": _median(lambda: _contended_lock(ex), repeats),
            "queue round trip": _median(lambda: _round_trip(ex), repeats),
            "queue stream": _median(lambda: _process_queue_taskkit(ex), repeats),
        }


def _layers(repeats: int) -> None:
    """Time both layers, each in a child interpreter (the layer is chosen at import)."""
    figures: dict[str, dict[str, float]] = {}
    for layer, value in (("futex", "0"), ("portable", "1")):
        env = {**os.environ, "TASKKIT_PORTABLE_PRIMITIVES": value}
        code = (
            "import json, sys\n"
            "from benchmarks.bench_primitives import layer_figures\n"
            "print(json.dumps(layer_figures(int(sys.argv[1]))))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(repeats)],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            check=False,
        )
        if done.returncode:
            print(f"\n(the {layer} layer did not run: {done.stderr.strip().splitlines()[-1:]})")
            continue
        result = json.loads(done.stdout.splitlines()[-1])
        if (result.pop("implementation") == 1.0) != (layer == "portable"):
            print(f"\n(the {layer} layer is not available here: skipped)")
            continue
        figures[layer] = result
    if not figures:
        return
    rows = []
    for what in next(iter(figures.values())):
        for layer in ("futex", "portable"):
            if layer in figures:
                rows.append(
                    Row(
                        f"{layer}: {what}",
                        figures[layer][what],
                        baseline=f"futex: {what}" if layer == "portable" else None,
                    )
                )
    print_table("process primitives: futex layer vs portable layer", rows)


def _median(fn: Callable[[], float], repeats: int) -> float:
    results: list[float] = []
    median_time(lambda: results.append(fn()), repeats)
    results = results[1:]  # the first call was median_time's warm-up
    results.sort()
    return results[len(results) // 2]


def main(repeats: int) -> None:
    repeats = max(3, repeats)
    manager = multiprocessing.get_context("fork").Manager()
    try:
        with taskkit.open_executor("process", max_workers=1) as ex:
            ex.submit(int).result()  # start the worker before timing
            rows = [
                Row(
                    "multiprocessing.Queue",
                    _median(lambda: _process_queue_peer(multiprocessing.Queue, ITEMS), repeats),
                ),
                Row(
                    "Manager().Queue()",
                    _median(lambda: _process_queue_peer(manager.Queue, MANAGER_ITEMS), repeats),
                ),
                Row(
                    "taskkit process queue",
                    _median(lambda: _process_queue_taskkit(ex), repeats),
                    baseline="multiprocessing.Queue",
                    target="<= 1.25x (>= 0.8x its throughput)",
                ),
                Row(
                    "taskkit process queue ",
                    _median(lambda: _process_queue_taskkit(ex), repeats),
                    baseline="Manager().Queue()",
                    target="<= 0.1x (>= 10x its throughput)",
                    note="(same as above, against the Manager)",
                ),
            ]
            print_table("process queue: one worker puts small items, the parent gets", rows)

            tk_lock = ex.lock()
            mp_lock = multiprocessing.Lock()
            mgr_lock = manager.Lock()
            rows = [
                Row(
                    "multiprocessing.Lock", _median(lambda: _lock_loop(mp_lock, LOCK_OPS), repeats)
                ),
                Row(
                    "Manager().Lock()",
                    _median(lambda: _lock_loop(mgr_lock, MANAGER_LOCK_OPS), repeats),
                ),
                Row(
                    "taskkit process lock",
                    _median(lambda: _lock_loop(tk_lock, LOCK_OPS), repeats),
                    baseline="Manager().Lock()",
                    target="<= 0.02x (>= 50x its rate)",
                ),
                Row(
                    "taskkit process lock ",
                    _median(lambda: _lock_loop(tk_lock, LOCK_OPS), repeats),
                    baseline="multiprocessing.Lock",
                    note="(same as above; multiprocessing.Lock has no dead-holder recovery)",
                ),
            ]
            print_table("process lock: uncontended acquire + release", rows)
    finally:
        manager.shutdown()

    with taskkit.open_executor("thread") as tex:
        rows = [
            Row(
                "queue.Queue put+get",
                _median(lambda: _queue_pairs(queue.Queue(), THREAD_OPS), repeats),
            ),
            Row(
                "taskkit thread queue put+get",
                _median(lambda: _queue_pairs(tex.queue(), THREAD_OPS), repeats),
                baseline="queue.Queue put+get",
                target="<= 1.2x",
            ),
            Row(
                "queue.Queue producer->consumer",
                _median(lambda: _queue_threads(queue.Queue(), THREAD_OPS // 2), repeats),
            ),
            Row(
                "taskkit thread queue producer->consumer",
                _median(lambda: _queue_threads(tex.queue(), THREAD_OPS // 2), repeats),
                baseline="queue.Queue producer->consumer",
                target="<= 1.2x",
            ),
        ]
        print_table("thread queue", rows)

        raw = threading.Lock()
        tk = tex.lock()
        rows = [
            Row(
                "threading.Lock acquire+release",
                _median(lambda: _lock_attr_loop(raw, LOCK_OPS), repeats),
            ),
            Row(
                "taskkit thread lock acquire+release",
                _median(lambda: _lock_attr_loop(tk, LOCK_OPS), repeats),
                baseline="threading.Lock acquire+release",
                target="<= 1.2x",
            ),
            Row("threading.Lock with", _median(lambda: _with_loop(raw, LOCK_OPS), repeats)),
            Row(
                "taskkit thread lock with",
                _median(lambda: _with_loop(tk, LOCK_OPS), repeats),
                baseline="threading.Lock with",
                target="<= 1.2x",
            ),
        ]
        print_table("thread lock: uncontended", rows)

    _layers(repeats)
