"""Deterministic race finding for taskkit users: run tasks under a scheduler you control.

``interleavings()`` (a Hypothesis strategy), ``explore()`` (systematic search) and
``replay()`` (a recorded schedule) all drive one controlled runtime, in which exactly one task
runs at a time and every switch point is a recorded decision.  ``stress()`` runs real threads
instead, and ``check_linearizable()`` judges a recorded history against a sequential model.
See ``docs/testing.md``.

How the package is laid out, from what users call down to the runtime::

    _search           interleavings(), explore(), replay(): where the decisions come from
    _report           an interleaving as a table, and the schedule string that replays it
    _stress           stress(): real threads, no control
    _linearizability  check_linearizable()
    _pytest_plugin    the ``interleaving`` fixture and ``@pytest.mark.explore``
    _invariant        the invariant check after an execution, shared by the above
    _runtime          Run: one controlled execution, the hook the primitives talk to;
                      checkpoint().  Its parts, each a class of its own module:
      _switchboard      who holds the baton: switch points, decisions, the hand-over
      _threads          thread tasks, traced by _tracer, on the reused threads of _workers
      _coroutines       coroutine tasks, on the event loop of _asyncio
      _recorder         the steps, the footprints' objects, names for reports
      _outcome          failure and abort, deadlocks, the watchdog, virtual time
      _task             Task, Step and Strategy, shared by all of them
    _patches          the standard library's locks, conditions, sleeps ... as switch points
    _tracing          which code is traced, and which of its bytecodes are switch points

Importing this package makes ``threading.Lock()`` and ``threading.RLock()`` return locks that
a controlled run can schedule (they behave as ordinary locks otherwise), so import it before
the code under test creates its locks.
"""

from __future__ import annotations

from .._core._errors import Deadlock as Deadlock
from ._linearizability import History as History
from ._linearizability import LockModel as LockModel
from ._linearizability import Operation as Operation
from ._linearizability import QueueModel as QueueModel
from ._linearizability import Raised as Raised
from ._linearizability import RegisterModel as RegisterModel
from ._linearizability import check_linearizable as check_linearizable
from ._patches import install_factories as _install_factories
from ._runtime import checkpoint as checkpoint
from ._search import Counterexample as Counterexample
from ._search import Report as Report
from ._search import Scheduler as Scheduler
from ._search import explore as explore
from ._search import interleavings as interleavings
from ._search import replay as replay
from ._stress import StressReport as StressReport
from ._stress import stress as stress

__all__ = (
    "interleavings",
    "explore",
    "replay",
    "checkpoint",
    "stress",
    "check_linearizable",
    "History",
    "Operation",
    "Raised",
    "QueueModel",
    "LockModel",
    "RegisterModel",
    "Deadlock",
    "Report",
    "Counterexample",
    "Scheduler",
    "StressReport",
)

_install_factories()

for _name in __all__:
    _obj = globals()[_name]
    if _name != "Deadlock" and getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
