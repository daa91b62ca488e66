"""``python -m taskkit tour``: the tutorial's scenarios on every backend, then measured advice.

Each part of the tour is a module of this package with a ``tour_section()`` function,
written as a user of taskkit would write it (public API only; ``taskkit.testing`` traces it
like any user's code).  The parts run in the tutorial's order and end with a table of
timings per workload and backend, measured here, and the backend it recommends for each.
A part that needs an optional dependency says so and is skipped; any other error is a bug
and is raised.
"""

from __future__ import annotations

import importlib

import taskkit

__all__ = ["main"]

# The tutorial's order: subprocesses, the process pool, shared state, threads and the GIL,
# the data race, coroutines and async I/O; then scaling out, and the measured advice.
SECTIONS = (
    "pipelines",
    "processes",
    "shared_state",
    "threads",
    "races",
    "coroutines",
    "cluster",
    "timing",
)


def main() -> None:
    """Run the tour."""
    print("taskkit tour: the tutorial's scenarios, each on the backend that fits it.")
    for name in SECTIONS:
        module = importlib.import_module(f"{__name__}.{name}")
        try:
            module.tour_section()
        except taskkit.BackendUnavailable as exc:
            print(f"(skipped: {exc})")
