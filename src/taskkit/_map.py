"""Lazy, windowed, automatically chunked ``map`` -- written once for every backend.

The consumer drives everything; no extra thread is involved::

    iterables ──zip──► source ──(chunks)──► executor._submit_chunk ──► chunk futures
                          ▲                                                 │
                          └── top up to `window` ◄── consumer takes a chunk ◄┘
                                                          │
                                                   yields its results

* ``window`` bounds the calls in flight: submitted and not yet handed to the
  consumer.  The first ``window`` calls are submitted when ``map`` is called.
* ``chunksize=None`` sizes chunks from measured call durations, as joblib's
  automatic batching does: each chunk should take about the backend's
  ``_chunk_target`` seconds, and there should be several chunks per worker,
  so tiny calls are batched by the thousand while slow calls go one by one.
* A call's exception is raised when its result is reached, after the results
  before it; an exception from the input iterable likewise.
* Leaving the iteration early (``break``, ``close()``, garbage collection)
  cancels the chunks not yet started.
"""

from __future__ import annotations

import collections
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from ._calls import ChunkResult
from ._errors import ExecutorClosed, TaskTimeout
from ._future import Future

if TYPE_CHECKING:
    from ._executor import Executor, TaskOptions

__all__ = ["MapRun", "with_progress"]


def _known_length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    lengths = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))  # type: ignore[arg-type]
        except (TypeError, OverflowError):  # no length, or range(10**20)
            return None
    return min(lengths) if lengths else 0


