"""``ex.queue()``, ``ex.lock()``, ``ex.event()``, ``ex.semaphore()``, ``ex.value()``.

The executor's primitive factory: each makes the primitive of the executor's
family (``_primitives.create``), and the executor's ``shutdown()`` frees them
(``_primitives._common.shut_down``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._errors import ExecutorClosed

if TYPE_CHECKING:
    from .._primitives._protocols import Event, Lock, Queue, Semaphore, Value

__all__ = ["PrimitiveFactory"]

T = TypeVar("T")


class PrimitiveFactory:
    """The primitive-making methods of ``Executor``."""

    backend: ClassVar[str] = "?"
    _shut_down: bool

    def __init__(self, family: str | None) -> None:
        #: Which family ``queue()``, ``lock()``... draw from; ``None``: chosen by ``backend``.
        self._family = family
        # Primitives made by queue(), lock()...: shutdown() closes them and frees their
        # OS resources.  Weak: one the program dropped is freed by its own finalizer.
        self._primitives: weakref.WeakSet[Any] = weakref.WeakSet()

    def queue(self, maxsize: int = 0) -> Queue[Any]:
        """Return a FIFO queue this executor's tasks and its caller can share.

        ``q.put(x)`` in one task and ``q.get()`` in another returns ``x``; pass the
        queue to tasks as an ordinary argument (process tasks too).  ``maxsize > 0``
        bounds it: ``put`` then waits for room.  See ``docs/primitives.md``.
        Annotate it to type its items: ``q: taskkit.Queue[int] = ex.queue()``.
        """
        return self._primitive("queue", maxsize)  # type: ignore[no-any-return]

    def lock(self) -> Lock:
        """Return a lock this executor's tasks share (``with lock:``, ``async with lock:``).

        A process executor's lock held by a worker that dies is taken over by the
        next acquirer, whose ``previous_holder_died`` is then True.
        """
        return self._primitive("lock")  # type: ignore[no-any-return]

    def event(self) -> Event:
        """Return an event (a flag tasks wait for) this executor's tasks share."""
        return self._primitive("event")  # type: ignore[no-any-return]

    def semaphore(self, n: int = 1) -> Semaphore:
        """Return a semaphore with ``n`` free units this executor's tasks share."""
        return self._primitive("semaphore", n)  # type: ignore[no-any-return]

    def value(self, initial: T) -> Value[T]:
        """Return a shared value holding ``initial``, with an atomic ``update(fn)``.

        Its type follows ``initial``: ``ex.value(0)`` is a ``Value[int]``; annotate
        for more (``v: taskkit.Value[int | None] = ex.value(None)``).
        """
        return self._primitive("value", initial)  # type: ignore[no-any-return]

    def _primitive(self, kind: str, *args: Any) -> Any:
        from .._primitives import create, family_of
        from .._primitives._common import shut_down

        self._refuse_after_shutdown(kind)
        family = self._family or family_of(self.backend)
        primitive = create(family, kind, *args)
        self._primitives.add(primitive)
        try:
            self._refuse_after_shutdown(kind)  # shutdown() ran meanwhile, without this one
        except ExecutorClosed:
            shut_down(primitive, close=True)
            raise
        return primitive

    def _refuse_after_shutdown(self, kind: str) -> None:
        # After shutdown() nothing would free a new primitive's OS resources (shared
        # memory, for processes), and no task of this executor can use it.  close()
        # still allows one: the submitted work runs on and may be handed it.
        if self._shut_down:
            raise ExecutorClosed(f"cannot make a {kind}: the {self.backend} executor is shut down")

    def _free_primitives(self, close: bool) -> None:
        """Unlink shared memory and semaphores by name (mappings stay valid); close
        queues once no task can use them (``close``), so a get() on a drained one cannot hang."""
        from .._primitives._common import shut_down

        for primitive in list(self._primitives):
            shut_down(primitive, close=close)
