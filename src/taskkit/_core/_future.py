"""``taskkit.Future``: a ``concurrent.futures.Future`` that is also awaitable.

A taskkit future is a drop-in ``concurrent.futures.Future``, so
``concurrent.futures.wait``, ``as_completed``, ``asyncio.wrap_future`` and
``loop.run_in_executor`` keep working.  On top of that it adds:

* ``await fut`` from asyncio code, and from tasks on taskkit's own coroutine
  scheduler (which installs an *await hook* for its thread);
* ``cancel()`` of a *running* task, where the backend can stop it (a process
  worker is killed and replaced; a coroutine is cancelled at its next await);
* transitions that notify ``as_completed``/``wait`` waiters at once on
  cancellation, so a cancelled future never leaves a waiter hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import operator
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

from . import _control
from ._compat import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
    RLock,
    get_running_loop_or_none,
    rlock_acquire_restore,
    rlock_release_save,
)
from ._progress import Progress, check, counted, wanted

__all__ = ["Future", "as_completed", "set_await_hook"]

T = TypeVar("T")

_task_ids = itertools.count(1)
#: The next task number: executors number their tasks as they are submitted.
next_task_number = _task_ids.__next__


# The coroutine scheduler runs tasks on its own thread and sets a hook there:
# ``hook(future)`` returns the generator that the awaiting task delegates to.
class _AwaitHooks(threading.local):
    # A class default: reading an attribute a thread never set raises inside
    # getattr otherwise, which costs more than the rest of a fast await.
    hook: Callable[[Future[Any]], Generator[Any, Any, Any]] | None = None


_await_hooks = _AwaitHooks()


#: How often the main thread, waiting with no timeout, wakes to look for a Ctrl-C.
_INTERRUPT_POLL = 0.25


def interruptible(timeout: float | None) -> float | None:
    """The timeout for one wait of a loop that re-checks what it waits for.

    On the main thread a wait with no timeout is cut into short pieces.  Python raises
    ``KeyboardInterrupt`` in a waiting thread when the signal wakes it; a Ctrl-C that
    arrives just before the thread blocks wakes nothing, so it is seen at the end of the
    piece instead of never.  (In a ``taskkit.testing`` run, the run decides instead.)
    """
    if timeout is None and _control.hook is None and threading.current_thread() is _main():
        return _INTERRUPT_POLL
    return timeout


_main = threading.main_thread


def current_await_hook() -> Callable[[Future[Any]], Generator[Any, Any, Any]] | None:
    """How futures are awaited on the current thread (None: the asyncio way)."""
    return _await_hooks.hook


def set_await_hook(hook: Callable[[Future[Any]], Generator[Any, Any, Any]] | None) -> None:
    """Install (or clear, with ``None``) how futures are awaited on the current thread."""
    _await_hooks.hook = hook


class Future(concurrent.futures.Future[T], Generic[T]):
    """The result of a submitted task: ``fut.result()`` returns what ``fn(*args)`` returned.

    Awaitable: ``await fut`` in asyncio code or in a coroutine task gives the
    same value, or raises the same exception, as ``fut.result()``.
    """

    # A new future's state; set on the future itself as it changes.
    _state: str = PENDING
    _result: Any = None
    _exception: BaseException | None = None
    # Set by the backend while the task runs: ``stop(future)`` stops the running
    # task and returns True if it will stop (the future then ends as cancelled).
    _stop_running: Callable[[Future[Any]], bool] | None = None
    # Set by the executor: told once when the future finishes by any path
    # (result, exception, cancellation), before the user's done-callbacks.
    _on_settled: Callable[[Future[Any]], None] | None = None
    # What the task calls, its number (given at submit), and its name, made from the two
    # on demand.
    _fn: Any = None
    _number = 0
    _name: str | None = None
    # concurrent.futures' lists of waiters and done-callbacks, made when first used:
    # most futures never have either.
    _waiter_list: list[Any] | None = None
    _callback_list: list[Callable[[concurrent.futures.Future[T]], object]] | None = None
    # The condition that result() and exception() sleep on, made by the first of them
    # that has to wait: a threading.Condition over the future's lock, _condition.
    _sleepers: threading.Condition | None = None
    # Set by a backend: ``help(timeout)`` does the work that finishes this future in
    # the waiting thread (the process backend reads the worker's reply there); a
    # waiter calls it, with the lock released, before it sleeps, and sleeps only if
    # the future is still unsettled afterwards.
    _help: Callable[[float | None], None] | None = None

    def __init__(self) -> None:
        # concurrent.futures.Future.__init__, but the lock is a bare C RLock, a third of
        # the cost of a threading.Condition, and the lists come later.
        # Every concurrent.futures function only takes a future's ``_condition``; the
        # methods that also wait or notify on it are written here.
        self._condition: Any = RLock()

    # Read by concurrent.futures code, always with the condition held.
    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        waiters = self._waiter_list
        if waiters is None:
            waiters = self._waiter_list = []
        return waiters

    @property
    def _done_callbacks(self) -> list[Callable[[concurrent.futures.Future[T]], object]]:
        callbacks = self._callback_list
        if callbacks is None:
            callbacks = self._callback_list = []
        return callbacks

    @property
    def name(self) -> str:
        """The task's name (its ``name`` option, or the function's name and a number)."""
        name = self._name
        if name is None:
            fn = self._fn
            if fn is None:
                return "task"
            name = (
                getattr(fn, "__qualname__", None)
                or getattr(fn, "__name__", None)
                or type(fn).__name__
            )
            number = self._number or next_task_number()
            name = self._name = f"{name}#{number}"
        return name

    def _invoke_callbacks(self) -> None:
        settled, self._on_settled = self._on_settled, None
        if settled is not None:
            settled(self)
        self._invoke_done_callbacks()

    def _invoke_done_callbacks(self) -> None:
        """Run the done-callbacks added with ``add_done_callback`` (not the executor's)."""
        if self._callback_list:  # most futures never have one
            super()._invoke_callbacks()  # type: ignore[misc]

    def cancel(self) -> bool:
        """Cancel the task; returns True if it will not complete normally.

        A pending task is simply dropped.  A running task is stopped where the
        backend can stop it (process: its worker is killed and replaced;
        coroutine and asyncio: cancelled at its next await); on the thread and
        serial backends a running task cannot be stopped and this returns False.
        """
        with self._condition:
            state = self._state
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if state == FINISHED:
                return False
            if state == RUNNING:
                stop = self._stop_running
                if stop is None:
                    return False
            else:
                # Pending: cancelled now, and as_completed()/wait() waiters are told at
                # once rather than when a worker next looks: it may never look.
                stop = None
                self._mark_cancelled()
        if stop is not None:
            return stop(self) and self._force_cancelled()
        self._invoke_callbacks()
        return True

    def result(self, timeout: float | None = None) -> T:
        """Return the call's value, waiting up to ``timeout`` seconds for it.

        Raises:
            CancelledError: the future was cancelled.
            TimeoutError: ``timeout`` passed first.
            Exception: whatever the call raised.
        """
        try:
            with self._condition:
                self._wait_finished(timeout)
                if self._exception is not None:
                    raise self._exception
                return self._result  # type: ignore[no-any-return]
        finally:
            self = None  # type: ignore[assignment]  # no cycle through a raised exception

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return what the call raised (None if it returned), waiting up to ``timeout``.

        Raises:
            CancelledError: the future was cancelled.
            TimeoutError: ``timeout`` passed first.
        """
        with self._condition:
            self._wait_finished(timeout)
            return self._exception

    def _wait_finished(self, timeout: float | None) -> None:
        """With the lock held: wait until the future is finished, or raise why it is not.

        Raises:
            CancelledError: the future was cancelled.
            TimeoutError: ``timeout`` passed first.
        """
        if self._state in (PENDING, RUNNING):
            self._sleep(timeout)
        if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            raise concurrent.futures.CancelledError()
        if self._state != FINISHED:
            raise TimeoutError()

    def set_result(self, result: T) -> None:
        """Finish the future with ``result`` (for code that drives a future by hand)."""
        if not self._complete(result, None):
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")

    def set_exception(self, exception: BaseException | None) -> None:
        """Finish the future with ``exception`` (for code that drives a future by hand)."""
        if exception is None:
            raise TypeError("set_exception() needs an exception")
        if not self._complete(None, exception):
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")

    def _sleep(self, timeout: float | None) -> None:
        """Wait, with the lock held, until the future settles or ``timeout`` passes."""
        help = self._help
        if help is not None:
            start = time.monotonic()
            saved = rlock_release_save(self._condition)
            try:
                help(timeout)
            finally:
                rlock_acquire_restore(self._condition, saved)
            # Looked at under the lock: settled by the help, or by another path while
            # the lock was released (then nobody would wake a sleeper).
            if self._state not in (PENDING, RUNNING):
                return
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - start))
        sleepers = self._sleepers
        if sleepers is None:
            sleepers = self._sleepers = threading.Condition(self._condition)
        # Looked up at each call, so that taskkit.testing can take over the wait.
        piece = interruptible(timeout)
        if piece is timeout:
            sleepers.wait(timeout)
            return
        while self._state in (PENDING, RUNNING):
            sleepers.wait(piece)

    def _wake_sleepers(self) -> None:
        """Wake every thread in result() or exception() (the lock is held)."""
        sleepers = self._sleepers
        if sleepers is not None:  # else nobody ever waited
            sleepers.notify_all()

    def _mark_cancelled(self) -> None:
        """Cancelled, and every waiter told (the lock is held)."""
        self._state = CANCELLED_AND_NOTIFIED
        for waiter in self._waiter_list or ():
            waiter.add_cancelled(self)
        self._wake_sleepers()

    def _start(self) -> bool:
        """Move PENDING to RUNNING; False if the future was cancelled meanwhile."""
        with self._condition:
            if self._state != PENDING:
                return False
            self._state = RUNNING
            return True

    def _force_cancelled(self) -> bool:
        """Mark a running future cancelled and wake every waiter (backend-side)."""
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            self._mark_cancelled()
        self._invoke_callbacks()
        return True

    def _try_set_result(self, result: T) -> bool:
        """Set the result unless the future already finished or was cancelled."""
        return self._complete(result, None)

    def _try_set_exception(self, exception: BaseException) -> bool:
        """Set the exception unless the future already finished or was cancelled."""
        return self._complete(None, exception)

    def _complete(self, result: T | None, exception: BaseException | None) -> bool:
        """Finish the future, then run the executor's bookkeeping and the done-callbacks.

        False if it had already finished or been cancelled.
        """
        # The bookkeeping runs after the waiters are told but before the done-callbacks.
        # A woken waiter needs the GIL, which this thread keeps until it next blocks, so
        # the bookkeeping is all but always done by the time the waiter runs, and it
        # no longer lengthens a synchronous round trip.
        if not self._finish(result, exception):
            return False
        self._invoke_callbacks()
        return True

    def _finish(self, result: T | None, exception: BaseException | None) -> bool:
        """Set the outcome and wake every waiter; False if the future had already
        finished or been cancelled.

        The one transition to FINISHED: whoever makes it owns the bookkeeping that
        follows (no other path can settle the future after it).
        """
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED):
                return False
            if exception is None:
                self._result = result
            else:
                self._exception = exception
            self._state = FINISHED
            for waiter in self._waiter_list or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
            self._wake_sleepers()
        return True

    def __await__(self) -> Generator[Any, None, T]:
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]  # already done: nothing to wait for
        hook = _await_hooks.hook
        if hook is not None:
            return (yield from hook(self))  # type: ignore[no-any-return]
        return (yield from await_in_asyncio(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        with self._condition:
            state = self._state
        return f"<taskkit.Future {self.name} {state.lower()}>"


# How the rest of taskkit (the ledger, the backends, the primitives) settles and starts
# the futures it made, without reaching into a future's private methods.  Plain aliases
# of the methods, so a call costs no extra frame on the hot paths.
#: ``settle(fut, result, exception)``: finish ``fut``; False if it had already finished.
settle: Callable[[Future[Any], Any, BaseException | None], bool] = Future._complete
#: ``try_set_result(fut, value)``: set the result unless ``fut`` already finished.
try_set_result: Callable[[Future[Any], Any], bool] = Future._try_set_result
#: ``try_set_exception(fut, error)``: set the exception unless ``fut`` already finished.
try_set_exception: Callable[[Future[Any], BaseException], bool] = Future._try_set_exception
#: ``start(fut)``: PENDING to RUNNING; False if ``fut`` was cancelled meanwhile.
start: Callable[[Future[Any]], bool] = Future._start
#: ``force_cancelled(fut)``: a running future the backend stopped ends as cancelled.
force_cancelled: Callable[[Future[Any]], bool] = Future._force_cancelled
#: ``finish(fut, result, exception)``: ``settle`` without the bookkeeping and the
#: done-callbacks, for a caller that does both itself (``LoopTasks.succeeded``).
finish: Callable[[Future[Any], Any, BaseException | None], bool] = Future._finish
#: ``run_done_callbacks(fut)``: the callbacks of ``add_done_callback``, after ``finish``.
run_done_callbacks: Callable[[Future[Any]], None] = Future._invoke_done_callbacks


# How the rest of taskkit reads a future's state without its lock: one attribute read is
# atomic, so a reader that only needs a glance (or holds the future final) takes none.
_UNFINISHED = (PENDING, RUNNING)
#: ``outcome(fut)``: ``(state, result, exception)`` of ``fut``, read without its lock.
outcome: Callable[[Future[Any]], tuple[str, Any, BaseException | None]] = operator.attrgetter(
    "_state", "_result", "_exception"
)


Future.__module__ = "taskkit"  # public as taskkit.Future


def settled(future: concurrent.futures.Future[Any]) -> bool:
    """``future.done()`` without taking its lock (for loops that look often)."""
    return future._state not in _UNFINISHED


def is_running(future: concurrent.futures.Future[Any]) -> bool:
    """True while ``future`` is RUNNING (neither pending nor settled), read without its lock."""
    return future._state == RUNNING


def set_help(future: Future[Any], help: Callable[[float | None], None] | None) -> None:
    """Set (or clear) what a waiter in ``result()`` calls before it sleeps (see ``_sleep``)."""
    if help is not None or future._help is not None:  # most futures never have one
        future._help = help


def set_stop(future: Future[Any], stop: Callable[[Future[Any]], bool] | None) -> None:
    """Set (or clear) how ``cancel()`` stops ``future``'s running task (see ``cancel``)."""
    future._stop_running = stop


def await_in_asyncio(future: concurrent.futures.Future[Any]) -> Generator[Any, None, Any]:
    """Await ``future`` from a task of the running asyncio loop.

    The same as ``await asyncio.wrap_future(future)``, but a future that is
    already done costs nothing, and one finished by the loop's own thread
    wakes the task without a round trip through the loop's self-pipe.
    Cancelling the awaiting task cancels the future, as ``wrap_future`` does.
    """
    if not future.done():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake(_: object) -> None:
            if get_running_loop_or_none() is loop:
                _wake_waiter(waiter)
            else:
                loop.call_soon_threadsafe(_wake_waiter, waiter)

        future.add_done_callback(wake)
        try:
            yield from waiter.__await__()
        except asyncio.CancelledError:
            future.cancel()
            raise
    return future.result()


def _wake_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@overload
def as_completed(
    futures: Iterable[Future[T]], timeout: float | None = None, *, progress: Progress = ...
) -> Iterator[Future[T]]: ...


@overload
def as_completed(
    futures: Iterable[concurrent.futures.Future[T]],
    timeout: float | None = None,
    *,
    progress: Progress = ...,
) -> Iterator[concurrent.futures.Future[T]]: ...


def as_completed(
    futures: Iterable[concurrent.futures.Future[T]],
    timeout: float | None = None,
    *,
    progress: Progress = False,
) -> Iterator[concurrent.futures.Future[T]]:
    """Yield each future once, as it finishes (or is cancelled).

    The same as ``concurrent.futures.as_completed``: duplicates are yielded
    once, and ``TimeoutError`` is raised if ``timeout`` seconds pass first.
    Given ``taskkit.Future[T]`` objects (what ``submit`` returns), it yields
    them, typed as such, so ``{ex.submit(fn, x): x ...}[fut]`` type-checks.

    ``progress`` shows a bar that moves as each future is yielded (needs
    ``pip install "taskkit[progress]"``): ``True``, a label, a dict of ``tqdm``
    options, or a bar of your own.  It appears when iteration starts.
    """
    if not wanted(progress):
        return concurrent.futures.as_completed(futures, timeout=timeout)
    check(progress)
    distinct = set(futures)
    return counted(
        concurrent.futures.as_completed(distinct, timeout=timeout), progress, len(distinct), "task"
    )


as_completed.__module__ = "taskkit"  # public as taskkit.as_completed
