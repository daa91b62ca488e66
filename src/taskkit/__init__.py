"""taskkit: run Python callables concurrently behind one Executor interface.

``open_executor(backend)`` gives an ``Executor`` for the process, thread,
asyncio, coroutine, dask or serial backend (``ProcessExecutor``,
``ThreadExecutor``...; or ``open_executor(workload=...)`` picks one from
``WORKLOADS``); its ``submit`` returns a ``Future`` that is also awaitable.
The guide is in ``docs/``.
"""

import importlib as _importlib
import logging as _logging
import typing as _typing

from ._backends import BACKENDS as BACKENDS
from ._backends import WORKLOADS as WORKLOADS
from ._backends import BackendName as BackendName
from ._backends import WorkloadName as WorkloadName
from ._backends import open_executor as open_executor
from ._core._errors import BackendUnavailable as BackendUnavailable
from ._core._errors import BlockingCallError as BlockingCallError
from ._core._errors import Deadlock as Deadlock
from ._core._errors import ExecutorClosed as ExecutorClosed
from ._core._errors import InitializerFailed as InitializerFailed
from ._core._errors import PipelineFailed as PipelineFailed
from ._core._errors import PipelineTimeout as PipelineTimeout
from ._core._errors import QueueClosed as QueueClosed
from ._core._errors import RemoteError as RemoteError
from ._core._errors import SchedulerStopped as SchedulerStopped
from ._core._errors import SerializationError as SerializationError
from ._core._errors import TaskkitError as TaskkitError
from ._core._errors import TaskTimeout as TaskTimeout
from ._core._errors import UsageError as UsageError
from ._core._errors import WorkerCrashed as WorkerCrashed

if _typing.TYPE_CHECKING:
    from ._backends.asyncio._executor import AsyncioExecutor as AsyncioExecutor
    from ._backends.coroutine import BlockingWarning as BlockingWarning
    from ._backends.coroutine import checkpoint as checkpoint
    from ._backends.coroutine import sleep as sleep
    from ._backends.coroutine._executor import CoroutineExecutor as CoroutineExecutor
    from ._backends.dask._executor import DaskExecutor as DaskExecutor
    from ._backends.process._executor import ProcessExecutor as ProcessExecutor
    from ._backends.serial._executor import SerialExecutor as SerialExecutor
    from ._backends.thread._executor import ThreadExecutor as ThreadExecutor
    from ._core._events import EventKind as EventKind
    from ._core._events import TaskEvent as TaskEvent
    from ._core._executor import Executor as Executor
    from ._core._executor import Statistics as Statistics
    from ._core._future import Future as Future
    from ._core._future import as_completed as as_completed
    from ._core._ledger import TaskOptions as TaskOptions
    from ._pipeline import Completed as Completed
    from ._pipeline import Pipeline as Pipeline
    from ._pipeline import StageResult as StageResult
    from ._pipeline import cmd as cmd
    from ._pipeline import shell as shell
    from ._primitives._protocols import Event as Event
    from ._primitives._protocols import Lock as Lock
    from ._primitives._protocols import Queue as Queue
    from ._primitives._protocols import Semaphore as Semaphore
    from ._primitives._protocols import Value as Value
else:
    from ._backends import CLASS_NAMES as _CLASS_NAMES
    from ._backends import backend_class as _backend_class

    # The backend classes are imported when first named, as open_executor imports them,
    # and so are the parts below, which a worker process of the process backend never
    # uses (it imports taskkit too): ``import taskkit`` imports neither asyncio, the
    # executor core, multiprocessing's machinery, Dask, the coroutine scheduler, the
    # shared-state primitives nor the subprocess pipelines.  Each of these names says
    # ``taskkit.X`` from the start, set where it is defined, so it does whichever module
    # imports it first.
    _LAZY = {
        "Executor": "._core._executor",
        "Statistics": "._core._executor",
        "TaskOptions": "._core._ledger",
        "Future": "._core._future",
        "as_completed": "._core._future",
        "TaskEvent": "._core._events",
        "EventKind": "._core._events",
        "sleep": "._backends.coroutine",
        "checkpoint": "._backends.coroutine",
        "BlockingWarning": "._backends.coroutine",
        "Queue": "._primitives._protocols",
        "Lock": "._primitives._protocols",
        "Event": "._primitives._protocols",
        "Semaphore": "._primitives._protocols",
        "Value": "._primitives._protocols",
        "cmd": "._pipeline",
        "shell": "._pipeline",
        "Pipeline": "._pipeline",
        "Completed": "._pipeline",
        "StageResult": "._pipeline",
    }

    def __getattr__(name: str) -> object:
        if name in _CLASS_NAMES:
            cls = globals()[name] = _backend_class(_CLASS_NAMES[name])
            return cls
        source = _LAZY.get(name)
        if source is None:
            raise AttributeError(f"module 'taskkit' has no attribute {name!r}")
        module = _importlib.import_module(source, __name__)
        for other, where in _LAZY.items():  # every name the module gives, at once
            if where == source:
                globals()[other] = _public(getattr(module, other))
        return globals()[name]

    def __dir__() -> list[str]:
        return sorted({*globals(), *_CLASS_NAMES, *_LAZY})


def _public(obj: _typing.Any) -> _typing.Any:
    """Say ``taskkit.X`` for ``obj``, not ``taskkit._core._future.X``: tracebacks and docs."""
    if isinstance(obj, type) or callable(obj):
        try:
            obj.__module__ = "taskkit"
        except (AttributeError, TypeError):
            pass
    return obj


__version__ = "0.1.0"

__all__ = (
    # executors
    "open_executor",
    "Executor",
    "ThreadExecutor",
    "ProcessExecutor",
    "AsyncioExecutor",
    "CoroutineExecutor",
    "SerialExecutor",
    "DaskExecutor",
    "Future",
    "as_completed",
    "Statistics",
    "TaskEvent",
    "EventKind",
    "TaskOptions",
    "BACKENDS",
    "WORKLOADS",
    "BackendName",
    "WorkloadName",
    # cooperative tasks (coroutine backend, asyncio)
    "sleep",
    "checkpoint",
    "BlockingWarning",
    # shared-state primitives (types for annotations; create them with ex.queue() ...)
    "Queue",
    "Lock",
    "Event",
    "Semaphore",
    "Value",
    # subprocess pipelines
    "cmd",
    "shell",
    "Pipeline",
    "Completed",
    "StageResult",
    # errors
    "TaskkitError",
    "ExecutorClosed",
    "BackendUnavailable",
    "TaskTimeout",
    "WorkerCrashed",
    "SerializationError",
    "RemoteError",
    "InitializerFailed",
    "SchedulerStopped",
    "UsageError",
    "QueueClosed",
    "BlockingCallError",
    "PipelineFailed",
    "PipelineTimeout",
    "Deadlock",
)

for _name in __all__:
    if _name in globals():  # the others are named when first imported: see __getattr__
        _public(globals()[_name])
del _name

# A library logs; the application decides where records go (see docs/observing.md).
_logging.getLogger("taskkit").addHandler(_logging.NullHandler())
