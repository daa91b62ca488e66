"""``map`` and ``amap`` pass ``mypy --strict`` as ``tests/typecheck/map_types.py`` uses them."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import taskkit

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_map_and_amap_are_typed_by_what_the_function_returns() -> None:
    pytest.importorskip("mypy")
    source = pathlib.Path(taskkit.__file__).parent.parent  # this taskkit, not another install
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),  # the project's cache: warm, a second instead of ~20 s
            str(ROOT / "tests" / "typecheck" / "map_types.py"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        env={**os.environ, "MYPYPATH": str(source)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
