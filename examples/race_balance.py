"""The tutorial's lost update: missed by stress testing, found and shrunk by taskkit.testing.

Run: python examples/race_balance.py
"""

from __future__ import annotations

import threading

from hypothesis import given, settings

from taskkit.testing import explore, interleavings, stress

balance = 0
lock = threading.Lock()  # created after importing taskkit.testing, so a run controls it


def change_it(n: int) -> None:
    global balance
    balance = balance + n
    balance = balance - n


def change_it_locked(n: int) -> None:
    global balance
    with lock:
        balance = balance + n
        balance = balance - n


def reset() -> None:
    global balance
    balance = 0


def many(n: int) -> None:
    for _ in range(5_000):
        change_it(n)


# 1. Stress testing: real threads, a 1 us switch interval, many runs.  On CPython 3.10+ the
#    GIL switches only at calls and loop back-edges, never between the read and the write.
report = stress(
    [lambda _: many(5), lambda _: many(8)],
    setup=reset,
    invariant=lambda _: balance == 0,
    iterations=20,
)
print(f"stress: {report.failures} of {report.iterations} runs went wrong")


# 2. A property test: Hypothesis draws interleavings, finds the race, shrinks it.
@settings(database=None, deadline=None, print_blob=False)
@given(s=interleavings())
def test_balance_stays_zero(s):  # type: ignore[no-untyped-def]
    reset()
    s.run([change_it, change_it], args=(5,))
    assert balance == 0, f"balance is {balance}"


try:
    test_balance_stays_zero()
except AssertionError as error:
    print(f"\nHypothesis found it: {error}")
    for note in getattr(error, "__notes__", []):  # the falsifying example and its table
        print(note)

# 3. The fix, proved: explore checks every interleaving of the locked version.
proof = explore(
    [lambda _: change_it_locked(5), lambda _: change_it_locked(8)],
    setup=reset,
    invariant=lambda _: balance == 0,
)
print(f"\nwith the lock: {proof}")
