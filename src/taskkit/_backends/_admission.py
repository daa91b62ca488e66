"""``max_workers`` for backends that run every task on one event-loop thread.

The asyncio and coroutine backends start each submitted task on their loop's
thread; ``max_workers`` bounds how many are in progress there at once.  This
object holds the ones waiting for a place and starts them as places free up.
It is used only from the loop's thread, so it needs no lock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from .._core._ledger import Task as _Task

__all__ = ["Admission"]


class Admission:
    """Start submitted tasks while fewer than ``limit`` run; queue the rest."""

    __slots__ = ("_limit", "_releasing", "_start", "admit", "running", "waiting")

    def __init__(self, limit: int | None, start: Callable[[_Task], None]) -> None:
        self._limit, self._start = limit, start
        #: Tasks started and not yet released; ``start`` counts its task in.
        self.running = 0
        self.waiting: collections.deque[_Task] = collections.deque()
        self._releasing = False  # admitting waiting tasks (guards against deep recursion)
        #: ``admit(task)``: start ``task`` now, or queue it while ``limit`` tasks run.
        #: Without a limit every task starts at once: ``admit`` is ``start`` itself.
        self.admit: Callable[[_Task], None] = start if limit is None else self._admit

    @property
    def limit(self) -> int | None:
        """The most tasks started at once, or None for no limit."""
        return self._limit

    def _admit(self, task: _Task) -> None:
        if self.running >= self._limit:  # type: ignore[operator]  # a limit is set
            self.waiting.append(task)
        else:
            self._start(task)

    def release(self) -> None:
        """A started task ended: start the next waiting ones."""
        self.running -= 1
        if self._releasing or not self.waiting:
            return  # none waits, or called back from a start below (whose loop admits the next)
        self._releasing = True
        try:
            waiting, limit = self.waiting, self._limit
            while waiting and (limit is None or self.running < limit):
                self._start(waiting.popleft())
        finally:
            self._releasing = False
