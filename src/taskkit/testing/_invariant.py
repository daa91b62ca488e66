"""The invariant check after an execution, as ``explore``, ``replay`` and ``stress`` make it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["invariant_failure"]


def invariant_failure(
    invariant: Callable[[Any], object],
    state: Any,
    failure: Callable[[str], BaseException],
    message: str,
) -> BaseException | None:
    """The failure ``invariant(state)`` reports: ``failure("message: state")`` if it is
    false, the exception it raised, or None if it holds."""
    try:
        if not invariant(state):
            return failure(f"{message}: {state!r}")
    except Exception as error:
        return error
    return None
