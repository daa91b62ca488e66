"""The event loop of a controlled run: asyncio code runs with the scheduler's choices.

``async def`` tasks of a controlled run are ``asyncio.Task`` objects on ``ControlledLoop``,
so asyncio's own primitives (``Lock``, ``Event``, ``Queue``, ``Condition``), ``gather``,
``create_task``, ``TaskGroup``, ``wait_for``, ``timeout`` and timed sleeps work as they do
on any loop.  What differs is who picks the next ready handle and what time it is::

    loop._ready: [step of T0] [wakeup of T2] [future callback] ...
                      │              │               └── housekeeping: runs at once, in order
                      └──────────────┴── a task's handle: the task is enabled; the run's
                                         strategy picks which task's handle runs next
    loop._scheduled (timers): fire, in virtual time, only when no task can run

Every ``asyncio.Task`` is a task of the run (T0, T1 ... for the callables given; the next
numbers, in creation order, for tasks the code creates), so a lost update across an
``await`` is an interleaving like any other.  Callbacks that belong to no task (a future's
done callbacks, ``gather``'s bookkeeping) run at once, in asyncio's order.  The loop is
reused from run to run: an asyncio primitive binds to the first loop it is used on.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .._core._compat import (
    base_call_soon,
    get_running_loop_or_none,
    handle_callback,
    loop_ready,
    loop_timers,
    run_handle,
    set_running_loop,
    timer_unscheduled,
)

__all__ = ["ControlledLoop", "handle_owner", "loop"]


def handle_owner(handle: asyncio.Handle) -> asyncio.Task[Any] | None:
    """Return the task a ready handle steps or wakes (None: a plain callback)."""
    owner = getattr(handle_callback(handle), "__self__", None)
    return owner if isinstance(owner, asyncio.Task) else None


class ControlledLoop(asyncio.BaseEventLoop):
    """An event loop that never runs itself: the controlled run steps it, one handle at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: Callable[[], float] = lambda: 0.0
        self.on_new_task: Callable[[asyncio.Task[Any]], None] | None = None
        self.errors: list[dict[str, Any]] = []
        self.plain_ready = False  # a handle that belongs to no task may be ready
        # called with a plain callback of the code under test (not asyncio's bookkeeping)
        self.on_own_callback: Callable[[object], None] | None = None

    # -- what asyncio asks of a loop -----------------------------------------------------

    def time(self) -> float:
        return self.clock()

    def create_task(  # type: ignore[override]
        self, coro: Coroutine[Any, Any, Any], **options: Any
    ) -> asyncio.Task[Any]:
        task = super().create_task(coro, **options)
        if self.on_new_task is not None:
            self.on_new_task(task)
        return task

    def _call_soon(self, callback: Any, args: Any, context: Any) -> asyncio.Handle:
        handle: asyncio.Handle = base_call_soon(self, callback, args, context)
        if handle_owner(handle) is None:
            self.plain_ready = True
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        return self.call_soon(callback, *args, context=context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # "Task was destroyed but it is pending" for tasks of an aborted run, an exception
        # in a plain callback ...: kept for the run, never printed from a finalizer
        self.errors.append(context)

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        if executor is not None:
            return asyncio.wrap_future(executor.submit(func, *args), loop=self)
        # asyncio.to_thread(): a thread of its own, which the run makes a task (Thread.start)
        future: asyncio.Future[Any] = self.create_future()

        def call() -> None:
            try:
                result = func(*args)
            except BaseException as error:
                self.call_soon_threadsafe(_settle, future, None, error)
            else:
                self.call_soon_threadsafe(_settle, future, result, None)

        threading.Thread(target=call, name="asyncio.to_thread", daemon=True).start()
        return future

    def run_forever(self) -> None:
        raise RuntimeError("the loop of a controlled run is stepped by taskkit.testing")

    def run_until_complete(self, future: Any) -> Any:
        raise RuntimeError("the loop of a controlled run is stepped by taskkit.testing")

    def is_running(self) -> bool:
        return True

    def _write_to_self(self) -> None:
        pass

    def _process_events(self, event_list: Any) -> None:
        pass

    # -- what the controlled run asks of it ------------------------------------------------

    def reset(
        self, clock: Callable[[], float], on_new_task: Callable[[asyncio.Task[Any]], None]
    ) -> None:
        """Start a run: no handles, no timers, the run's virtual clock."""
        loop_ready(self).clear()
        loop_timers(self).clear()
        self.clock = clock
        self.errors.clear()
        self.plain_ready = False
        self.on_new_task = on_new_task
        if self.get_debug():
            self.set_debug(False)

    def has_step(self, task: asyncio.Task[Any]) -> bool:
        """True if ``task`` has a handle ready to run (it is enabled)."""
        return any(not h.cancelled() and handle_owner(h) is task for h in loop_ready(self))

    def step(self, task: asyncio.Task[Any]) -> None:
        """Run ``task``'s first ready handle, then the plain callbacks that became ready."""
        ready = loop_ready(self)
        for handle in ready:
            if not handle.cancelled() and handle_owner(handle) is task:
                ready.remove(handle)
                self._run(handle)
                break
        self.housekeep()

    def housekeep(self) -> None:
        """Run every ready handle that belongs to no task, in order (they may add more)."""
        if not self.plain_ready:
            return
        ready = loop_ready(self)
        while True:
            plain = [h for h in ready if h.cancelled() or handle_owner(h) is None]
            if not plain:
                self.plain_ready = False
                return
            for handle in plain:
                ready.remove(handle)
                if not handle.cancelled():
                    if self.on_own_callback is not None:
                        self.on_own_callback(handle_callback(handle))
                    self._run(handle)

    def next_timer(self) -> float | None:
        """When the earliest pending timer is due, or None."""
        scheduled = loop_timers(self)
        while scheduled and scheduled[0].cancelled():
            timer_unscheduled(heapq.heappop(scheduled))
        return scheduled[0].when() if scheduled else None

    def fire_timers(self) -> None:
        """Make every timer due by now (the run has moved its clock) ready."""
        now = self.clock()
        scheduled = loop_timers(self)
        while scheduled and scheduled[0].when() <= now:
            timer = heapq.heappop(scheduled)
            timer_unscheduled(timer)
            if not timer.cancelled():
                loop_ready(self).append(timer)
                self.plain_ready = True
        self.housekeep()

    def _run(self, handle: asyncio.Handle) -> None:
        previous = get_running_loop_or_none()
        set_running_loop(self)
        try:
            run_handle(handle)
        finally:
            set_running_loop(previous)


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_loop: ControlledLoop | None = None


def loop() -> ControlledLoop:
    """The one controlled loop (asyncio primitives bind to a loop, so runs share it)."""
    global _loop
    if _loop is None:
        _loop = ControlledLoop()
    return _loop


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)


def where_awaiting(task: asyncio.Task[Any]) -> str:
    """Name what a suspended task waits in: ``Lock.acquire()``, ``sleep(0)``, ``gather()``."""
    name, in_asyncio = "", False
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            in_asyncio = code.co_filename.startswith(_ASYNCIO_DIR)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if name == "__sleep0":
        return "sleep(0)"
    if in_asyncio:
        return f"{name}()"  # Lock.acquire(), Queue.get(), sleep(), TaskGroup.__aexit__()
    waiter = getattr(task, "_fut_waiter", None)
    kind = type(waiter).__name__.lstrip("_")
    return {"GatheringFuture": "gather()", "Task": "a task", "NoneType": "its turn"}.get(
        kind, f"a {kind}"
    )
