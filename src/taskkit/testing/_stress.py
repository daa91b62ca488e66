"""Stress mode: real threads, a tiny switch interval, a barrier start, many iterations.

A complement to the controlled runtime, not a replacement: it runs the real backend, so it
can catch races that the scheduler cannot model (inside C extensions, with outside threads),
but on GIL builds of CPython 3.10 and newer the interpreter switches threads only at calls
and loop back-edges, so a race between two plain bytecodes (``balance = balance + n``) is
practically never seen by it.  A clean stress report is evidence, never a proof.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._invariant import invariant_failure

__all__ = ["StressReport", "stress"]


@dataclass
class StressReport:
    """What ``stress`` saw.

    Attributes:
        ok: no iteration failed.
        iterations: how many times the tasks ran.
        failures: how many iterations failed.
        first_failure: the first failure's exception, if any.
    """

    ok: bool
    iterations: int
    failures: int
    first_failure: BaseException | None = None

    def __str__(self) -> str:
        if self.ok:
            return (
                f"ok in {self.iterations} stress iterations (evidence, not proof: stress "
                "cannot see races between plain bytecodes on GIL builds of CPython >= 3.10)"
            )
        return f"{self.failures}/{self.iterations} stress iterations failed: {self.first_failure!r}"


def stress(
    tasks: Sequence[Callable[..., Any]],
    *,
    setup: Callable[[], Any] | None = None,
    invariant: Callable[[Any], object] | None = None,
    args: Sequence[object] = (),
    iterations: int = 200,
    switch_interval: float = 1e-6,
) -> StressReport:
    """Run ``tasks`` on real threads ``iterations`` times, starting them together each time.

    Each iteration calls ``setup()`` (if given) and passes its result to every task (else
    ``*args``), starts one thread per task behind a barrier, joins them, and checks
    ``invariant(state)``.  ``sys.setswitchinterval(switch_interval)`` is in force meanwhile.

    Returns:
        A ``StressReport`` counting the iterations where a task raised or the invariant failed.
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    failures, first = 0, None
    try:
        for _ in range(iterations):
            state = setup() if setup is not None else None
            call_args = (state,) if setup is not None else tuple(args)
            barrier = threading.Barrier(len(tasks))
            errors: list[BaseException] = []

            def body(
                fn: Callable[..., Any],
                barrier: threading.Barrier = barrier,
                call_args: tuple[object, ...] = call_args,
                errors: list[BaseException] = errors,
            ) -> None:
                barrier.wait()
                try:
                    fn(*call_args)
                except BaseException as error:
                    errors.append(error)

            threads = [threading.Thread(target=body, args=(fn,)) for fn in tasks]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            failure: BaseException | None = errors[0] if errors else None
            if failure is None and invariant is not None:
                failure = invariant_failure(
                    invariant, state, AssertionError, "invariant does not hold"
                )
            if failure is not None:
                failures += 1
                first = first or failure
    finally:
        sys.setswitchinterval(old)
    return StressReport(failures == 0, iterations, failures, first)
