"""Lazy, windowed, automatically chunked ``map`` -- written once for every backend.

The consumer drives everything; no extra thread is involved::

    iterables ──zip──► source ──(chunks)──► executor._submit_chunk ──► chunk futures
                          ▲                                                 │
                          └── top up to `window` ◄── consumer takes a chunk ◄┘
                                                          │
                                          yields its results, dropping each as it goes

* ``window`` bounds the calls in flight: submitted and not yet handed to the
  consumer.  The first ``window`` calls are submitted when ``map`` is called.
* ``chunksize=None`` sizes chunks from measured call durations, as joblib's
  automatic batching does: each chunk should take about the backend's
  ``_chunk_target`` seconds, and there should be several chunks per worker,
  so tiny calls are batched by the thousand while slow calls go one by one.
* The task options apply to each call, as to one ``submit`` per item: a chunk's
  runner re-runs a failing call alone (``retries``); with a per-call ``timeout``
  (or where a backend would run a chunk's calls all at once past ``max_workers``)
  each call is a task of its own.
* A call's exception is raised when its result is reached, after the results
  before it (with ``return_exceptions``, it is yielded in its place and the map
  goes on); an exception from the input iterable is raised likewise.
* Leaving the iteration early (``break``, ``close()``, garbage collection)
  cancels the chunks not yet started.
"""

from __future__ import annotations

import collections
import itertools
import queue
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, replace
from itertools import islice, repeat, starmap
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast, overload

from ._calls import ChunkResult, run_chunk
from ._errors import ExecutorClosed, TaskTimeout
from ._future import Future, try_set_result
from ._ledger import NO_OPTIONS
from ._progress import Progress, acounted, check, counted, wanted

if TYPE_CHECKING:
    from ._executor import Executor
    from ._ledger import TaskOptions

__all__ = [
    "ExecutorMapHooks",
    "MapIterator",
    "MapMethods",
    "MapRun",
    "MapSpec",
    "check_map_arguments",
    "drain",
]

T = TypeVar("T")
R = TypeVar("R")

# What amap's loop reads once a chunk's results are all handed out.
_END: Any = object()
# What MapRun._steps yields when it needs the first chunk in flight to finish.
_ANY_FINISHED: Any = object()


def drain(results: list[Any]) -> Iterator[Any]:
    """Iterate ``results`` in order at C speed, removing each from the list as it goes.

    A result already yielded is then held by nobody but the consumer, as with
    ``concurrent.futures``' map (CPython's ``test_free_reference``).
    """
    results.reverse()
    return starmap(results.pop, repeat((), len(results)))


class MapIterator(itertools.chain):  # type: ignore[type-arg]
    """What ``map`` returns: a C-speed iterator over the chunks' results.

    Results arrive a chunk at a time (see ``MapRun.chunks``); ``itertools.chain``
    hands them out one by one without a Python frame per item, which matters
    when the calls are tiny.  ``close()`` stops the map as a generator's would.
    """

    _chunks: Generator[Iterable[Any], None, None]

    def __new__(cls, chunks: Generator[Iterable[Any], None, None]) -> MapIterator:
        self = cast("MapIterator", super().from_iterable(chunks))
        self._chunks = chunks
        return self

    def close(self) -> None:
        """Stop the map: cancel the chunks not yet started."""
        self._chunks.close()


