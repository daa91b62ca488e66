"""The ``serial`` backend: every call runs inline, in order, in the caller.

For debugging: a breakpoint in a task stops in the caller's thread, tracebacks
are plain, and the order is the order of submission.  Futures are finished
when ``submit`` returns; ``map`` computes each result when it is reached.
A per-task ``timeout`` fails the future on time, but the call itself runs on
to its end, since it runs in the caller.
"""

from __future__ import annotations

from typing import final

from .._executor import Executor, _Task

__all__ = ["SerialExecutor"]


@final
class SerialExecutor(Executor):
    """Run each task inline in the caller, in submission order."""

    backend = "serial"
    _fixed_window = 1  # compute map results one at a time, as they are reached

    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(max_workers=1 if max_workers is None else max_workers)

    def _dispatch(self, task: _Task) -> None:
        self._run_inline(task)

    def _shutdown_workers(self, *, wait: bool, kill: bool) -> None:
        pass  # no workers: every task already ran in the caller

    def _worker_count(self) -> int:
        return 1


backend_class = SerialExecutor
