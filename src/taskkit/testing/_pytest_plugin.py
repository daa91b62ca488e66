"""The pytest plugin of ``taskkit.testing`` (entry point ``pytest11``: ``taskkit``).

What it does, in the order pytest meets it:

* **Loading** imports ``taskkit.testing``, before any ``conftest.py`` or test module is
  imported, so that every ``threading.Lock()`` and ``RLock()`` the code under test creates
  at import time is one a controlled run can schedule (see ``docs/testing.md``).
* **The ``interleaving`` fixture** runs the test body under ``explore``: the body runs once
  per execution, ``interleaving.run(tasks, args)`` runs the tasks under that execution's
  schedule, and what follows it is the invariant.  ``@pytest.mark.explore(...)`` passes
  options (``max_preemptions``, ``max_executions``, ``watchdog``) and ``complete=False``
  accepts an incomplete search.
* **A failing test** that holds a ``Report`` or ``Counterexample`` gets a section
  "taskkit.testing" with the whole interleaving, whatever its assert printed.

``-p no:taskkit`` turns it all off.

How a body runs once per execution (``_Body``)::

    explore(proxies, setup, invariant)          the test's own thread
      setup():      start the body on a thread  ->  body runs up to interleaving.run(),
                    return the (tasks, args) it passed                       parks there
      proxies[i]:   tasks[i](*args), under control
      invariant():  let the body go on          ->  run() returns, the rest of the body
                    re-raise what the body raised                             runs and ends
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Generator, Sequence
from types import TracebackType
from typing import Any

import pytest

# Importing taskkit.testing (the parent of this module) installs the lock factories.
from taskkit.testing._report import add_note
from taskkit.testing._search import Counterexample, Report, explore
from taskkit.testing._tracing import SELF, classify

__all__ = ["Interleaving"]

_MARKER = (
    "explore(max_preemptions=None, max_executions=100000, watchdog=2.0, complete=True): run "
    "the test body under taskkit.testing.explore, once per execution, through its "
    "`interleaving` fixture"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)


class _Stop(BaseException):
    """Unwinds a body whose controlled run failed (explore does not check its invariant)."""


class Interleaving:
    """The ``interleaving`` fixture: ``run(tasks, args)`` is the controlled part of a test."""

    def __init__(self) -> None:
        self._body: _Body | None = None

    def run(self, tasks: Sequence[Callable[..., Any]], args: Sequence[object] = ()) -> None:
        """Run each callable in ``tasks`` with ``*args`` as a task of the current execution.

        Raises:
            RuntimeError: called twice in one body, or from a test not run by the plugin.
        """
        body = self._body
        if body is None or threading.current_thread() is not body.thread:
            raise RuntimeError(
                "interleaving.run() works in the body of the test that requested the "
                "`interleaving` fixture, called once, on the thread pytest runs it on"
            )
        body.handover(tuple(tasks), tuple(args))


class _Body:
    """One run of the test body on its own thread, parked at ``interleaving.run()``."""

    def __init__(self, call: Callable[[], object], fixture: Interleaving) -> None:
        self.tasks: tuple[Callable[..., Any], ...] | None = None
        self.args: tuple[object, ...] = ()
        self.error: BaseException | None = None
        self.finished = False
        self.stop = False
        self._parked = threading.Event()
        self._resume = threading.Event()
        self._done = threading.Event()
        fixture._body = self
        self.thread = threading.Thread(
            target=self._main, args=(call,), name="taskkit.testing body", daemon=True
        )
        self.thread.start()
        self._parked.wait()

    def _main(self, call: Callable[[], object]) -> None:
        try:
            call()
        except _Stop:
            pass
        except BaseException as error:
            self.error = error
        finally:
            self.finished = True
            self._parked.set()
            self._done.set()

    def handover(self, tasks: tuple[Callable[..., Any], ...], args: tuple[object, ...]) -> None:
        if self.tasks is not None:
            raise RuntimeError("call interleaving.run() once per test")
        self.tasks, self.args = tasks, args
        self._parked.set()
        self._resume.wait()
        if self.stop:
            raise _Stop

    def finish(self, stop: bool = False) -> None:
        """Let the body run on from ``run()`` (or unwind, with ``stop``) and wait for its end."""
        self.stop = stop
        self._resume.set()
        self._done.wait()


def _proxy(index: int, is_coro: bool) -> Callable[..., Any]:
    if is_coro:

        async def task_coro(body: _Body) -> object:
            assert body.tasks is not None
            return await body.tasks[index](*body.args)

        return task_coro

    def task(body: _Body) -> object:
        assert body.tasks is not None
        return body.tasks[index](*body.args)

    return task


def _explore_body(item: pytest.Function, fixture: Interleaving) -> None:
    marker = item.get_closest_marker("explore")
    options = dict(marker.kwargs) if marker is not None else {}
    need_complete = bool(options.pop("complete", True))
    funcargs = _own_arguments(item)

    def call() -> object:
        return item.obj(**funcargs)

    bodies: list[_Body] = []

    def start() -> _Body:
        if bodies and not bodies[-1].finished:
            bodies[-1].finish(stop=True)  # its run failed: unwind it
        body = _Body(call, fixture)
        bodies.append(body)
        if body.tasks is None:
            if body.error is not None:
                raise body.error
            raise RuntimeError(f"{item.name} never called interleaving.run(tasks, args)")
        return body

    first = start()
    assert first.tasks is not None
    proxies = [_proxy(i, inspect.iscoroutinefunction(t)) for i, t in enumerate(first.tasks)]
    pending = [first]

    def setup() -> _Body:
        return pending.pop() if pending else start()

    def invariant(body: _Body) -> bool:
        body.finish()
        if body.error is not None:
            raise body.error
        return True

    try:
        report = explore(proxies, setup=setup, invariant=invariant, **options)
    finally:
        for body in bodies:
            if not body.finished:
                body.finish(stop=True)
    item.user_properties.append(("taskkit.testing", str(report)))
    if not report.ok:
        cx = report.counterexample
        assert cx is not None
        add_note(cx.error, f"taskkit.testing: {report}")
        raise cx.error
    if need_complete and not report.complete:
        pytest.fail(f"taskkit.testing: the search was not complete\n{report}", pytrace=False)


def _own_arguments(item: pytest.Function) -> dict[str, object]:
    """The fixture values the test function itself asks for, as pytest passes them.

    ``item.funcargs`` also holds autouse fixtures and those of ``usefixtures``: only the
    function's own parameters without a default (as pytest fills them) are passed.
    """
    arguments = {}
    for name, parameter in inspect.signature(item.obj).parameters.items():
        if (
            parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            and parameter.default is parameter.empty
            and name in item.funcargs
        ):
            arguments[name] = item.funcargs[name]
    return arguments


@pytest.fixture
def interleaving() -> Interleaving:
    """Run this test's body under ``explore``: ``interleaving.run(tasks, args)`` is the race."""
    return Interleaving()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fixture = pyfuncitem.funcargs.get("interleaving")
    if not isinstance(fixture, Interleaving):
        if pyfuncitem.get_closest_marker("explore") is not None:
            raise pytest.UsageError(
                f"{pyfuncitem.nodeid}: @pytest.mark.explore runs a test body through its "
                "`interleaving` fixture; request it and call interleaving.run(tasks, args)"
            )
        return None
    _explore_body(pyfuncitem, fixture)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed and call.excinfo is not None:
        for found in _reports_in(call.excinfo.tb):
            report.sections.append(("taskkit.testing", str(found)))
    return report


def _reports_in(tb: TracebackType | None) -> list[Report | Counterexample]:
    """The failed or incomplete reports the failing test's frames hold, each once."""
    found: dict[int, Report | Counterexample] = {}
    while tb is not None:
        if classify(tb.tb_frame.f_code.co_filename) == SELF:
            tb = tb.tb_next  # this plugin's own frames: their failure carries its report
            continue
        for value in list(tb.tb_frame.f_locals.values()):
            failed = isinstance(value, Report) and not (value.ok and value.complete)
            if failed or isinstance(value, Counterexample):
                found.setdefault(id(value), value)
        tb = tb.tb_next
    return list(found.values())