class MapMethods:
    """``map`` and ``amap``, written once for ``Executor`` and its ``options(...)`` view."""

    __slots__ = ()

    def _map_target(self) -> tuple[Executor, TaskOptions]:
        """The executor to map on, and the options for each call."""
        raise NotImplementedError

    @overload
    def map(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: Literal[False] = ...,
    ) -> Iterator[T]: ...

    @overload
    def map(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: bool,
    ) -> Iterator[T | BaseException]: ...

    @overload
    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: Literal[False] = ...,
    ) -> Iterator[T]: ...

    @overload
    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: bool,
    ) -> Iterator[T | BaseException]: ...

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        ordered: bool = True,
        window: int | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: Progress = False,
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """Return an iterator of ``fn(*args)`` for args drawn from ``iterables`` in step.

        The same as the builtin ``map`` but concurrent and lazy: at most ``window``
        calls are in flight, so an infinite input works in bounded memory; the
        first ``window`` calls start at once; the rest start as results are
        consumed.  Stops at the shortest iterable.  An ``async def`` function's
        results are what its calls return, awaited.

        Each call is one task for ``max_workers`` and ``statistics()``, and the
        options of ``ex.options(...)`` apply to each call as they would to one
        ``submit`` per item: ``retries`` re-runs a failing call alone, ``timeout``
        is each call's deadline, ``name`` names each call in errors.

        Args:
            fn: the callable.
            *iterables: one iterable per positional argument of ``fn``.
            ordered: yield results in input order (True) or as they finish.
            window: the most calls in flight; default: a few thousand.
            chunksize: calls sent to a worker at once; ``None`` chooses from
                measured call durations (tiny calls are batched, slow ones are not).
                With a per-call ``timeout``, each call is sent alone.
            timeout: seconds from this call after which waiting for the next
                result raises ``TaskTimeout``.
            progress: show a progress bar as results are handed out (needs
                ``pip install "taskkit[progress]"``): ``True``, a label, a dict of
                ``tqdm`` options, or a bar of your own (see "Observing taskkit").
            return_exceptions: yield a failing call's exception in its place and go
                on, as ``asyncio.gather`` does, instead of raising it and stopping.

        Raises:
            ExecutorClosed: the executor is closed.
            ValueError: a bad ``window``, ``chunksize`` or ``timeout``.
            Exception: a call's exception, when its result is reached (unless
                ``return_exceptions``).
        """
        executor, spec = self._map_spec(
            progress, ordered, window, chunksize, timeout, return_exceptions
        )
        results = executor._map(fn, iterables, spec)
        return _with_progress(results, progress, iterables, counted)

    @overload
    def amap(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsyncIterator[T]: ...

    @overload
    def amap(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: bool,
    ) -> AsyncIterator[T | BaseException]: ...

    @overload
    def amap(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsyncIterator[T]: ...

    @overload
    def amap(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        ordered: bool = ...,
        window: int | None = ...,
        chunksize: int | None = ...,
        timeout: float | None = ...,
        progress: Progress = ...,
        return_exceptions: bool,
    ) -> AsyncIterator[T | BaseException]: ...

    def amap(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        ordered: bool = True,
        window: int | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: Progress = False,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """The async twin of ``map``, with the same arguments: ``async for y in ex.amap(fn, xs)``.

        Usable from asyncio code and from tasks on the coroutine backend;
        ``fn`` may be an ``async def`` function.
        """
        executor, spec = self._map_spec(
            progress, ordered, window, chunksize, timeout, return_exceptions
        )
        results = MapRun(executor, fn, iterables, spec).aiter()
        return _with_progress(results, progress, iterables, acounted)

    def _map_spec(
        self,
        progress: Progress,
        ordered: bool,
        window: int | None,
        chunksize: int | None,
        timeout: float | None,
        return_exceptions: bool,
    ) -> tuple[Executor, MapSpec]:
        """The executor to map on and how, for ``map`` and ``amap``: checked before any call."""
        if wanted(progress):
            check(progress)
        executor, options = self._map_target()
        return executor, MapSpec(options, ordered, window, chunksize, timeout, return_exceptions)


class ExecutorMapHooks(MapMethods):
    """How ``map`` hands its calls to an executor: the defaults a backend may override."""

    __slots__ = ()

    #: ``map``'s default window (items in flight) for this backend, or 0 for ``_default_window()``.
    _fixed_window: ClassVar[int] = 0
    #: How long one automatically sized map chunk should take, in seconds.
    _chunk_target: ClassVar[float] = 0.002
    #: The ``MapRun`` subclass ``map`` uses, where a backend has its own (None: ``MapRun``).
    _map_run_class: ClassVar[type[MapRun] | None] = None
    #: The functions a map chunk runs as (their result is a ``ChunkResult``).
    _chunk_runners: ClassVar[frozenset[Callable[..., Any]]] = frozenset({run_chunk})
    _max_workers: int
    #: ``_submit(fn, args, kwargs, options, weight=1)``: the ledger's, which a chunk goes to.
    _submit: Callable[..., Future[Any]]

    def _default_window(self) -> int:
        return self._fixed_window or max(16 * self._max_workers, 4096)

    def _submit_chunk(
        self,
        fn: Callable[..., Any],
        items: list[tuple[Any, ...]],
        options: TaskOptions,
        keep_going: bool,
    ) -> Future[ChunkResult]:
        """Submit one map chunk: ``fn(*item)`` for each item, with ``options`` per call.

        ``options`` name the chunk (for its errors) and keep ``retries``: a failing
        call is re-run alone by the chunk's runner, and a chunk lost as a whole (its
        worker crashed) is run again.
        """
        args = (
            (fn, items)
            if not (options.retries or keep_going)
            else (fn, items, options.retries, keep_going)
        )
        return self._submit(run_chunk, args, {}, options, weight=len(items))

    def _map_per_call(self, fn: Callable[..., Any], options: TaskOptions) -> bool:
        """True if ``map`` must submit each call as a task of its own, not in chunks.

        A per-call deadline is a task's deadline; a backend whose chunk of ``fn``
        would run its calls all at once also says True where ``max_workers`` is set.
        """
        return options.timeout is not None

    def _map_target(self) -> tuple[Executor, TaskOptions]:
        return cast("Executor", self), NO_OPTIONS

    def _map(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], spec: MapSpec
    ) -> Iterator[Any]:
        """The iterator ``map`` returns (a backend may run a map its own way)."""
        return (self._map_run_class or MapRun)(cast("Executor", self), fn, iterables, spec).iter()


def _with_progress(
    results: R,
    progress: Progress,
    iterables: tuple[Iterable[Any], ...],
    count: Callable[[R, Progress, int | None], R],
) -> R:
    """``results`` as they are, or through ``count`` (``counted``/``acounted``) to show a bar."""
    if not wanted(progress):
        return results
    return count(results, progress, _known_length(iterables))


def _known_length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    lengths = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))  # type: ignore[arg-type]
        except (TypeError, OverflowError):  # no length, or range(10**20)
            return None
    return min(lengths) if lengths else 0


