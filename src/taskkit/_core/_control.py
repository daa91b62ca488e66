"""Switch-point hooks: how taskkit's primitives and futures take part in a controlled run.

``taskkit.testing`` runs the tasks of a test one at a time and decides, at every *switch
point*, which task runs next (see ``docs/testing.md``).  Code elsewhere in taskkit (queues,
locks, events, semaphores, values, futures) tells that scheduler where its visible operations
and its blocking waits are through this module.  It imports nothing, so any module may import
it without a cycle, and when no run is controlled every check below costs one global read.

The protocol, for the author of a primitive::

    from taskkit._core import _control

    def put_nowait(self, item):
        if _control.hook is not None:            # one global read when no run is controlled
            _control.switch("queue.put", self)   # other tasks may run first ...
        self._items.append(item)                 # ... but none runs during this operation

    def get(self, timeout=None):
        if _control.controlled():                # the caller is a task of a controlled run
            ok = _control.wait_until(lambda: bool(self._items), f"{self!r}.get()", self, timeout)
            if not ok:
                raise queue.Empty                # a virtual timeout expired
            return self._items.popleft()
        ...                                      # the real, blocking implementation

    async def aget(self):
        if _control.controlled():
            await _control.await_until(lambda: bool(self._items), f"{self!r}.aget()", self)
            return self._items.popleft()
        ...

The rules:

1. Call ``switch(op, obj)`` just before an operation other tasks can observe, and
   ``observe(op, obj)`` just before a read of a snapshot of ``obj`` (``qsize()``,
   ``locked()``, ``is_set()``): a read is a switch point too, or a test that branches on
   it would be "proven" without the orders in which the snapshot changes under it.  When it returns,
   no other task runs until the caller reaches its next switch point, so plain Python that
   follows (on the primitive's own state) is atomic.  ``switch`` is a no-op for callers that
   are not tasks of the controlled run (the executor's own threads, the test's main thread).
2. Never block for real while ``controlled()``: state the condition instead, with
   ``wait_until(ready, what, obj, timeout)``.  ``ready()`` must be cheap and free of side
   effects; the scheduler may call it from any thread, at any time, to decide which tasks can
   run.  ``what`` names the wait in ``Deadlock`` reports ("queue.get() on <Queue 0 items>"): a
   string, or an object whose ``str()`` describes the primitive as it is when reported.
   ``wait_until`` is itself a switch point; it returns ``True`` once ``ready()`` holds and the
   caller is running again (so the operation that follows sees the state ``ready()`` saw), or
   ``False`` when ``timeout`` elapsed.  Time in a controlled run is virtual: a timed wait
   expires only when no other task can make progress, so timeouts never make a test slow.
3. ``obj`` names the shared object the operation touches.  The systematic search
   (``explore``) uses it to skip reorderings of operations on different objects, so pass the
   primitive itself, the same object for every operation that can affect the same state.
4. In ``async def`` code use the awaitable twins ``aswitch`` and ``await_until``: a coroutine
   task is suspended at the ``await``, not inside a plain call.
5. A ``Future`` waits with ``wait_until(fut.done, "future.result()", fut, timeout)`` and
   completing it is a ``switch("future.set_result", fut)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from ._errors import UsageError

__all__ = [
    "Hook",
    "active",
    "aswitch",
    "await_until",
    "controlled",
    "hook",
    "observe",
    "switch",
    "wait_until",
]


class Hook(Protocol):
    """What a controlled run provides; ``taskkit.testing`` installs one as ``hook``."""

    def controls_caller(self) -> bool:
        """Return True if the calling thread or coroutine is a task of this run."""

    def switch(self, op: str, obj: object) -> None:
        """Let the scheduler run other tasks before the caller's operation ``op`` on ``obj``."""

    def observe(self, op: str, obj: object) -> None:
        """Like ``switch``, before an operation that only reads ``obj``'s state."""

    def wait_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> bool:
        """Block the calling task until ``ready()`` holds; False if ``timeout`` expired."""

    def aswitch(self, op: str, obj: object) -> Awaitable[None]:
        """The awaitable twin of ``switch`` for coroutine tasks."""

    def await_until(
        self, ready: Callable[[], object], what: object, obj: object, timeout: float | None
    ) -> Awaitable[bool]:
        """The awaitable twin of ``wait_until`` for coroutine tasks."""


#: The controlled run in progress, or None.  Only taskkit.testing assigns it.
hook: Hook | None = None


def active() -> bool:
    """Return True while a controlled run is in progress (in any thread)."""
    return hook is not None


def controlled() -> bool:
    """Return True if the caller is a task of a controlled run (one global read if none is)."""
    h = hook
    return h is not None and h.controls_caller()


def switch(op: str, obj: object = None) -> None:
    """Mark a switch point before the visible operation ``op`` on ``obj``; see rule 1."""
    h = hook
    if h is not None:
        h.switch(op, obj)


def observe(op: str, obj: object = None) -> None:
    """Mark a switch point before reading a snapshot of ``obj`` (``qsize()``); see rule 1."""
    h = hook
    if h is not None:
        h.observe(op, obj)


def wait_until(
    ready: Callable[[], object], what: object, obj: object = None, timeout: float | None = None
) -> bool:
    """Block the calling task until ``ready()`` holds, as the scheduler sees it; see rule 2.

    Raises:
        UsageError: no run is controlled (check ``controlled()`` first).
    """
    h = hook
    if h is None:
        raise UsageError("wait_until() needs a controlled run; check controlled() first")
    return h.wait_until(ready, what, obj, timeout)


def aswitch(op: str, obj: object = None) -> Awaitable[None]:
    """Return an awaitable switch point for a coroutine task; see rule 4."""
    h = hook
    if h is None:
        raise UsageError("aswitch() needs a controlled run; check controlled() first")
    return h.aswitch(op, obj)


def await_until(
    ready: Callable[[], object], what: object, obj: object = None, timeout: float | None = None
) -> Awaitable[bool]:
    """Return an awaitable that suspends a coroutine task until ``ready()``; see rule 4."""
    h = hook
    if h is None:
        raise UsageError("await_until() needs a controlled run; check controlled() first")
    return h.await_until(ready, what, obj, timeout)
