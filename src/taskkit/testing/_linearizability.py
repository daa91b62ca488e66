"""Is a concurrent history linearizable with respect to a sequential model?

A history is a list of operations, each with the client that made it, its name, arguments,
result, and the logical times of its call and its return.  It is *linearizable* if the
operations can be put in one sequential order that (1) respects real time: an operation that
returned before another was called comes first, and (2) gives every operation the result the
sequential model gives.  The search is Wing and Gong's, with Lowe's memo of (linearized
subset, model state) pairs so that each is explored once; model states must be hashable.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .._core import _control

__all__ = [
    "History",
    "Linearization",
    "LockModel",
    "Model",
    "Operation",
    "QueueModel",
    "Raised",
    "RegisterModel",
    "check_linearizable",
]

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True)
class Raised:
    """The result of an operation that raised: compares equal by exception type."""

    type: type[BaseException]

    def __repr__(self) -> str:
        return f"raised {self.type.__name__}"


@dataclass(frozen=True)
class Operation:
    """One completed (or pending, ``ret is None``) operation of a history."""

    client: object
    name: str
    args: tuple[object, ...]
    result: object
    call: int
    ret: int | None

    def __repr__(self) -> str:
        args = ", ".join(map(repr, self.args))
        return f"{self.client}: {self.name}({args}) -> {self.result!r}"


class Model(Protocol[S]):
    """A sequential specification: ``apply(state, name, args) -> (result, new_state)``."""

    initial: S

    def apply(self, state: S, name: str, args: tuple[object, ...]) -> tuple[object, S]:
        """Return what ``name(*args)`` gives in ``state``, and the state after it."""


class _Impossible:
    """A result no real operation has: the operation cannot take effect in that state."""

    def __repr__(self) -> str:
        return "<cannot happen here>"


IMPOSSIBLE: Any = _Impossible()


class QueueModel:
    """FIFO queue: ``put(x)``, ``get()`` (blocks when empty), ``get_nowait()``, ``qsize()``."""

    initial: tuple[object, ...] = ()

    def apply(
        self, state: tuple[object, ...], name: str, args: tuple[object, ...]
    ) -> tuple[object, tuple[object, ...]]:
        if name in ("put", "put_nowait"):
            return None, (*state, args[0])
        if name == "get":
            return (state[0], state[1:]) if state else (IMPOSSIBLE, state)
        if name == "get_nowait":
            import queue

            return (state[0], state[1:]) if state else (Raised(queue.Empty), state)
        if name == "qsize":
            return len(state), state
        raise ValueError(f"QueueModel has no operation {name!r}")


class LockModel:
    """Mutex: ``acquire()`` (blocks while held) returns True; ``release()``."""

    initial: bool = False

    def apply(self, state: bool, name: str, args: tuple[object, ...]) -> tuple[object, bool]:
        if name == "acquire":
            return (IMPOSSIBLE, state) if state else (True, True)
        if name == "release":
            return (None, False) if state else (Raised(RuntimeError), state)
        raise ValueError(f"LockModel has no operation {name!r}")


class RegisterModel:
    """A single value: ``write(x)``, ``read()``, ``cas(old, new) -> bool``."""

    def __init__(self, initial: Hashable = None) -> None:
        self.initial = initial

    def apply(self, state: Any, name: str, args: tuple[object, ...]) -> tuple[object, Any]:
        if name == "write":
            return None, args[0]
        if name == "read":
            return state, state
        if name == "cas":
            return (True, args[1]) if state == args[0] else (False, state)
        raise ValueError(f"RegisterModel has no operation {name!r}")


@dataclass
class Linearization:
    """The checker's verdict; true when the history is linearizable.

    Attributes:
        ok: a valid sequential order exists.
        order: one such order (when ok).
        explanation: why not (when not ok): the longest prefix that could be linearized.
    """

    ok: bool
    order: list[Operation] | None
    explanation: str = ""

    def __bool__(self) -> bool:
        return self.ok


def check_linearizable(history: Sequence[Operation], model: Model[Any]) -> Linearization:
    """Decide whether ``history`` is linearizable with respect to ``model``.

    Operations with ``ret is None`` never returned: they may take effect at any point after
    their call, or not at all.  The search is exponential in the worst case but fast on the
    histories property tests produce (hundreds of operations).
    """
    ops = list(history)
    n = len(ops)
    inf = sys.maxsize
    rets = [inf if op.ret is None else op.ret for op in ops]
    required = 0
    for i, op in enumerate(ops):
        if op.ret is not None:
            required |= 1 << i
    by_call = sorted(range(n), key=lambda i: ops[i].call)
    seen: set[tuple[int, Hashable]] = set()
    order: list[int] = []
    best: list[int] = []

    def search(done: int, state: Hashable) -> bool:
        if done & required == required:
            return True
        key = (done, state)
        if key in seen:
            return False
        seen.add(key)
        if len(order) > len(best):
            best[:] = order
        horizon = min(rets[i] for i in range(n) if not done >> i & 1)
        for i in by_call:
            if done >> i & 1:
                continue
            op = ops[i]
            if op.call > horizon:
                break  # called after some pending operation returned: cannot be next
            result, after = model.apply(state, op.name, op.args)
            if result is IMPOSSIBLE:
                continue
            if op.ret is not None and result != op.result:
                continue
            order.append(i)
            if search(done | 1 << i, after):
                return True
            order.pop()
        return False

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * n + 100))
    try:
        ok = search(0, model.initial)
    finally:
        sys.setrecursionlimit(limit)
    if ok:
        return Linearization(True, [ops[i] for i in order])
    prefix = ", ".join(repr(ops[i]) for i in best) or "nothing"
    stuck = [op for i, op in enumerate(ops) if i not in best]
    return Linearization(
        False,
        None,
        f"no sequential order explains the history; the longest valid prefix is [{prefix}], "
        f"after which none of {stuck!r} can come next",
    )


R = TypeVar("R")


class History(Generic[R]):
    """Records operations for ``check_linearizable``: ``h.call(client, name, fn, *args)``.

    Call and return times come from a shared counter, so the history is exact under a
    controlled run and a sound approximation on real threads.
    """

    def __init__(self) -> None:
        self._clock = itertools.count()
        self.operations: list[Operation] = []

    def call(self, client: object, name: str, fn: Callable[..., R], *args: object) -> R:
        """Call ``fn(*args)`` and record it as operation ``name(*args)`` of ``client``."""
        start = next(self._clock)
        # In a controlled run, other tasks may run between the call and its effect, and
        # between the effect and the return: that is what makes operations overlap.  The
        # object a bound method belongs to names what the operation touches.
        target = getattr(fn, "__self__", None)
        _control.switch(f"{name}() invoked", target)
        try:
            result = fn(*args)
        except Exception as error:
            _control.switch(f"{name}() returns", target)
            self.operations.append(
                Operation(client, name, args, Raised(type(error)), start, next(self._clock))
            )
            raise
        _control.switch(f"{name}() returns", target)
        self.operations.append(Operation(client, name, args, result, start, next(self._clock)))
        return result
