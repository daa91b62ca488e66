"""One daemon thread that fires deadline callbacks, shared by every executor.

Per-task timeouts need a clock that watches many deadlines cheaply: a heap of
``(deadline, sequence, callback)`` entries and one thread that sleeps until the
earliest.  Callbacks run on that thread, so they must be quick (fail a future,
kill a worker) and must not block.

The thread must never die: every executor's deadlines depend on it.  So a
callback that raises is logged (``taskkit.deadlines``) and the thread goes
on, and a wait is never longer than ``threading.TIMEOUT_MAX`` (a far-off or
infinite deadline would otherwise raise ``OverflowError`` in ``wait``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Deadline", "call_at", "call_later"]

_log = logging.getLogger("taskkit.deadlines")


class Deadline:
    """A scheduled callback; ``cancel()`` it if the task finishes first."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        """Stop the callback from running (harmless if it already ran)."""
        self.cancelled = True
        # A cancelled deadline waits in the heap until its time: let go of the callback
        # now, so that the finished task it names (and its result) can be freed.
        self.callback = _nothing


def _nothing() -> None:
    pass


class _Clock:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._wakeup = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, callback: Callable[[], object]) -> Deadline:
        if when != when:  # nan: it would break the heap's order
            raise ValueError("a deadline cannot be nan")
        deadline = Deadline(when, callback)
        with self._wakeup:
            heapq.heappush(self._heap, (when, next(self._counter), deadline))
            if self._thread is None or not self._thread.is_alive():
                # Started lazily, and again after a fork (threads do not survive one).
                self._thread = threading.Thread(
                    target=self._run, name="taskkit-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._wakeup.notify()
        return deadline

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        due = heapq.heappop(self._heap)[2]
                        break
                    if self._heap:
                        self._wakeup.wait(min(self._heap[0][0] - now, threading.TIMEOUT_MAX))
                    else:
                        self._wakeup.wait()
            if not due.cancelled:
                due.cancelled = True
                try:
                    due.callback()
                except BaseException:
                    _log.exception("a deadline callback failed; the deadline thread goes on")


_clock = _Clock()


def call_at(when: float, callback: Callable[[], object]) -> Deadline:
    """Run ``callback()`` on the deadline thread once ``time.monotonic()`` reaches ``when``."""
    return _clock.call_at(when, callback)


def call_later(delay: float, callback: Callable[[], object]) -> Deadline:
    """Run ``callback()`` on the deadline thread after ``delay`` seconds."""
    return _clock.call_at(time.monotonic() + delay, callback)