@dataclass(frozen=True)
class MapSpec:
    """How a ``map`` or ``amap`` call asked to run: its arguments but the function and inputs."""

    options: TaskOptions
    ordered: bool = True
    window: int | None = None
    chunksize: int | None = None
    timeout: float | None = None
    return_exceptions: bool = False

    def __post_init__(self) -> None:
        window, chunksize, timeout = self.window, self.chunksize, self.timeout
        if window is not None and (isinstance(window, bool) or window < 1):
            raise ValueError(f"window must be at least 1, got {window!r}")
        if chunksize is not None and (isinstance(chunksize, bool) or chunksize < 1):
            raise ValueError(f"chunksize must be at least 1, got {chunksize!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")


def check_map_arguments(
    executor: Executor, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...]
) -> None:
    """Raise what ``map`` raises for a bad function or input, before any call is made."""
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}: {fn!r}")
    if not iterables:
        raise TypeError("map() needs at least one iterable")
    if executor.closed:
        raise ExecutorClosed(f"cannot map: the {executor.backend} executor is closed")


# What _take returns: the chunk's results (None where a call failed), its failures
# as (index, exception), and True if calls of the chunk were never run.
_Taken = tuple[list[Any], list[tuple[int, BaseException]], bool]


class MapRun:
    """One call of ``map``/``amap``: the source, the window and the chunks in flight."""

    def __init__(
        self,
        executor: Executor,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        spec: MapSpec,
    ) -> None:
        check_map_arguments(executor, fn, iterables)
        options, chunksize, timeout = spec.options, spec.chunksize, spec.timeout
        self._executor, self._fn, self._options = executor, fn, options
        self._ordered = spec.ordered
        self._return_exceptions = spec.return_exceptions
        self._window = spec.window or executor._default_window()
        # Each call a task of its own (see Executor._map_per_call), or chunks of calls.
        self._one_by_one = executor._map_per_call(fn, options)
        if self._one_by_one:
            self._chunksize: int | None = 1
        elif chunksize is not None:
            self._chunksize = min(chunksize, self._window)
        else:
            self._chunksize = None
        # A chunk is named after the function it maps, not after its runner.
        if options.name is None:
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
            self._chunk_options = replace(options, name=name or type(fn).__name__)
        else:
            self._chunk_options = options
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._source = iter(zip(*iterables, strict=False))
        self._source_error: BaseException | None = None
        self._exhausted = False
        self._in_flight = 0
        # Ordered: chunks in submission order.  Unordered: finished chunks, via callbacks.
        self._chunks: collections.deque[tuple[Future[Any], int]] = collections.deque()
        self._pending: dict[Future[Any], int] = {}
        self._finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
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
            future = self._submit_one(items[0]) if self._one_by_one else self._submit_items(items)
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

    def _submit_items(self, items: Sequence[Any]) -> Future[Any]:
        """Submit one chunk of calls."""
        # The base _read makes a list of argument tuples.
        chunk = cast("list[tuple[Any, ...]]", items)
        return self._executor._submit_chunk(
            self._fn, chunk, self._chunk_options, self._return_exceptions
        )

    def _submit_one(self, item: Any) -> Future[Any]:
        """Submit one call as a task of its own, with the map's options."""
        return self._executor._submit(self._fn, item, {}, self._options)

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

    def _take(self, future: Future[Any]) -> _Taken:
        """Account for a finished chunk, top up the window, and return what it holds."""
        size = self._chunks.popleft()[1] if self._ordered else self._pending.pop(future)
        self._in_flight -= size
        failures: list[tuple[int, BaseException]]
        try:
            outcome = future.result()
        except Exception as exc:
            # The call failed, or the chunk as a whole (its worker died, say): each of its
            # calls ends with that error.
            results, failures = [None] * size, [(index, exc) for index in range(size)]
        else:
            if self._one_by_one:
                results, failures = [outcome], []
            else:
                chunk = cast("ChunkResult", outcome)
                results, failures, _, elapsed = chunk
                self._measure(elapsed, len(results))
        del future  # the caller drops its reference too: a yielded result is the consumer's
        if failures and not self._return_exceptions:
            self._exhausted = True  # nothing after a failure will be consumed
        else:
            self._top_up()
        return results, failures, len(results) < size

    def _outcomes(self, taken: _Taken) -> Iterator[Any]:
        """The results of a chunk with failures: each raised, or yielded in its place."""
        results, failures, cut_short = taken
        errors = dict(failures)
        results.reverse()  # popped from the end, so that a yielded result is not kept here
        for index in range(len(results)):
            error = errors.get(index)
            if error is None:
                yield results.pop()
                continue
            results.pop()
            if not self._return_exceptions:
                raise error
            yield error
        if cut_short:
            raise failures[-1][1]  # the chunk stopped there: the calls after it never ran

    def _cancel_rest(self) -> None:
        for future, _ in self._chunks:
            future.cancel()
        for future in self._pending:
            future.cancel()
        self._chunks.clear()
        self._pending.clear()

    # -------------------------------------------------------------- consuming
    #
    # The consumer's loop is written once, in _steps, with no waiting in it.  Two thin
    # drivers do the waits it asks for: chunks() by blocking (map), _aiter() by awaiting
    # (amap).  They meet it a few times per chunk, never per call.

    def _steps(self) -> Generator[Any, Future[Any] | None, None]:
        """The consumer's loop, for a driver to run.  For each chunk it yields, in turn:

        * ordered maps: the chunk's future; go on once it has settled (or raise, as
          ``TaskTimeout``);
        * unordered maps: ``_ANY_FINISHED``; send back the first chunk in flight to
          finish, waited for likewise;
        * the chunk's results, to hand out: an iterable that drops each result once read.

        At the end it raises the input's exception, if reading the input failed.  However
        it ends (closed by its driver included), the chunks not yet started are cancelled.
        """
        try:
            while True:
                if self._ordered:
                    if not self._chunks:
                        break
                    future = self._chunks[0][0]
                    yield future
                elif not self._pending:
                    break
                else:
                    future = cast("Future[Any]", (yield _ANY_FINISHED))
                taken = self._take(future)
                del future  # a result handed out is the consumer's alone
                yield self._handed_out(taken)
                del taken
            if self._source_error is not None:
                raise self._source_error
        finally:
            self._cancel_rest()

    def _handed_out(self, taken: _Taken) -> Iterable[Any]:
        """What the consumer gets of a taken chunk, each result in turn."""
        results, failures, _ = taken
        if failures:
            return self._outcomes(taken)
        if type(results) is list:
            return drain(results)
        return results  # a block of packed ints, made one by one as they are read

    def chunks(self) -> Generator[Iterable[Any], None, None]:
        """Each chunk's results in turn, as iterables that drop each result once it is read.

        ``_steps`` driven by blocking this thread.
        """
        steps = self._steps()
        try:
            step = next(steps)
            while True:
                if step is _ANY_FINISHED:
                    step = steps.send(self._next_finished())
                    continue
                if isinstance(step, Future):
                    self._wait(step)
                else:
                    yield step
                step = next(steps)
        except StopIteration:
            return
        finally:
            steps.close()

    def _next_finished(self) -> Future[Any]:
        """Wait for a chunk in flight to finish (an unordered map), and return it."""
        try:
            future = self._finished.get(timeout=self._remaining())
        except queue.Empty:
            raise self._timed_out() from None
        self._wait(future)  # settled: raises only what a blocking wait raises for it
        return future

    def _wait(self, future: Future[Any]) -> None:
        try:
            future.exception(timeout=self._remaining())
        except TimeoutError:
            if not future.done():
                raise self._timed_out() from None
            raise

    def iter(self) -> Iterator[Any]:
        """The blocking iterator ``map`` returns."""
        return MapIterator(self.chunks())

    async def _aiter(self) -> AsyncIterator[Any]:
        """``_steps`` driven by awaiting, each result handed out alone."""
        steps = self._steps()
        try:
            step = next(steps)
            while True:
                if step is _ANY_FINISHED:
                    step = steps.send(await self._await_any())
                    continue
                if isinstance(step, Future):
                    await self._await_chunk(step)
                else:
                    outcomes = iter(step)
                    del step
                    # Yielded as box.pop(): this generator keeps no result it has handed out.
                    box = [next(outcomes, _END)]
                    while box[0] is not _END:
                        yield box.pop()
                        box.append(next(outcomes, _END))
                step = next(steps)
        except StopIteration:
            return
        finally:
            steps.close()

    def aiter(self) -> AsyncIterator[Any]:
        """The async iterator ``amap`` returns."""
        return self._aiter()

    async def _await_chunk(self, future: Future[Any]) -> None:
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

    async def _await_any(self) -> Future[Any]:
        """``_next_finished`` for ``amap``, on asyncio or on the coroutine scheduler.

        The chunk it returns has settled: there is nothing left to await of it.
        """
        while True:
            try:
                return self._finished.get_nowait()
            except queue.Empty:
                pass
            signal: Future[None] = Future()

            def wake(_: object, signal: Future[None] = signal) -> None:
                try_set_result(signal, None)

            for pending in list(self._pending):
                pending.add_done_callback(wake)
            await signal


async def _settled(future: Future[Any]) -> None:
    try:
        await future
    except BaseException:
        if not future.done():
            raise