class MapRun:
    """One call of ``map``/``amap``: the source, the window and the chunks in flight."""

    def __init__(
        self,
        executor: Executor,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        ordered: bool,
        window: int | None,
        chunksize: int | None,
        timeout: float | None,
        options: TaskOptions,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"expected a callable, got {type(fn).__name__}: {fn!r}")
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if window is not None and (isinstance(window, bool) or window < 1):
            raise ValueError(f"window must be at least 1, got {window!r}")
        if chunksize is not None and (isinstance(chunksize, bool) or chunksize < 1):
            raise ValueError(f"chunksize must be at least 1, got {chunksize!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        if executor.closed:
            raise ExecutorClosed(f"cannot map: the {executor.backend} executor is closed")
        self._executor, self._fn, self._options = executor, fn, options
        self._ordered = ordered
        self._window = window or executor._default_window()
        if chunksize is not None:
            self._chunksize: int | None = min(chunksize, self._window)
        elif options.timeout is not None:
            self._chunksize = 1  # a per-task deadline is a deadline per call
        else:
            self._chunksize = None
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._source = iter(zip(*iterables, strict=False))
        self._source_error: BaseException | None = None
        self._exhausted = False
        self._in_flight = 0
        # Ordered: chunks in submission order.  Unordered: finished chunks, via callbacks.
        self._chunks: collections.deque[tuple[Future[ChunkResult], int]] = collections.deque()
        self._pending: dict[Future[ChunkResult], int] = {}
        self._finished: queue.SimpleQueue[Future[ChunkResult]] = queue.SimpleQueue()
        # Measured seconds per call, from the chunks seen so far.
        self._per_call: float | None = None
        known = _known_length(iterables)
        self._first_chunk = max(
            1,
            min(self._window, known if known is not None else self._window)
            // (4 * executor.max_workers),
        )
        self._top_up()

    # ---------------------------------------------------------------- feeding

    def _next_chunksize(self) -> int:
        if self._chunksize is not None:
            return self._chunksize
        if self._per_call is None:
            return self._first_chunk
        fair_share = max(1, self._window // (2 * self._executor.max_workers))
        wanted = int(self._executor._chunk_target / max(self._per_call, 1e-9))
        return max(1, min(wanted, fair_share))

    def _top_up(self) -> None:
        """Submit chunks until ``window`` calls are in flight or the input ends."""
        while not self._exhausted and self._in_flight < self._window:
            size = self._next_chunksize()
            room = self._window - self._in_flight
            if room < size:
                if self._in_flight:
                    return  # wait for room for a whole chunk, so chunks can grow
                size = room
            items = self._read(size)
            if len(items) < size:
                self._exhausted = True
            if not items:
                return
            future = self._submit_items(items)
            self._in_flight += len(items)
            if self._ordered:
                self._chunks.append((future, len(items)))
            else:
                self._pending[future] = len(items)
                future.add_done_callback(self._finished.put)  # type: ignore[arg-type]

    def _read(self, size: int) -> Sequence[Any]:
        """Take up to ``size`` calls' arguments from the input."""
        items: list[tuple[Any, ...]] = []
        try:
            items.extend(islice(self._source, size))
        except Exception as exc:
            # Raised to the consumer once the results before it are out.
            self._source_error, self._exhausted = exc, True
        return items

    def _submit_items(self, items: Sequence[Any]) -> Future[ChunkResult]:
        """Submit one chunk of calls."""
        # The base _read makes a list of argument tuples.
        chunk = cast("list[tuple[Any, ...]]", items)
        return self._executor._submit_chunk(self._fn, chunk, self._options)

    def _measure(self, elapsed: float, calls: int) -> None:
        per_call = elapsed / max(calls, 1)
        if self._per_call is None:
            self._per_call = per_call
        else:
            self._per_call = 0.5 * self._per_call + 0.5 * per_call

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _timed_out(self) -> TaskTimeout:
        return TaskTimeout("map", self._timeout, "no result arrived in time")

    def _next_chunk(self) -> Future[ChunkResult] | None:
        """Return the next chunk to hand out (waiting for one if unordered), or None at the end."""
        if self._ordered:
            return self._chunks[0][0] if self._chunks else None
        if not self._pending:
            return None
        try:
            return self._finished.get(timeout=self._remaining())
        except queue.Empty:
            raise self._timed_out() from None

    def _take(self, future: Future[ChunkResult]) -> tuple[Sequence[Any], BaseException | None]:
        """Account for a finished chunk, top up the window, and return its results and error."""
        size = self._chunks.popleft()[1] if self._ordered else self._pending.pop(future)
        self._in_flight -= size
        results, failed_at, error, elapsed = future.result()
        self._measure(elapsed, len(results) + (failed_at >= 0))
        if error is not None:
            self._exhausted = True  # nothing after a failure will be consumed
        else:
            self._top_up()
        return results, error

    def _cancel_rest(self) -> None:
        for future, _ in self._chunks:
            future.cancel()
        for future in self._pending:
            future.cancel()
        self._chunks.clear()
        self._pending.clear()

    # -------------------------------------------------------------- consuming

    def iter(self) -> Iterator[Any]:
        """The blocking iterator ``map`` returns."""
        try:
            while (future := self._next_chunk()) is not None:
                try:
                    future.result(timeout=self._remaining())
                except TimeoutError:
                    if not future.done():
                        raise self._timed_out() from None
                    raise
                results, error = self._take(future)
                yield from results
                if error is not None:
                    raise error
            if self._source_error is not None:
                raise self._source_error
        finally:
            self._cancel_rest()

    async def _aiter(self) -> AsyncIterator[Any]:
        try:
            while True:
                future = self._next_chunk() if self._ordered else await self._await_any()
                if future is None:
                    break
                await self._await_chunk(future)
                results, error = self._take(future)
                for value in results:
                    yield value
                if error is not None:
                    raise error
            if self._source_error is not None:
                raise self._source_error
        finally:
            self._cancel_rest()

    def aiter(self) -> AsyncIterator[Any]:
        """The async iterator ``amap`` returns."""
        return self._aiter()

    async def _await_chunk(self, future: Future[ChunkResult]) -> None:
        if future.done():
            return
        remaining = self._remaining()
        if remaining is None:
            await _settled(future)
            return
        import asyncio

        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), remaining)
        except asyncio.TimeoutError:
            raise self._timed_out() from None
        except BaseException:
            if not future.done():
                raise

    async def _await_any(self) -> Future[ChunkResult] | None:
        """Wait for any pending chunk to finish, on asyncio or on the coroutine scheduler."""
        if not self._pending:
            return None
        while True:
            try:
                return self._finished.get_nowait()
            except queue.Empty:
                pass
            signal: Future[None] = Future()

            def wake(_: object, signal: Future[None] = signal) -> None:
                signal._try_set_result(None)

            for pending in list(self._pending):
                pending.add_done_callback(wake)
            await signal


async def _settled(future: Future[Any]) -> None:
    try:
        await future
    except BaseException:
        if not future.done():
            raise


def with_progress(results: Iterator[Any], iterables: tuple[Iterable[Any], ...]) -> Iterator[Any]:
    """Wrap ``results`` in a tqdm progress bar (the ``progress`` extra)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ModuleNotFoundError(
            'map(..., progress=True) needs tqdm: pip install "taskkit[progress]"', name="tqdm"
        ) from None
    return iter(tqdm(results, total=_known_length(iterables), unit="call"))
