"""The pytest plugin: locks made at import time are controlled, a body runs under explore."""

from __future__ import annotations

from importlib import metadata

import pytest

pytest_plugins = ["pytester"]


def _installed() -> bool:
    """Is the ``pytest11`` entry point installed (``pip install -e .`` after it was added)?"""
    return any(ep.name == "taskkit" for ep in metadata.entry_points(group="pytest11"))


WITH_PLUGIN = () if _installed() else ("-p", "taskkit.testing._pytest_plugin")
WITHOUT_PLUGIN = ("-p", "no:taskkit")
QUIET = ("-p", "no:cacheprovider", "-p", "no:randomly")

IMPORT_TIME_LOCK = """
import threading

LOCK = threading.Lock()  # made before this module imports taskkit.testing

from taskkit.testing import checkpoint, explore

count = [0]


def reset():
    count[0] = 0


def inc(_):
    with LOCK:
        n = count[0]
        checkpoint()
        count[0] = n + 1


def test_locked_counter():
    report = explore([inc, inc], setup=reset, invariant=lambda _: count[0] == 2, watchdog=0.5)
    assert report.ok, report
    assert report.complete
"""


@pytest.mark.timeout(60)
def test_a_lock_made_at_import_time_is_controlled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_import_time=IMPORT_TIME_LOCK)
    result = pytester.runpytest_subprocess(*QUIET, *WITH_PLUGIN)
    result.assert_outcomes(passed=1)

    without = pytester.runpytest_subprocess(*QUIET, *WITHOUT_PLUGIN)
    without.assert_outcomes(failed=1)  # the raw lock: the watchdog reports a false Deadlock
    without.stdout.fnmatch_lines(["*Deadlock*"])


BODIES = """
import pytest
import threading


class Account:
    def __init__(self):
        self.balance = 0
        self.lock = threading.Lock()


def deposit(account):
    seen = account.balance
    account.balance = seen + 10


def deposit_locked(account):
    with account.lock:
        deposit(account)


def test_lost_update(interleaving):
    account = Account()
    interleaving.run([deposit, deposit], args=(account,))
    assert account.balance == 20


def test_locked(interleaving):
    account = Account()
    interleaving.run([deposit_locked, deposit_locked], args=(account,))
    assert account.balance == 20


@pytest.mark.explore(max_preemptions=0, complete=False)
def test_bounded(interleaving):
    account = Account()
    interleaving.run([deposit, deposit], args=(account,))
    assert account.balance == 20


@pytest.mark.explore(max_preemptions=0)
def test_bounded_must_be_complete(interleaving):
    account = Account()
    interleaving.run([deposit, deposit], args=(account,))
    assert account.balance == 20


@pytest.mark.explore
def test_marker_without_fixture():
    pass


async def adeposit(account):
    seen = account.balance
    from taskkit.testing import checkpoint
    await checkpoint()
    account.balance = seen + 10


def test_async_lost_update(interleaving):
    account = Account()
    interleaving.run([adeposit, adeposit], args=(account,))
    assert account.balance == 20
"""


@pytest.mark.timeout(60)
def test_the_interleaving_fixture_runs_the_body_under_explore(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bodies=BODIES)
    result = pytester.runpytest_subprocess(*QUIET, *WITH_PLUGIN, "-rA")
    result.assert_outcomes(passed=2, failed=4)
    result.stdout.fnmatch_lines(
        [
            "PASSED test_bodies.py::test_locked",
            "PASSED test_bodies.py::test_bounded",
            "FAILED test_bodies.py::test_lost_update - assert 10 == 20*",
            "FAILED test_bodies.py::test_bounded_must_be_complete*",
            "FAILED test_bodies.py::test_marker_without_fixture - pytest.UsageError*",
            "FAILED test_bodies.py::test_async_lost_update - assert 10 == 20*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*preempt*", "*schedule: 'T0@*>T1*"])
    result.stdout.fnmatch_lines(["*the search was not complete*"])
    result.stdout.no_fnmatch_line("*- taskkit.testing -*")  # the failure itself tells it all


REPORT_ASSERT = """
from taskkit.testing import explore


class Box:
    value = 0


def bump(box):
    box.value = box.value + 1


def test_report(request):
    report = explore([bump, bump], setup=Box, invariant=lambda box: box.value == 2)
    assert report.ok, report
"""


@pytest.mark.timeout(60)
def test_a_failed_report_reads_well_in_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_report=REPORT_ASSERT)
    result = pytester.runpytest_subprocess(*QUIET, *WITH_PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*AssertionError: Report(ok=False, complete=False, executions=*, "
            "failure='_InvariantFailed: invariant does not hold*', schedule='T0@*')",
            "*- taskkit.testing -*",
            "failed after * executions:",
            "interleaving of 2 tasks, * switch points, 1 preemption:",
            "*T1  preempt*read .value*",
            "schedule: 'T0@*>T1*",
        ]
    )
