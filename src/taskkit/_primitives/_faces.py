"""The faces that primitives of every storage kind share, each written once.

A kind (``_local``: one process; ``_process``: shared memory) writes the state
functions and one ``Wait`` description per operation (see ``_waiting``); the faces
here run that description blocking or awaited, so ``wait`` and ``await_`` of an
in-process event and of a process event are the same two lines::

    Event (a kind's class)                 EventFaces
      _try, _is_set  ─► _WAIT: Wait ──────►  wait(timeout)    = block(_WAIT, self, ...)
                        (class attribute)    await_(timeout)  = ablock(_WAIT, self, ...)
"""

from __future__ import annotations

from typing import ClassVar

from ._common import AcquireContext
from ._waiting import Wait, ablock, block

__all__ = ["AcquireFaces", "EventFaces"]


class EventFaces:
    """``wait`` and ``await_`` over the class's ``_wait`` description."""

    __slots__ = ()
    _wait: ClassVar[Wait[bool]]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True if it is set."""
        return block(self._wait, self, None, timeout)

    async def await_(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``wait``."""
        return await ablock(self._wait, self, None, timeout)


class AcquireFaces(AcquireContext):
    """``acquire``, ``aacquire``, ``with`` and ``async with`` over ``_acquire``."""

    __slots__ = ()
    _acquire: ClassVar[Wait[bool]]

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a unit, waiting up to ``timeout`` seconds for one; True if taken."""
        return block(self._acquire, self, None, timeout)

    async def aacquire(self, timeout: float | None = None) -> bool:
        """The awaitable twin of ``acquire``."""
        return await ablock(self._acquire, self, None, timeout)
