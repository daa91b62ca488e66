"""taskkit.testing: time to find each classic bug, a complete check, and the cost per switch.

* time to find (and minimize) each of the ten classic bugs of ``tests/test_testing_bugs.py``
  with ``explore()`` defaults, and with ``interleavings()`` under Hypothesis defaults
  (random seeds: the median and the worst over the repeats, including shrinking);
* stress mode on the tutorial's race, the peer it is compared with: how often it fails;
* a complete check (``report.complete``) of a three-task lock-protected counter;
* the cost of one switch point that keeps the current task running, and of one that hands
  over to another task, on controlled threads and on the coroutine scheduler, against the
  same code run uncontrolled.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hypothesis import given, seed, settings

from benchmarks._util import Row, median_time, print_table
from taskkit.testing import checkpoint, explore, interleavings, replay, stress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import test_testing_bugs as bugs


def _time_explore(bug: Any) -> float:
    start = time.perf_counter()
    report = explore(bug.tasks, setup=bug.setup, invariant=bug.invariant)
    elapsed = time.perf_counter() - start
    assert not report.ok, bug.name
    return elapsed


def _time_hypothesis(bug: Any, seed_value: int) -> tuple[float, int]:
    examples = [0]

    @seed(seed_value)
    @settings(database=None, deadline=None, print_blob=False, max_examples=100)
    @given(s=interleavings())
    def prop(s: Any) -> None:
        examples[0] += 1
        state = bug.setup()
        s.run(bug.tasks, args=(state,))
        if bug.invariant is not None:
            assert bug.invariant(state)

    start = time.perf_counter()
    try:
        prop()
    except BaseException as error:
        if not isinstance(error, bug.error):
            raise
    else:
        return float("inf"), examples[0]
    return time.perf_counter() - start, examples[0]


def _find_rows(repeats: int) -> list[Row]:
    rows = []
    for bug in bugs.BUGS:
        explore_s = statistics.median(_time_explore(bug) for _ in range(max(1, repeats)))
        times, counts = [], []
        for i in range(max(3, repeats)):
            t, n = _time_hypothesis(bug, 1000 + i)
            times.append(t)
            counts.append(n)
        hyp = statistics.median(times)
        target = "<= 2 s" if bug is bugs.TUTORIAL else "<= 1 s"
        rows.append(Row(f"{bug.name}: explore", explore_s, target=target))
        rows.append(
            Row(
                f"{bug.name}: interleavings",
                hyp,
                target=target,
                note=f"worst {max(times):.2f} s; examples incl. shrinking: median "
                f"{statistics.median(counts):.0f}, max {max(counts)}",
            )
        )
    return rows


def _stress_row() -> Row:
    def many(n: int) -> None:
        for _ in range(10_000):
            bugs.change_it(n)

    start = time.perf_counter()
    report = stress(
        [lambda _: many(5), lambda _: many(8)],
        setup=bugs.reset_balance,
        invariant=lambda _: bugs.balance == 0,
        iterations=20,
    )
    elapsed = time.perf_counter() - start
    return Row(
        "tutorial race: stress, 20 x 2 x 10k updates",
        elapsed,
        note=f"{report.failures}/20 runs failed (the GIL hides the race)",
    )


class _Box:
    value = 0


def _complete_row(repeats: int) -> Row:
    lock = threading.Lock()

    def inc(box: _Box) -> None:
        with lock:
            box.value += 1

    holder: list[Any] = []

    def run() -> None:
        holder[:] = [explore([inc, inc, inc], setup=_Box, invariant=lambda b: b.value == 3)]

    seconds = median_time(run, repeats)
    report = holder[0]
    assert report.ok
    assert report.complete
    return Row(
        "3-task locked counter, complete check",
        seconds,
        target="<= 1 s",
        note=f"{report.executions} executions",
    )


STEPS = 5_000


class _Cell:
    x = 0


def _reads(c: _Cell) -> None:
    for _ in range(STEPS):
        c.x  # noqa: B018 - one traced attribute read: one switch point


def _handoffs(c: _Cell) -> None:
    for _ in range(STEPS // 20):
        checkpoint()


async def _areads(c: _Cell) -> None:
    for _ in range(STEPS):
        await checkpoint()


def _overhead_rows(repeats: int) -> list[Row]:
    rows = []
    cell = _Cell()
    plain = median_time(lambda: _reads(cell), repeats) / STEPS
    rows.append(Row("plain loop step (uncontrolled)", plain))

    def controlled_reads() -> None:
        s = replay("")
        assert s is not None
        s.run([_reads], args=(cell,))

    # every loop step is two switch points here: the attribute read and the next item
    per = median_time(controlled_reads, repeats) / (2 * STEPS)
    rows.append(
        Row("thread task: switch point, same task continues", per, note="tracer + decision")
    )
    # alternate two tasks at every checkpoint: each one a baton hand-over between threads
    n = STEPS // 20
    schedule = ",".join(f"T{k % 2}@{k}>T{(k + 1) % 2}" for k in range(1, 2 * n))

    def controlled_handoffs() -> None:
        s = replay(schedule)
        assert s is not None
        s.run([_handoffs, _handoffs], args=(cell,))

    per = median_time(controlled_handoffs, repeats) / (2 * n)
    rows.append(Row("thread task: switch to another thread task", per, note="baton hand-over"))

    def coroutine_reads() -> None:
        s = replay("")
        assert s is not None
        s.run([_areads], args=(cell,))

    per = median_time(coroutine_reads, repeats) / STEPS
    rows.append(Row("coroutine task: await checkpoint(), same task", per))
    coroutine_schedule = ",".join(f"T{k % 2}@{k}>T{(k + 1) % 2}" for k in range(1, 2 * STEPS))

    def coroutine_handoffs() -> None:
        s = replay(coroutine_schedule)
        assert s is not None
        s.run([_areads, _areads], args=(cell,))

    per = median_time(coroutine_handoffs, repeats) / (2 * STEPS)
    rows.append(Row("coroutine task: switch to another coroutine", per))
    return rows


def _search_rows() -> list[Row]:
    """Executions and seconds to the first bug, and to a complete proof, on fixed programs."""
    from tests import test_testing_search as search

    programs = [
        ("Condition with if: first bug", [search.consumer_if] * 2 + [search.producer], False),
        (
            "Condition with while, one notify_all: proof",
            [search.consumer_while] * 2 + [search.producer_all],
            True,
        ),
        (
            "Condition with while, a notify per item: proof",
            [search.consumer_while] * 2 + [search.producer],
            True,
        ),
    ]
    rows = []
    for name, tasks, proof in programs:
        start = time.perf_counter()
        report = explore(tasks, setup=search.Shelf, invariant=search.both_taken)
        elapsed = time.perf_counter() - start
        assert report.ok is proof, name
        assert report.complete or not proof, name
        cx = report.counterexample
        detail = f"{report.executions} executions" + (
            f", {cx.preemptions} preemption(s)" if cx is not None else ", complete"
        )
        rows.append(Row(name, elapsed, note=detail))
    return rows


class _Pair:
    a = 0
    b = 0


def _ten_steps(p: _Pair) -> None:
    # five reads and five writes of attributes: ten switch points
    for _ in range(5):
        p.a = p.b


def _per_execution_row(repeats: int) -> list[Row]:
    """What one execution of a 2-task, 10-step program costs, against running it plainly."""
    pair = _Pair()
    plain = median_time(lambda: (_ten_steps(pair), _ten_steps(pair)), repeats)
    executions = 300
    done: list[int] = []

    def searched() -> None:
        report = explore([_ten_steps, _ten_steps], setup=_Pair, max_executions=executions)
        done.append(report.executions)

    per = median_time(searched, repeats) / done[-1]

    def replayed() -> None:
        for _ in range(executions):
            s = replay("")
            s.run([_ten_steps, _ten_steps], args=(pair,))

    per_replay = median_time(replayed, repeats) / executions
    return [
        Row("2 tasks x 10 steps, run once uncontrolled", plain),
        Row("2 tasks x 10 steps, one execution of explore", per, target="<= 0.5 ms"),
        Row(
            "2 tasks x 10 steps, one run of a Scheduler",
            per_replay,
            note="interleavings()/replay(): also names primitives for reports",
        ),
    ]


def main(repeats: int) -> None:
    print_table(
        "taskkit.testing: time to find (and minimize) each classic bug", _find_rows(repeats)
    )
    print_table("taskkit.testing: stress mode, the peer, on the tutorial's race", [_stress_row()])
    print_table("taskkit.testing: complete check", [_complete_row(repeats)])
    print_table("taskkit.testing: cost per switch point", _overhead_rows(repeats))
    print_table("taskkit.testing: search, to the first bug and to a proof", _search_rows())
    print_table("taskkit.testing: one execution", _per_execution_row(repeats))


if __name__ == "__main__":
    main(5)
