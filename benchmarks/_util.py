"""Shared helpers for the benchmark modules: timing, medians, ratio tables."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Row", "interleaved", "median_time", "print_table"]


@dataclass(frozen=True)
class Row:
    """One measured line: what ran, its median, and the peer it is compared with."""

    name: str
    seconds: float
    baseline: str | None = None  # the name of the row this one is compared with
    target: str = ""  # the goal in words, e.g. "<= 1.0x"
    note: str = ""


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Return the median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each contender, run round-robin so load bursts hit them alike.

    On a shared machine, timing one contender's repeats back to back lets a burst of
    foreign load land on one of them only; interleaving spreads it over all of them.

    Each run ends with a garbage collection, timed with it: cyclic garbage a contender
    leaves is collected on its own clock, not during the next contender's run (where a
    collection triggered by the next one's allocations would bill it to that one).
    """
    for fn in contenders.values():
        fn()  # warm-up
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            gc.collect()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.3f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.3f} ms"
    return f"{seconds * 1e6:8.2f} us"


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print ``rows`` with each row's ratio to its baseline row (lower is better)."""
    by_name = {row.name: row for row in rows}
    print(f"\n## {title}")
    width = max(len(row.name) for row in rows)
    for row in rows:
        ratio = ""
        if row.baseline is not None and row.baseline in by_name:
            base = by_name[row.baseline].seconds
            ratio = f"{row.seconds / base:6.2f}x {row.baseline}" if base > 0 else ""
        target = f"target {row.target}" if row.target else ""
        extra = "  ".join(part for part in (ratio, target, row.note) if part)
        print(f"  {row.name:<{width}}  {_fmt(row.seconds)}  {extra}")
