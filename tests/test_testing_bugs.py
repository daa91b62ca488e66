"""The classic concurrency bugs, written as ordinary Python: each is found, its fix passes.

Every bug is checked twice with default settings: by ``explore`` (systematic search, which
must report it) and by ``interleavings()`` under Hypothesis (which must find it).  Every fixed
version must pass both, and ``explore`` must check it completely.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings

from taskkit import Deadlock
from taskkit.testing import checkpoint, explore, interleavings

# derandomize: the search is the product, not the seed; a test must not be flaky.
SEARCH = settings(derandomize=True, database=None, deadline=None, print_blob=False)


@dataclass
class Bug:
    name: str
    tasks: list[Callable[..., Any]]
    setup: Callable[[], Any]
    invariant: Callable[[Any], object] | None
    error: type[BaseException]


def found_by_explore(bug: Bug) -> None:
    report = explore(bug.tasks, setup=bug.setup, invariant=bug.invariant)
    assert not report.ok, f"{bug.name}: explore missed the bug"
    assert report.counterexample is not None
    assert isinstance(report.counterexample.error, bug.error), report.counterexample


def passes_explore(bug: Bug) -> None:
    report = explore(bug.tasks, setup=bug.setup, invariant=bug.invariant)
    assert report.ok, str(report)
    assert report.complete


def found_by_hypothesis(bug: Bug) -> None:
    @SEARCH
    @given(s=interleavings())
    def prop(s: Any) -> None:
        state = bug.setup()
        s.run(bug.tasks, args=(state,))
        if bug.invariant is not None:
            assert bug.invariant(state), state

    with pytest.raises(bug.error):
        prop()


def passes_hypothesis(bug: Bug) -> None:
    @SEARCH
    @given(s=interleavings())
    def prop(s: Any) -> None:
        state = bug.setup()
        s.run(bug.tasks, args=(state,))
        if bug.invariant is not None:
            assert bug.invariant(state), state

    prop()


# -- 1. the tutorial's lost update: balance = balance + n; balance = balance - n ------------

balance = 0
balance_lock = threading.Lock()


def change_it(n: int) -> None:
    global balance
    balance = balance + n
    balance = balance - n


def change_it_locked(n: int) -> None:
    global balance
    with balance_lock:
        balance = balance + n
        balance = balance - n


def reset_balance() -> None:
    global balance
    balance = 0


TUTORIAL = Bug(
    "tutorial lost update",
    [lambda _: change_it(5), lambda _: change_it(8)],
    reset_balance,
    lambda _: balance == 0,
    AssertionError,
)
TUTORIAL_FIXED = Bug(
    "tutorial, locked",
    [lambda _: change_it_locked(5), lambda _: change_it_locked(8)],
    reset_balance,
    lambda _: balance == 0,
    AssertionError,
)


# -- 2. a lost update on a dict counter ------------------------------------------------------


@dataclass
class Counts:
    words: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def count_word(c: Counts) -> None:
    c.words["spam"] = c.words.get("spam", 0) + 1


def count_word_locked(c: Counts) -> None:
    with c.lock:
        c.words["spam"] = c.words.get("spam", 0) + 1


DICT_COUNTER = Bug(
    "dict counter",
    [count_word, count_word],
    Counts,
    lambda c: c.words == {"spam": 2},
    AssertionError,
)
DICT_COUNTER_FIXED = Bug(
    "dict counter, locked",
    [count_word_locked, count_word_locked],
    Counts,
    lambda c: c.words == {"spam": 2},
    AssertionError,
)


# -- 3. check-then-act: two clients both claim one ticket -----------------------------------


@dataclass
class Ticket:
    owner: str | None = None
    claims: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def claim(t: Ticket, who: str) -> None:
    if t.owner is None:
        t.owner = who
        t.claims.append(who)


def claim_locked(t: Ticket, who: str) -> None:
    with t.lock:
        if t.owner is None:
            t.owner = who
            t.claims.append(who)


DOUBLE_CLAIM = Bug(
    "check-then-act",
    [lambda t: claim(t, "ann"), lambda t: claim(t, "bob")],
    Ticket,
    lambda t: len(t.claims) == 1,
    AssertionError,
)
DOUBLE_CLAIM_FIXED = Bug(
    "check-then-act, locked",
    [lambda t: claim_locked(t, "ann"), lambda t: claim_locked(t, "bob")],
    Ticket,
    lambda t: len(t.claims) == 1,
    AssertionError,
)


# -- 4. lock-order deadlock ------------------------------------------------------------------


@dataclass
class Accounts:
    a: threading.Lock = field(default_factory=threading.Lock)
    b: threading.Lock = field(default_factory=threading.Lock)
    moves: int = 0


def move_ab(s: Accounts) -> None:
    with s.a, s.b:
        s.moves += 1


def move_ba(s: Accounts) -> None:
    with s.b, s.a:
        s.moves += 1


LOCK_ORDER = Bug("lock-order deadlock", [move_ab, move_ba], Accounts, None, Deadlock)
LOCK_ORDER_FIXED = Bug(
    "lock order, consistent", [move_ab, move_ab], Accounts, lambda s: s.moves == 2, Deadlock
)


# -- 5. a lost wakeup with threading.Condition -----------------------------------------------


@dataclass
class Mailbox:
    cond: threading.Condition = field(default_factory=threading.Condition)
    ready: bool = False


def wait_for_mail(m: Mailbox) -> None:
    if not m.ready:  # checked without holding the condition's lock
        with m.cond:
            m.cond.wait()


def wait_for_mail_fixed(m: Mailbox) -> None:
    with m.cond:
        while not m.ready:
            m.cond.wait()


def deliver(m: Mailbox) -> None:
    with m.cond:
        m.ready = True
        m.cond.notify()


LOST_WAKEUP = Bug("lost wakeup", [wait_for_mail, deliver], Mailbox, None, Deadlock)
LOST_WAKEUP_FIXED = Bug(
    "wakeup, checked under the lock", [wait_for_mail_fixed, deliver], Mailbox, None, Deadlock
)


# -- 6. a double pop from a one-item list ----------------------------------------------------


@dataclass
class Jobs:
    items: list[int] = field(default_factory=lambda: [42])
    done: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def take_job(j: Jobs) -> None:
    if j.items:
        j.done.append(j.items.pop())


def take_job_locked(j: Jobs) -> None:
    with j.lock:
        if j.items:
            j.done.append(j.items.pop())


DOUBLE_POP = Bug("double pop", [take_job, take_job], Jobs, None, IndexError)
DOUBLE_POP_FIXED = Bug(
    "pop, locked", [take_job_locked, take_job_locked], Jobs, lambda j: j.done == [42], IndexError
)


# -- 7. a torn read of a two-variable invariant (lo < hi) ------------------------------------


@dataclass
class Range:
    lo: int = 0
    hi: int = 10
    bounds: tuple[int, int] = (0, 10)
    seen: list[tuple[int, int]] = field(default_factory=list)


def move_range(r: Range) -> None:
    r.lo = 20
    r.hi = 30


def read_range(r: Range) -> None:
    r.seen.append((r.lo, r.hi))


def move_bounds(r: Range) -> None:
    r.bounds = (20, 30)  # one write publishes both


def read_bounds(r: Range) -> None:
    r.seen.append(r.bounds)


TORN_READ = Bug(
    "torn read",
    [move_range, read_range],
    Range,
    lambda r: all(a < b for a, b in r.seen),
    AssertionError,
)
TORN_READ_FIXED = Bug(
    "read of one tuple",
    [move_bounds, read_bounds],
    Range,
    lambda r: all(a < b for a, b in r.seen),
    AssertionError,
)


# -- 8. unsafe publication: the instance is visible before it is initialized ----------------


class Service:
    def __init__(self) -> None:
        self.connected = False

    def connect(self) -> None:
        self.connected = True


@dataclass
class Registry:
    instance: Service | None = None


def get_service(reg: Registry) -> Service:
    if reg.instance is None:
        reg.instance = Service()
        reg.instance.connect()
    return reg.instance


def get_service_fixed(reg: Registry) -> Service:
    if reg.instance is None:
        service = Service()
        service.connect()
        reg.instance = service  # publish only a finished object
    return reg.instance


def use_service(reg: Registry) -> None:
    assert get_service(reg).connected, "got a service that is not connected yet"


def use_service_fixed(reg: Registry) -> None:
    assert get_service_fixed(reg).connected, "got a service that is not connected yet"


UNSAFE_PUBLICATION = Bug(
    "unsafe publication", [use_service, use_service], Registry, None, AssertionError
)
UNSAFE_PUBLICATION_FIXED = Bug(
    "publication after init",
    [use_service_fixed, use_service_fixed],
    Registry,
    None,
    AssertionError,
)


# -- 9. a dict mutated during iteration ------------------------------------------------------


@dataclass
class Prices:
    table: dict[str, int] = field(default_factory=lambda: {"tea": 3, "jam": 4})
    total: int = 0


def add_up(p: Prices) -> None:
    total = 0
    for name in p.table:
        total += p.table[name]
    p.total = total


def add_up_snapshot(p: Prices) -> None:
    total = 0
    for name in list(p.table):
        total += p.table[name]
    p.total = total


def add_price(p: Prices) -> None:
    p.table["bun"] = 2


ITERATION = Bug("dict changed during iteration", [add_up, add_price], Prices, None, RuntimeError)
ITERATION_FIXED = Bug(
    "iteration over a snapshot",
    [add_up_snapshot, add_price],
    Prices,
    lambda p: p.total in (7, 9),
    RuntimeError,
)


# -- 10. the lost update as async def tasks with checkpoint() --------------------------------


@dataclass
class Wallet:
    balance: int = 0


async def deposit(w: Wallet) -> None:
    seen = w.balance
    await checkpoint()  # another task may run here: the read above is stale after it
    w.balance = seen + 10


async def deposit_fixed(w: Wallet) -> None:
    await checkpoint()
    w.balance += 10  # read and write with no await between: atomic for coroutine tasks


ASYNC_UPDATE = Bug(
    "async lost update", [deposit, deposit], Wallet, lambda w: w.balance == 20, AssertionError
)
ASYNC_UPDATE_FIXED = Bug(
    "async update, no await between",
    [deposit_fixed, deposit_fixed],
    Wallet,
    lambda w: w.balance == 20,
    AssertionError,
)


BUGS = [
    TUTORIAL,
    DICT_COUNTER,
    DOUBLE_CLAIM,
    LOCK_ORDER,
    LOST_WAKEUP,
    DOUBLE_POP,
    TORN_READ,
    UNSAFE_PUBLICATION,
    ITERATION,
    ASYNC_UPDATE,
]
FIXED = [
    TUTORIAL_FIXED,
    DICT_COUNTER_FIXED,
    DOUBLE_CLAIM_FIXED,
    LOCK_ORDER_FIXED,
    LOST_WAKEUP_FIXED,
    DOUBLE_POP_FIXED,
    TORN_READ_FIXED,
    UNSAFE_PUBLICATION_FIXED,
    ITERATION_FIXED,
    ASYNC_UPDATE_FIXED,
]
BUG_IDS = [b.name for b in BUGS]
FIXED_IDS = [b.name for b in FIXED]


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_explore_finds(bug: Bug) -> None:
    found_by_explore(bug)


@pytest.mark.parametrize("bug", BUGS, ids=BUG_IDS)
def test_interleavings_find(bug: Bug) -> None:
    found_by_hypothesis(bug)


@pytest.mark.parametrize("bug", FIXED, ids=FIXED_IDS)
def test_explore_proves_fix(bug: Bug) -> None:
    passes_explore(bug)


@pytest.mark.parametrize("bug", FIXED, ids=FIXED_IDS)
def test_interleavings_pass_fix(bug: Bug) -> None:
    passes_hypothesis(bug)


def test_tutorial_counterexample_is_minimal() -> None:
    report = explore(TUTORIAL.tasks, setup=TUTORIAL.setup, invariant=TUTORIAL.invariant)
    assert report.counterexample is not None
    assert report.counterexample.preemptions == 2


def test_tutorial_shrinks_to_two_preemptions() -> None:
    runs: list[Any] = []

    @SEARCH
    @given(s=interleavings())
    def prop(s: Any) -> None:
        reset_balance()
        s.run([change_it, change_it], args=(5,))
        runs.append(s)
        assert balance == 0

    with pytest.raises(AssertionError):
        prop()
    # the last run Hypothesis makes is the shrunk, failing example
    assert runs[-1].last_run.preemptions == 2
    assert runs[-1].schedule.count(">") == 2
