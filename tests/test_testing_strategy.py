"""``interleavings()`` finds every shallow bug of the classic programs within 200 examples.

A correctness property of the strategy, not a speed: with the settings taskkit's own tests
use (``derandomize=True``) and each of several fixed seeds, the examples it draws must reach
each bug that needs at most ``max_preemptions`` preemptions within 200 examples.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import Phase, given, seed, settings

import test_testing_bugs as bugs
import test_testing_search as search
import test_testing_soundness as soundness
from taskkit import Deadlock
from taskkit.testing import interleavings

pytestmark = pytest.mark.timeout(300)

SEEDS = range(10)


class Program:
    def __init__(
        self,
        name: str,
        tasks: list[Callable[..., Any]],
        setup: Callable[[], Any],
        invariant: Callable[[Any], object] | None,
        error: type[BaseException],
    ) -> None:
        self.name, self.tasks, self.setup, self.invariant = name, tasks, setup, invariant
        self.error = error


PROGRAMS = [
    *(Program(b.name, b.tasks, b.setup, b.invariant, b.error) for b in bugs.BUGS),
    Program(
        "condition waited on with if",
        [search.consumer_if, search.consumer_if, search.producer],
        search.Shelf,
        search.both_taken,
        IndexError,
    ),
    Program(
        "check-then-get on a queue",
        [soundness.take_if_sized, soundness.take_if_sized],
        soundness.one_item(queue.Queue),
        None,
        Deadlock,
    ),
]


class Found(Exception):
    """Stops the search at the first failing example."""


def examples_to_find(program: Program, max_preemptions: int, seed_value: int) -> int | None:
    count = [0]

    @seed(seed_value)
    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        phases=(Phase.generate,),
    )
    @given(s=interleavings(max_preemptions=max_preemptions))
    def prop(s: Any) -> None:
        count[0] += 1
        state = program.setup()
        try:
            s.run(program.tasks, args=(state,))
            if program.invariant is not None:
                assert program.invariant(state)
        except (AssertionError, program.error) as error:
            raise Found from error

    try:
        prop()
    except Found:
        return count[0]
    return None


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_every_shallow_bug_is_found_within_200_examples_for_every_seed(program: Program) -> None:
    # the default bound, 3, with the settings taskkit's own tests use
    missed = [s for s in SEEDS if examples_to_find(program, 3, s) is None]
    assert not missed, f"{program.name}: not found within 200 examples with seeds {missed}"
