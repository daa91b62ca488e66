"""The race-testing part of ``python -m taskkit tour``: the tutorial's lost update, found.

The tutorial's two threads run ``balance = balance + n; balance = balance - n``.  Stress
testing on CPython 3.10+ practically never shows the race; ``taskkit.testing.explore`` finds
it at once, prints the interleaving, and then proves the locked version correct.
"""

from __future__ import annotations

import threading

from taskkit.testing import explore, stress

__all__ = ["tour_section"]

balance = 0
lock = threading.Lock()


def change_it(n: int) -> None:
    global balance
    balance = balance + n
    balance = balance - n


def change_it_locked(n: int) -> None:
    global balance
    with lock:
        balance = balance + n
        balance = balance - n


def _reset() -> None:
    global balance
    balance = 0


def _loop(n: int) -> None:
    for _ in range(2_000):
        change_it(n)


def tour_section() -> None:
    """Stress the tutorial's race, find it with explore, then prove the fix."""
    print("Race testing: the tutorial's balance = balance + n; balance = balance - n")
    missed = stress(
        [lambda _: _loop(5), lambda _: _loop(8)],
        setup=_reset,
        invariant=lambda _: balance == 0,
        iterations=20,
    )
    print(
        f"  stress: 20 runs of two threads x 2000 updates, switch interval 1 us: "
        f"{missed.failures} failed"
    )
    report = explore(
        [lambda _: change_it(5), lambda _: change_it(8)],
        setup=_reset,
        invariant=lambda _: balance == 0,
    )
    cx = report.counterexample
    if cx is not None:
        print(f"  explore: found after {report.executions} runs; the failing interleaving:")
        print("    " + cx.table.replace("\n", "\n    "))
    proof = explore(
        [lambda _: change_it_locked(5), lambda _: change_it_locked(8)],
        setup=_reset,
        invariant=lambda _: balance == 0,
    )
    verdict = "every interleaving checked" if proof.ok and proof.complete else str(proof)
    print(f"  with a lock: {verdict} ({proof.executions} runs), the balance is always 0")
