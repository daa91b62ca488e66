"""Shared fixtures: the backends the contract suite runs on, and Hypothesis settings."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import taskkit
from taskkit._backends import backend_class

settings.register_profile(
    "taskkit",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("TASKKIT_HYPOTHESIS_PROFILE", "taskkit"))


def available_backends() -> list[str]:
    """Every registered backend that imports here (a backend joins the suite by existing)."""
    names = []
    for name in taskkit.BACKENDS:
        try:
            backend_class(name)
        except taskkit.BackendUnavailable:
            continue
        names.append(name)
    return names


BACKENDS = available_backends()


@pytest.fixture(scope="session")
def dask_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real two-worker LocalCluster on 127.0.0.1 for every dask test of the session."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        local_directory=str(tmp_path_factory.mktemp("dask")),
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_closed_after(request: pytest.FixtureRequest) -> Iterator[Callable[..., taskkit.Executor]]:
    """``open(backend, **options)``: every executor it opens is shut down after the test."""
    opened: list[taskkit.Executor] = []

    def open_(backend: str, **options: Any) -> taskkit.Executor:
        if backend == "dask" and "client" not in options and "address" not in options:
            options["client"] = request.getfixturevalue("dask_client")
        ex = taskkit.open_executor(backend, **options)  # type: ignore[arg-type]
        opened.append(ex)
        return ex

    yield open_
    for ex in opened:
        ex.shutdown(wait=True, cancel_pending=True, kill=True)


@pytest.fixture
def make_executor(
    backend: str, open_closed_after: Callable[..., taskkit.Executor]
) -> Callable[..., taskkit.Executor]:
    """Open executors of the parametrized backend; every one is shut down after the test."""
    return functools.partial(open_closed_after, backend)


@pytest.fixture
def executor(make_executor: Callable[..., taskkit.Executor]) -> taskkit.Executor:
    return make_executor()


def _run_python(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a child interpreter; a hang fails the test after ``timeout`` seconds."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_python(script, timeout=60)``: run a script in a child interpreter (hang tests)."""
    return _run_python
