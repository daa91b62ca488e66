"""The public face: exports, the workload table, argument checking, the error tree."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskkit
from taskkit._backends import CLASS_NAMES, backend_class
from taskkit._core._errors import describe_exit


def test_all_matches_the_exports() -> None:
    public = {name for name in dir(taskkit) if not name.startswith("_")}
    submodules = {"testing"}  # imported as taskkit.testing, not re-exported
    assert set(taskkit.__all__) == public - submodules
    assert len(taskkit.__all__) == len(set(taskkit.__all__))


def exports() -> Iterator[tuple[str, object]]:
    """Each public name and its object (a backend whose extra is not installed is left out)."""
    for name in taskkit.__all__:
        try:
            yield name, getattr(taskkit, name)
        except taskkit.BackendUnavailable:
            assert name in CLASS_NAMES


def test_exported_classes_say_taskkit() -> None:
    for name, obj in exports():
        if isinstance(obj, type):
            assert obj.__module__ == "taskkit", name


def test_backend_classes_are_public_and_imported_when_named() -> None:
    # ``import taskkit`` imports no backend's executor (so neither Dask nor
    # multiprocessing's machinery); naming a class imports its backend, as open_executor
    # does.
    code = (
        "import sys, taskkit\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.startswith('taskkit._backends.')\n"
        "                  and m.endswith('._executor') or m == 'distributed')\n"
        "print(loaded())\n"
        "print(taskkit.SerialExecutor.__module__, loaded())\n"
    )
    src = str(Path(taskkit.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert ["[]", "taskkit ['taskkit._backends.serial._executor']"] == done.stdout.splitlines()


def run_python(code: str) -> list[str]:
    src = str(Path(taskkit.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_import_taskkit_leaves_the_parts_a_name_needs_until_it_is_named() -> None:
    # Every worker process of the process backend imports taskkit: the coroutine
    # scheduler, the shared-state primitives and the pipelines wait until named.
    code = (
        "import sys, taskkit\n"
        "parts = ('taskkit._backends.coroutine', 'taskkit._primitives', 'taskkit._pipeline')\n"
        "def loaded():\n"
        "    return sorted(p for p in parts if p in sys.modules)\n"
        "print(loaded())\n"
        "print(taskkit.sleep.__module__, taskkit.Queue.__module__, taskkit.cmd.__module__)\n"
        "print(loaded() == sorted(parts), set(taskkit.__all__) <= set(dir(taskkit)))\n"
    )
    assert run_python(code) == ["[]", "taskkit taskkit taskkit", "True True"]


def test_import_taskkit_imports_neither_asyncio_nor_the_executor_core() -> None:
    # A worker process of the process backend imports taskkit before its first task.
    code = (
        "import sys, taskkit\n"
        "print(sorted(m for m in sys.modules if m.startswith('taskkit')))\n"
        "print('asyncio' in sys.modules, 'concurrent.futures.thread' in sys.modules)\n"
    )
    assert run_python(code) == [
        "['taskkit', 'taskkit._backends', 'taskkit._core', 'taskkit._core._errors']",
        "False False",
    ]


@pytest.mark.parametrize(
    "first",
    [
        "taskkit._core._future",
        "taskkit._core._events",
        "taskkit._core._ledger",
        "taskkit._core._executor",
        "taskkit._backends.thread._executor",
        "taskkit._backends.process._executor",
    ],
)
def test_core_names_say_taskkit_whichever_module_imports_them_first(first: str) -> None:
    code = (
        "import importlib, pickle\n"
        f"importlib.import_module({first!r})\n"
        "import taskkit\n"
        "names = ('Executor', 'Statistics', 'TaskOptions', 'Future', 'as_completed',\n"
        "         'TaskEvent', 'EventKind')\n"
        "print(sorted({getattr(taskkit, n).__module__ for n in names}))\n"
        "print(taskkit.Future.__qualname__, repr(taskkit.Future), repr(taskkit.TaskOptions()))\n"
        "print(repr(taskkit.as_completed).split(' at ')[0])\n"
        "print(pickle.loads(pickle.dumps(taskkit.Future)) is taskkit.Future)\n"
        "import typing\n"  # the dataclasses' annotations resolve, though their module says taskkit
        "print([len(typing.get_type_hints(getattr(taskkit, n)))\n"
        "       for n in ('Statistics', 'TaskOptions', 'TaskEvent')])\n"
    )
    assert run_python(code) == [
        "['taskkit']",
        "Future <class 'taskkit.Future'> TaskOptions(timeout=None, retries=0, name=None)",
        "<function as_completed",
        "True",
        "[12, 3, 9]",
    ]


def test_coroutine_names_say_taskkit_when_the_backend_imports_them_first() -> None:
    code = (
        "import taskkit\n"
        "with taskkit.open_executor('coroutine') as ex:\n"
        "    pass\n"
        "from taskkit._backends.coroutine import _scheduler\n"
        "print(repr(_scheduler.BlockingWarning), _scheduler.sleep.__module__)\n"
        "print(taskkit.BlockingWarning is _scheduler.BlockingWarning)\n"
    )
    assert run_python(code) == ["<class 'taskkit.BlockingWarning'> taskkit", "True"]


@pytest.mark.parametrize("backend", ["thread", "serial", "coroutine", "asyncio", "process"])
def test_open_executor_returns_the_public_class(backend: str) -> None:
    cls = getattr(taskkit, f"{backend.capitalize()}Executor")
    assert cls is backend_class(backend)
    assert cls.__module__ == "taskkit"
    assert f"{backend.capitalize()}Executor" in taskkit.__all__
    assert pickle.loads(pickle.dumps(cls)) is cls
    with taskkit.open_executor(backend, max_workers=1) as ex:  # type: ignore[call-overload]
        assert type(ex) is cls


def test_a_missing_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchExecutor"):
        taskkit.NoSuchExecutor  # type: ignore[attr-defined]


def test_workloads_map_to_backends() -> None:
    assert set(taskkit.WORKLOADS.values()) <= set(taskkit.BACKENDS)
    assert taskkit.WORKLOADS["cpu"] == "process"
    assert taskkit.WORKLOADS["io"] == "thread"
    assert taskkit.WORKLOADS["async"] == "asyncio"
    assert taskkit.WORKLOADS["lightweight"] == "coroutine"
    assert taskkit.WORKLOADS["cluster"] == "dask"
    assert {"process", "thread", "asyncio", "coroutine", "dask", "serial"} == set(taskkit.BACKENDS)


def test_open_executor_by_workload() -> None:
    with taskkit.open_executor(workload="io") as ex:
        assert ex.backend == "thread"
    with taskkit.open_executor(workload="debug") as ex:
        assert ex.backend == "serial"


def test_unknown_backend_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"process.*thread"):
        taskkit.open_executor("threads")  # type: ignore[call-overload]


def test_unknown_workload_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"cpu.*io"):
        taskkit.open_executor(workload="gpu")  # type: ignore[call-overload]


def test_backend_and_workload_must_agree() -> None:
    with pytest.raises(ValueError, match="workload 'cpu'"):
        taskkit.open_executor("thread", workload="cpu")


def test_max_workers_must_be_positive_int() -> None:
    with pytest.raises(ValueError):
        taskkit.open_executor("thread", max_workers=0)
    with pytest.raises(TypeError):
        taskkit.open_executor("thread", max_workers=1.5)  # type: ignore[call-overload]


def test_missing_backend_is_a_taskkit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "taskkit._backends.serial._executor":
            raise ModuleNotFoundError(
                "No module named 'taskkit._backends.serial._executor'", name=name
            )
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(taskkit.BackendUnavailable, match="serial"):
        taskkit.open_executor("serial")


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "taskkit._backends.dask._executor":
            raise ModuleNotFoundError("No module named 'distributed'", name="distributed")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(taskkit.BackendUnavailable, match=r'pip install "taskkit\[dask\]"'):
        taskkit.open_executor("dask")


def test_errors_subclass_the_stdlib_errors_they_resemble() -> None:
    assert issubclass(taskkit.TaskTimeout, TimeoutError)
    assert issubclass(taskkit.ExecutorClosed, RuntimeError)
    assert issubclass(taskkit.SerializationError, TypeError)
    assert issubclass(taskkit.PipelineFailed, subprocess.CalledProcessError)
    assert issubclass(taskkit.PipelineTimeout, subprocess.TimeoutExpired)
    for name, obj in exports():
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, taskkit.TaskkitError), name


@pytest.mark.parametrize(
    "error",
    [
        taskkit.TaskTimeout("resize#3", 2.5, "killed"),
        taskkit.WorkerCrashed("resize#3", 1234, -9),
        taskkit.SerializationError("argument 1", "generator", "cannot pickle"),
        taskkit.RemoteError("MyError", "text", "Traceback ..."),
        taskkit.ExecutorClosed(),
        taskkit.QueueClosed(),
        taskkit.Deadlock("stuck", {"t1": "lock A"}),
    ],
)
def test_errors_pickle_with_their_fields(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_worker_crashed_names_pid_signal_and_cause() -> None:
    error = taskkit.WorkerCrashed("job#1", 4321, -9)
    assert error.signal == 9
    assert "4321" in str(error)
    assert "SIGKILL" in str(error)
    assert "out-of-memory" in str(error)
    assert "exited with status 3" in describe_exit(3)
    assert "SIGSEGV" in describe_exit(-11)


def test_what_taskkit_raises_on_misuse_or_breakage_is_a_taskkit_error() -> None:
    # Each used to be a bare RuntimeError; each is still one (code may catch that).
    from taskkit._backends.coroutine._executor import CoroutineExecutor

    def broken_pick(ready: object) -> object:
        raise ZeroDivisionError("bad pick")

    def no_init() -> None:
        raise OSError("no config")

    async def one() -> int:
        return 1

    lines = taskkit.cmd("true").lines()
    with pytest.raises(taskkit.UsageError, match="with"):
        next(lines)
    with (
        taskkit.open_executor("coroutine") as co,
        pytest.raises(taskkit.UsageError, match="submit"),
    ):
        co.spawn(one)  # type: ignore[attr-defined]
    broken = CoroutineExecutor(order=broken_pick)  # type: ignore[arg-type]
    with pytest.raises(taskkit.SchedulerStopped, match="scheduler stopped"):
        broken.submit(one).result(timeout=10)
    broken.shutdown(wait=False)
    for backend in ("serial", "process"):
        with (
            taskkit.open_executor(backend) as ex,  # type: ignore[call-overload]
            pytest.raises(taskkit.UsageError, match="release"),
        ):
            ex.lock().release()
    with taskkit.open_executor("process", max_workers=1, initializer=no_init) as ex:
        with pytest.raises(taskkit.InitializerFailed, match="initializer failed") as info:
            ex.submit(abs, 1).result(timeout=30)
        assert isinstance(info.value.__cause__, OSError)
    for error in (taskkit.UsageError, taskkit.SchedulerStopped, taskkit.InitializerFailed):
        assert issubclass(error, taskkit.TaskkitError)
        assert issubclass(error, RuntimeError)
