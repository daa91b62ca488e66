"""The backend registry: names, the workload table, and ``open_executor``.

Each backend is one subpackage of this package (``serial``, ``thread``, ``process``,
``asyncio``, ``coroutine``, ``dask``) holding its executor (its public ``Executor``
subclass and the ``Backend`` object that class builds, see ``_core/_backend.py``), and
its wire, worker and primitives where it has its own.  Its ``_executor`` module ends
with ``backend_class = <its Executor subclass>`` and is imported only when its backend
is asked for, so a missing optional dependency (Dask) costs nothing until it is used.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from .._core._errors import BackendUnavailable

if TYPE_CHECKING:
    from .._core._executor import Executor
    from .asyncio._executor import AsyncioExecutor
    from .coroutine._executor import CoroutineExecutor
    from .dask._executor import DaskExecutor
    from .process._executor import ProcessExecutor
    from .serial._executor import SerialExecutor
    from .thread._executor import ThreadExecutor

__all__ = [
    "BACKENDS",
    "CLASS_NAMES",
    "WORKLOADS",
    "BackendName",
    "WorkloadName",
    "backend_class",
    "open_executor",
]

BackendName = Literal["process", "thread", "asyncio", "coroutine", "dask", "serial"]
WorkloadName = Literal["cpu", "io", "async", "lightweight", "cluster", "debug"]

#: Backend name -> what it is for.
BACKENDS: Mapping[str, str] = MappingProxyType(
    {
        "process": "pure-Python computation: separate processes use several cores",
        "thread": "blocking I/O: threads overlap waiting at low cost",
        "asyncio": "async def code using asyncio libraries: one event loop serves many waits",
        "coroutine": "very many small cooperative tasks in a deterministic order",
        "dask": "more work than one machine: an existing Dask cluster",
        "serial": "debugging: each call runs inline, in order, in the caller",
    }
)

#: Workload name -> the backend that suits it.
WORKLOADS: Mapping[str, str] = MappingProxyType(
    {
        "cpu": "process",
        "io": "thread",
        "async": "asyncio",
        "lightweight": "coroutine",
        "cluster": "dask",
        "debug": "serial",
    }
)

#: The public name of each backend's class (``taskkit.ProcessExecutor``...) -> the backend.
CLASS_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "ProcessExecutor": "process",
        "ThreadExecutor": "thread",
        "AsyncioExecutor": "asyncio",
        "CoroutineExecutor": "coroutine",
        "DaskExecutor": "dask",
        "SerialExecutor": "serial",
    }
)

_EXTRAS = {"dask": 'pip install "taskkit[dask]"'}


def backend_class(name: str) -> type[Executor]:
    """Import and return the Executor subclass of backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(f"{__name__}.{name}._executor")
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith(f"{__name__}.{name}"):
            raise BackendUnavailable(
                f"the {name!r} backend is not available in this version of taskkit"
            ) from None
        hint = _EXTRAS.get(name, f"install {exc.name}")
        raise BackendUnavailable(
            f"the {name!r} backend needs {exc.name!r}, which is not installed: {hint}"
        ) from exc
    cls = cast("type[Executor]", module.backend_class)
    cls.__module__ = "taskkit"  # it is public as taskkit.<Backend>Executor
    return cls


# One overload per backend, so ``open_executor("coroutine")`` is a ``CoroutineExecutor``
# (with its ``spawn``) and ``open_executor(workload="cpu")`` a ``ProcessExecutor``.  The
# first that matches wins: the thread backend's comes first, as it is the default when
# neither name is given.  A name held in a ``BackendName`` variable gives ``Executor``.
@overload
def open_executor(
    backend: Literal["thread"] | None = None,
    *,
    workload: Literal["io"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> ThreadExecutor: ...
@overload
def open_executor(
    backend: Literal["process"] | None = None,
    *,
    workload: Literal["cpu"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> ProcessExecutor: ...
@overload
def open_executor(
    backend: Literal["asyncio"] | None = None,
    *,
    workload: Literal["async"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> AsyncioExecutor: ...
@overload
def open_executor(
    backend: Literal["coroutine"] | None = None,
    *,
    workload: Literal["lightweight"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> CoroutineExecutor: ...
@overload
def open_executor(
    backend: Literal["dask"] | None = None,
    *,
    workload: Literal["cluster"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> DaskExecutor: ...
@overload
def open_executor(
    backend: Literal["serial"] | None = None,
    *,
    workload: Literal["debug"] | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> SerialExecutor: ...
@overload
def open_executor(
    backend: BackendName | None = None,
    *,
    workload: WorkloadName | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> Executor: ...
def open_executor(
    backend: BackendName | None = None,
    *,
    workload: WorkloadName | None = None,
    max_workers: int | None = None,
    **options: Any,
) -> Executor:
    """Create an executor for ``backend``, or for the backend that suits ``workload``.

    ``with open_executor("process", max_workers=4) as ex: ex.submit(fn, x).result()``
    returns what ``fn(x)`` returns, computed in a worker process.

    Args:
        backend: one of ``BACKENDS`` (``"process"``, ``"thread"``, ``"asyncio"``,
            ``"coroutine"``, ``"dask"``, ``"serial"``).
        workload: one of ``WORKLOADS`` (``"cpu"``, ``"io"``, ``"async"``,
            ``"lightweight"``, ``"cluster"``, ``"debug"``); used when ``backend``
            is not given.  With neither, the thread backend is used.
        max_workers: the most tasks run at once; each backend has a sensible default.
        **options: backend-specific options (e.g. ``start_method`` for ``"process"``).

    Returns:
        The backend's executor, e.g. a ``taskkit.ProcessExecutor`` for ``"process"``
        or ``workload="cpu"``; type checkers see that class from the literal name.

    Raises:
        ValueError: an unknown backend or workload, both given and disagreeing,
            or ``max_workers < 1``.
        TypeError: an option the backend does not take.
        BackendUnavailable: the backend's optional dependency is not installed.
    """
    if workload is not None and workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend is not None and workload is not None and WORKLOADS[workload] != backend:
        raise ValueError(
            f"workload {workload!r} calls for the {WORKLOADS[workload]!r} backend, "
            f"not {backend!r}; give one or the other"
        )
    name = backend or (WORKLOADS[workload] if workload is not None else "thread")
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int)
    ):
        raise TypeError(f"max_workers must be an int, got {type(max_workers).__name__}")
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
    cls = backend_class(name)
    accepted = {
        parameter.name
        for parameter in inspect.signature(cls.__init__).parameters.values()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted - {"max_workers"})) or "none"
        raise TypeError(
            f"the {name!r} backend takes no option {', '.join(map(repr, unknown))}; "
            f"its options are: {valid}"
        )
    factory: Any = cls  # each backend's __init__ has its own default for max_workers
    return factory(max_workers=max_workers, **options)  # type: ignore[no-any-return]
