"""The ``serial`` backend: every call runs inline, in order, in the caller.

For debugging: a breakpoint in a task stops in the caller's thread, tracebacks
are plain, and the order is the order of submission.  Futures are finished
when ``submit`` returns; ``map`` computes each result when it is reached,
with no future and no chunk: the cheapest way to call a function per item
that still counts each call in ``statistics()``.  A per-task ``timeout``
fails the future on time, but the call itself runs on to its end, since it
runs in the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from threading import get_ident
from typing import Any, final

from ..._core._backend import Backend
from ..._core._calls import run_to_completion
from ..._core._errors import ExecutorClosed
from ..._core._executor import Executor, is_async_callable
from ..._core._ledger import Task as _Task
from ..._core._map import MapSpec, check_map_arguments

__all__ = ["SerialExecutor"]


@final
class SerialExecutor(Executor):
    """Run each task inline in the caller, in submission order."""

    backend = "serial"
    _fixed_window = 1  # compute map results one at a time, as they are reached

    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(_SerialBackend(1 if max_workers is None else max_workers))


class _SerialBackend(Backend):
    """Every task runs in the thread that submits it."""

    name = "serial"

    def dispatch(self, task: _Task) -> None:
        self.ledger.run(task)

    def shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        pass  # no workers: every task already ran in the caller

    def worker_count(self) -> int:
        return 1

    def map_inline(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], spec: MapSpec
    ) -> Iterator[Any] | None:
        if spec.options.timeout is not None or self.ledger.observed:
            # A deadline per call, or listeners to tell of each call's events: each call is
            # a task with its future, as submit makes.
            return None
        check_map_arguments(self.executor, fn, iterables)
        if is_async_callable(fn):
            fn = functools.partial(run_to_completion, fn)  # each coroutine runs to its end
        return self._inline_map(fn, iterables, spec.options.retries, spec.return_exceptions)

    def _inline_map(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        retries: int,
        return_exceptions: bool,
    ) -> Iterator[Any]:
        """``map``'s calls, each made when its result is reached, and counted as it ends."""
        # [calls done, failed, re-runs] made by map on this thread: only this thread
        # changes them, so they are counted without the lock (statistics() adds them in).
        ledger = self.ledger
        tally = ledger.inline_tallies.setdefault(get_ident(), [0, 0, 0])
        # The result about to be yielded: yielded as box.pop(), so that this generator
        # does not keep a result the consumer has already been given.
        box: list[Any] = []
        for args in zip(*iterables, strict=False):
            if ledger.closed:
                raise ExecutorClosed(f"cannot go on with map: the {self.name} executor is closed")
            try:
                box.append(fn(*args))
            except Exception as exc:
                error: BaseException = exc
            else:
                tally[0] += 1
                yield box.pop()
                continue
            # Retried outside the except block, so a retry's error is not chained to the last.
            for _ in range(retries):
                tally[2] += 1
                try:
                    box.append(fn(*args))
                except Exception as exc:
                    error = exc
                else:
                    break
            else:
                tally[1] += 1
                if not return_exceptions:
                    raise error
                yield error
                continue
            tally[0] += 1
            yield box.pop()


backend_class = SerialExecutor
