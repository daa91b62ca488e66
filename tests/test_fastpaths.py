"""The fast-path switch: ``TASKKIT_FAST_PATHS`` read once, at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from taskkit._core import _fastpaths


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, set(_fastpaths.NAMES)),
        ("1", set(_fastpaths.NAMES)),
        ("", set(_fastpaths.NAMES)),
        ("0", set()),
        ("asyncio_inline_submit", {"asyncio_inline_submit"}),
        (" process_caller_reads , asyncio_inline_submit ", set(_fastpaths.NAMES)),
    ],
)
def test_the_setting_names_the_fast_paths_on(setting: str | None, expected: set[str]) -> None:
    assert expected == set(_fastpaths._enabled(setting))


def test_an_unknown_name_is_an_error_that_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="process_caller_reads"):
        _fastpaths._enabled("process_caller_read")


def test_the_flags_follow_the_environment_of_the_importing_interpreter() -> None:
    code = (
        "from taskkit._core import _fastpaths as f\n"
        "print(f.PROCESS_CALLER_READS, f.ASYNCIO_INLINE_SUBMIT)"
    )
    env = {**os.environ, "TASKKIT_FAST_PATHS": "asyncio_inline_submit"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "False True" == out.strip()
