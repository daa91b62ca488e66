"""taskkit: run Python callables concurrently behind one Executor interface.

``open_executor(backend)`` gives an ``Executor`` for the process, thread,
asyncio, coroutine, dask or serial backend (``ProcessExecutor``,
``ThreadExecutor``...; or ``open_executor(workload=...)`` picks one from
``WORKLOADS``); its ``submit`` returns a ``Future`` that is also awaitable.
The guide is in ``docs/``.
"""

import logging as _logging
import typing as _typing

from ._backends import BACKENDS as BACKENDS
from ._backends import WORKLOADS as WORKLOADS
from ._backends import BackendName as BackendName
from ._backends import WorkloadName as WorkloadName
from ._backends import open_executor as open_executor
from ._backends.coroutine import BlockingWarning as BlockingWarning
from ._backends.coroutine import checkpoint as checkpoint
from ._backends.coroutine import sleep as sleep
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
from ._core._events import EventKind as EventKind
from ._core._events import TaskEvent as TaskEvent
from ._core._executor import Executor as Executor
from ._core._executor import Statistics as Statistics
from ._core._executor import TaskOptions as TaskOptions
from ._core._future import Future as Future
from ._core._future import as_completed as as_completed
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

if _typing.TYPE_CHECKING:
    from ._backends.asyncio._executor import AsyncioExecutor as AsyncioExecutor
    from ._backends.coroutine._executor import CoroutineExecutor as CoroutineExecutor
    from ._backends.dask._executor import DaskExecutor as DaskExecutor
    from ._backends.process._executor import ProcessExecutor as ProcessExecutor
    from ._backends.serial._executor import SerialExecutor as SerialExecutor
    from ._backends.thread._executor import ThreadExecutor as ThreadExecutor
else:
    from ._backends import CLASS_NAMES as _CLASS_NAMES
    from ._backends import backend_class as _backend_class

    # The backend classes are imported when first named, as open_executor imports them,
    # so ``import taskkit`` does not import multiprocessing's machinery or Dask.
    def __getattr__(name: str) -> type:
        if name not in _CLASS_NAMES:
            raise AttributeError(f"module 'taskkit' has no attribute {name!r}")
        cls = globals()[name] = _backend_class(_CLASS_NAMES[name])
        return cls

    def __dir__() -> list[str]:
        return sorted({*globals(), *_CLASS_NAMES})


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

# Tracebacks and docs say ``taskkit.Future``, not ``taskkit._core._future.Future``.
for _name in __all__:
    if _name not in globals():  # a backend class: see __getattr__ (backend_class names it)
        continue
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = "taskkit"
        except (AttributeError, TypeError):
            pass
del _name, _obj

# A library logs; the application decides where records go (see docs/observing.md).
_logging.getLogger("taskkit").addHandler(_logging.NullHandler())
