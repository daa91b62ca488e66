"""Progress bars wherever results are awaited: ``map``, ``amap``, ``as_completed``, ``join``.

Every entry point takes the same ``progress=`` argument and hands it here::

    progress=True | "label" | {"desc": ..., **tqdm options} | a bar (a tqdm instance)
        │  checked at the call (a bad value fails there, not later)
        ▼
    counted(results, progress, total)      the iterator the caller gets back
        │  first next(): the bar is made now, when iteration starts
        ▼  each result handed out: bar.update(); the iteration ends: bar.close()

Bars taskkit makes come from ``tqdm.auto`` (a widget in notebooks, text elsewhere) and
are closed when the iteration ends, however it ends.  A bar the caller passes is
theirs: taskkit updates it (and gives it a total if it has none) but never closes it,
so one bar can follow several batches.  tqdm is optional (``taskkit[progress]``); a
``progress=`` that needs it raises ``ModuleNotFoundError`` naming the extra at the call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from ._executor import Executor, Statistics

__all__ = [
    "Progress",
    "ProgressBar",
    "acounted",
    "check",
    "counted",
    "join_with_progress",
    "wanted",
]

T = TypeVar("T")


@runtime_checkable
class ProgressBar(Protocol):
    """What taskkit needs of a bar passed as ``progress=``: a ``tqdm`` instance has it."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


#: What ``progress=`` accepts: off/on, a label, tqdm keyword arguments, or a bar.
Progress: TypeAlias = "bool | str | Mapping[str, Any] | ProgressBar"

# How often join(progress=...) looks at the counters: tqdm redraws at most every 0.1 s too.
_JOIN_REFRESH = 0.1


def wanted(progress: object) -> bool:
    """Whether ``progress=`` asks for a bar (``False`` and ``None`` do not)."""
    return progress is not False and progress is not None


def check(progress: object) -> None:
    """Refuse a ``progress=`` value that is none of the accepted kinds, or needs tqdm absent."""
    if isinstance(progress, bool):
        if progress:
            _tqdm()
        return
    if isinstance(progress, (str, Mapping)):
        _tqdm()
        return
    if not isinstance(progress, ProgressBar):
        raise TypeError(
            "progress must be True/False, a label, a dict of tqdm options or a bar with "
            f"update() and close() (a tqdm instance), got {progress!r}"
        )


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ModuleNotFoundError(
            'progress= needs tqdm: pip install "taskkit[progress]"', name="tqdm"
        ) from None
    return tqdm


def _open(progress: Progress, total: int | None, unit: str) -> tuple[ProgressBar, bool]:
    """The bar to update, and whether taskkit made it (and so closes it)."""
    if isinstance(progress, ProgressBar) and not isinstance(progress, (str, Mapping)):
        if total is not None and getattr(progress, "total", 0) is None:
            _set_total(progress, total)
        return progress, False
    options: dict[str, Any] = {"total": total, "unit": unit}
    if isinstance(progress, str):
        options["desc"] = progress
    elif isinstance(progress, Mapping):
        options.update(progress)
    bar: ProgressBar = _tqdm()(**options)
    return bar, True


@contextlib.contextmanager
def _shown(progress: Progress, total: int | None, unit: str) -> Iterator[ProgressBar]:
    """The bar to update, closed at the end if taskkit made it (a caller's bar stays open)."""
    bar, owned = _open(progress, total, unit)
    try:
        yield bar
    finally:
        if owned:
            bar.close()


def counted(
    results: Iterator[T], progress: Progress, total: int | None, unit: str = "call"
) -> Iterator[T]:
    """``results``, moving a bar one step per item; the bar appears at the first ``next()``."""
    check(progress)
    return _counted(results, progress, total, unit)


def _counted(results: Iterator[T], progress: Progress, total: int | None, unit: str) -> Iterator[T]:
    try:
        with _shown(progress, total, unit) as bar:
            for item in results:
                bar.update(1)
                yield item
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # stop what feeds the results as soon as the caller stops


def acounted(
    results: AsyncIterator[T], progress: Progress, total: int | None, unit: str = "call"
) -> AsyncIterator[T]:
    """``counted`` for an async iterator."""
    check(progress)
    return _acounted(results, progress, total, unit)


async def _acounted(
    results: AsyncIterator[T], progress: Progress, total: int | None, unit: str
) -> AsyncIterator[T]:
    try:
        with _shown(progress, total, unit) as bar:
            async for item in results:
                bar.update(1)
                yield item
    finally:
        aclose = getattr(results, "aclose", None)
        if aclose is not None:
            await aclose()


def join_with_progress(executor: Executor, timeout: float | None, progress: Progress) -> bool:
    """``executor.join(timeout)``, moving a bar as the tasks unfinished at the call settle.

    The total is what was unfinished when ``join`` was called, and grows if tasks are
    submitted while it waits, so the bar ends full when ``join`` returns True.
    """
    check(progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    stats = executor.statistics()
    settled_before = _settled(stats)
    total = stats.pending + stats.running
    shown = 0
    with _shown(progress, total, "task") as bar:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            wait = _JOIN_REFRESH if remaining is None else max(0.0, min(_JOIN_REFRESH, remaining))
            finished = executor.join(wait)
            stats = executor.statistics()  # final once join() returned True
            settled = _settled(stats) - settled_before
            left = 0 if finished else stats.pending + stats.running
            if settled + left > total:  # submitted while join waits: the total grows
                total = settled + left
                _set_total(bar, total)
            if settled > shown:
                bar.update(settled - shown)
                shown = settled
            if finished:
                return True
            if remaining is not None and remaining <= 0:
                return False


def _settled(stats: Statistics) -> int:
    return stats.done + stats.failed + stats.cancelled


def _set_total(bar: ProgressBar, total: int) -> None:
    if hasattr(bar, "total"):
        setattr(bar, "total", total)  # noqa: B010 - not every bar declares a total
        refresh = getattr(bar, "refresh", None)
        if callable(refresh):
            refresh()
