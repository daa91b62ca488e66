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
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
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
