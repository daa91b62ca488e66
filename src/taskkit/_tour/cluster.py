"""The scaling-out part of ``python -m taskkit tour``: the same program on a Dask cluster."""

from __future__ import annotations

import time

__all__ = ["tour_section"]


def _work(x: int) -> int:
    return sum(i * i for i in range(x))


def _collect(q: object, x: int) -> int:
    q.put(x)  # type: ignore[attr-defined]
    return x


def tour_section() -> None:
    """Run one small program on the thread backend, then unchanged on a local Dask cluster."""
    print("Scaling out: open_executor('dask') runs the same code on a Dask cluster")
    try:
        import distributed  # noqa: F401 - only to learn whether the extra is installed
    except ImportError:
        print('  skipped: Dask is not installed here (pip install "taskkit[dask]")')
        return
    import logging

    import taskkit

    # Dask logs the closing of its connections at INFO level (set when it is
    # imported), sometimes after this section has returned: keep the tour readable.
    logging.getLogger("distributed").setLevel(logging.WARNING)

    def program(ex: taskkit.Executor) -> tuple[int, list[int]]:
        total = sum(ex.map(_work, range(200)))
        q = ex.queue()
        for f in [ex.submit(_collect, q, i) for i in range(3)]:
            f.result()
        return total, sorted(q.get(timeout=10) for _ in range(3))

    with taskkit.open_executor("thread", max_workers=2) as ex:
        expected = program(ex)
    start = time.perf_counter()
    # processes=False keeps the tour quick: the workers are threads of this
    # process.  Without it, each worker is a process; with address= it is a
    # real cluster -- and program() stays the same.
    with taskkit.open_executor("dask", max_workers=2, processes=False) as dask_ex:
        started = time.perf_counter() - start
        address = dask_ex.scheduler_address
        result = program(dask_ex)
    same = "the same" if result == expected else "NOT the same"
    print(f"  a local cluster started in {started:.2f} s; its scheduler is {address}")
    print(f"  map of 200 calls, 3 submits and a shared queue gave {result}")
    print(f"  the thread backend gave {expected}: {same}")
    print('  on a cluster: open_executor("dask", address="tcp://scheduler:8786")')
