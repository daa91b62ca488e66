"""``python -m taskkit map``, run end to end in a child interpreter with a hard timeout.

The tasks live in a small module written to a temporary directory.  Where a test
needs calls to finish in a given order, the calls and the test talk through FIFOs:
a call writes a line to READY when it is about to return, and a call on the input
``held`` waits until the test writes to RELEASE.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Seconds a child may take before the test fails (a hang fails, it does not stall the suite).
LIMIT = 30

TASKS = textwrap.dedent(
    """
    import os
    import time

    def double(text):
        if text == "bad":
            raise ValueError("no number: " + text)
        return int(text) * 2

    def nothing(text):
        return None

    async def shout(text):
        return text.upper()

    def held(text):
        if text == "held":
            with open(os.environ["RELEASE"]) as release:
                release.read(1)
            return "released"
        with open(os.environ["READY"], "w") as ready:
            ready.write(text + "\\n")
        return int(text) * 2

    class Odd(Exception):
        def __init__(self, *, code):  # unpickling calls Odd(*args): this one cannot be rebuilt
            super().__init__(f"code {code}")

    def stuck(text):
        if text == "odd":
            raise Odd(code=3)
        if text == "hang":
            time.sleep(600)  # killed by its timeout
        if text == "exit":
            os._exit(3)  # the worker dies
        return int(text) * 2

    def block(text):
        with open(os.environ["READY"], "w") as ready:
            ready.write(f"{os.getpid()}\\n")
        time.sleep(600)  # until Ctrl-C
    """
)


@pytest.fixture
def tasks(tmp_path: Path) -> str:
    """The path of the tasks module."""
    path = tmp_path / "tasks.py"
    path.write_text(TASKS)
    return str(path)


@pytest.fixture
def fifos(tmp_path: Path) -> Iterator[tuple[int, int, dict[str, str]]]:
    """READY and RELEASE, opened read-write by the test so that neither end ever blocks."""
    env = {}
    fds = []
    for name in ("READY", "RELEASE"):
        path = tmp_path / name.lower()
        os.mkfifo(path)
        env[name] = str(path)
        fds.append(os.open(path, os.O_RDWR))
    yield fds[0], fds[1], env
    for fd in fds:
        os.close(fd)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, **(extra or {})}


def taskkit(
    *args: str, input: str | None = None, cwd: str | Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m taskkit ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "taskkit", *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment(),
        cwd=cwd,
        timeout=LIMIT,
    )


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m taskkit ARGS`` with its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "taskkit", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(env),
    )


def read_lines(fd: int, count: int) -> list[str]:
    """Read ``count`` lines from ``fd``, failing after ``LIMIT`` seconds."""
    deadline = time.monotonic() + LIMIT
    data = b""
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"no line within {LIMIT} s; read so far: {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"the pipe closed; read: {data!r}")
        data += chunk
    return data.decode().splitlines()


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


# ---------------------------------------------------------------------- inputs


def test_arguments_are_the_inputs(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:double", "1", "2", "3", "--backend", "thread")
    assert (done.returncode, done.stderr) == (0, "")
    assert ["2", "4", "6"] == sorted(done.stdout.splitlines())


def test_options_may_follow_the_inputs_and_dashes_end_them(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:double", "3", "-j", "1", "-k", "--backend", "thread")
    assert (done.returncode, done.stdout) == (0, "6\n")
    done = taskkit("map", f"{tasks}:double", "--backend", "thread", "-k", "--", "-1", "2")
    assert (done.returncode, done.stdout) == (0, "-2\n4\n")


def test_a_module_importable_from_the_current_directory(tasks: str) -> None:
    done = taskkit("map", "tasks:double", "5", "--backend", "thread", cwd=Path(tasks).parent)
    assert (done.returncode, done.stdout) == (0, "10\n")


def test_inputs_from_a_file_one_per_line(tasks: str, tmp_path: Path) -> None:
    (tmp_path / "inputs.txt").write_text("1\n2\n3\n")
    done = taskkit(
        "map", f"{tasks}:double", "-a", str(tmp_path / "inputs.txt"), "-k", "--backend", "thread"
    )
    assert (done.returncode, done.stdout) == (0, "2\n4\n6\n")


def test_inputs_from_standard_input(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:double", "-k", "--backend", "thread", input="4\n5\n6")
    assert (done.returncode, done.stdout) == (0, "8\n10\n12\n")
    done = taskkit("map", f"{tasks}:double", "-a", "-", "--backend", "thread", input="7\n")
    assert (done.returncode, done.stdout) == (0, "14\n")


def test_null_separated_inputs(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:shout", "-0", "-k", "--backend", "thread", input="a b\0c\nd\0")
    assert (done.returncode, done.stdout) == (0, "A B\nC\nD\n")


def test_an_async_function_runs_on_asyncio_by_default(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:shout", "x", "y", "-k")
    assert (done.returncode, done.stdout, done.stderr) == (0, "X\nY\n", "")


def test_a_result_of_none_prints_nothing(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:nothing", "1", "2", "--backend", "thread")
    assert (done.returncode, done.stdout) == (0, "")
    done = taskkit("map", f"{tasks}:nothing", "1", "--json", "--backend", "thread")
    assert [{"input": "1", "result": None}] == list(map(json.loads, done.stdout.splitlines()))


# -------------------------------------------------------------------- failures


def test_a_failing_call_does_not_stop_the_others(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:double", "1", "bad", "3", "--backend", "thread")
    assert 1 == done.returncode
    assert ["2", "6"] == sorted(done.stdout.splitlines())
    assert "1 of 3 calls failed" in done.stderr
    assert "'bad': ValueError: no number: bad" in done.stderr
    assert "Traceback" not in done.stderr


def test_json_lines(tasks: str) -> None:
    done = taskkit("map", f"{tasks}:double", "1", "bad", "--json", "-k", "--backend", "thread")
    assert 1 == done.returncode
    assert [
        {"input": "1", "result": 2},
        {"input": "bad", "error": "ValueError: no number: bad"},
    ] == [json.loads(line) for line in done.stdout.splitlines()]


def test_errors_outside_the_function_go_with_their_inputs(tasks: str) -> None:
    # The worker of "exit" dies at once; "hang" is killed by its timeout later.  Neither
    # error passes through the function, yet each is reported with its own input; and
    # an exception that cannot be unpickled in the parent is still described.
    args = ("hang", "exit", "odd", "3", "--timeout", "0.5", "--json")
    done = taskkit("map", f"{tasks}:stuck", *args)
    assert 1 == done.returncode
    lines = {line["input"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert {"input": "3", "result": 6} == lines["3"]
    assert {"input": "odd", "error": "Odd: code 3"} == lines["odd"]
    assert lines["hang"]["error"].startswith("TaskTimeout: ")
    assert lines["exit"]["error"].startswith("WorkerCrashed: ")
    assert "3 of 4 calls failed" in done.stderr
    assert "  'odd': Odd: code 3\n" in done.stderr


# ----------------------------------------------------------------------- order


def test_results_come_as_they_finish(tasks: str, fifos: tuple[int, int, dict[str, str]]) -> None:
    _, release, env = fifos
    process = start("map", f"{tasks}:held", "held", "7", "-j", "2", "--backend", "thread", env=env)
    assert process.stdout is not None
    # "7" is printed while "held" still runs: as-finished order.
    assert ["14"] == read_lines(process.stdout.fileno(), 1)
    os.write(release, b"x")
    out, err = finish(process)
    assert (process.returncode, out, err) == (0, "released\n", "")


def test_keep_order_prints_in_input_order(
    tasks: str, fifos: tuple[int, int, dict[str, str]]
) -> None:
    ready, release, env = fifos
    args = ("map", f"{tasks}:held", "held", "7", "-j", "2", "--backend", "thread", "--keep-order")
    process = start(*args, env=env)
    assert ["7"] == read_lines(ready, 1)  # "7" returns while "held" still runs
    os.write(release, b"x")
    out, err = finish(process)
    assert (process.returncode, out, err) == (0, "released\n14\n", "")


def test_a_closed_output_stops_the_run(tasks: str, fifos: tuple[int, int, dict[str, str]]) -> None:
    _, release, env = fifos
    process = start("map", f"{tasks}:held", "7", "held", "-j", "2", "--backend", "thread", env=env)
    assert process.stdout is not None
    assert process.stderr is not None
    assert ["14"] == read_lines(process.stdout.fileno(), 1)
    process.stdout.close()  # as `| head -1` does
    os.write(release, b"x")  # "held" ends, and its result meets the closed pipe
    assert 141 == process.wait(timeout=LIMIT)
    assert "" == process.stderr.read()
    process.stderr.close()


# ---------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_every_worker_at_once(
    tasks: str, fifos: tuple[int, int, dict[str, str]]
) -> None:
    ready, _, env = fifos
    process = start("map", f"{tasks}:block", "1", "2", "-j", "2", env=env)  # processes
    pids = [int(line) for line in read_lines(ready, 2)]
    process.send_signal(signal.SIGINT)
    out, err = finish(process)
    assert (130, "") == (process.returncode, out)
    assert "interrupted" in err
    assert "Traceback" not in err
    for pid in pids:  # killed and reaped, not left running or as zombies
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the command"


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_here:f", "cannot import no_such_module_here: ModuleNotFoundError"),
        ("{tasks}:missing", "has no function 'missing'"),
        ("{tasks}:os", "is a module, not a function"),
        ("no_colon", "expected MODULE:FUNCTION"),
    ],
)
def test_a_bad_function_is_one_line_and_status_2(tasks: str, target: str, message: str) -> None:
    done = taskkit("map", target.format(tasks=tasks), "1")
    assert (2, "") == (done.returncode, done.stdout)
    assert 1 == len(done.stderr.splitlines()), done.stderr
    assert done.stderr.startswith("python -m taskkit map: error: ")
    assert message in done.stderr


def test_an_error_at_import_is_one_line_and_status_2(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    done = taskkit("map", f"{tmp_path / 'broken.py'}:f", "1")
    assert (2, "") == (done.returncode, done.stdout)
    assert done.stderr == (
        f"python -m taskkit map: error: cannot import {tmp_path / 'broken.py'}: "
        "RuntimeError: broken at import\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-j", "0", "1"],
        ["--timeout", "-1", "1"],
        ["-a", "/no/such/file"],
        ["-a", "/dev/null", "1"],  # both kinds of input
        ["-a", "-", "-a", "-"],
    ],
)
def test_usage_errors_exit_2(tasks: str, args: list[str]) -> None:
    done = taskkit("map", f"{tasks}:double", *args)
    assert (2, "") == (done.returncode, done.stdout)
    assert "Traceback" not in done.stderr


def test_no_inputs_from_a_terminal_is_a_usage_error(tasks: str) -> None:
    terminal, other_end = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "taskkit", "map", f"{tasks}:double"],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=environment(),
            timeout=LIMIT,
        )
    finally:
        os.close(terminal)
        os.close(other_end)
    assert (2, "") == (done.returncode, done.stdout)
    assert "no inputs: give them as arguments" in done.stderr


def test_progress_without_tqdm_is_a_usage_error(tasks: str, tmp_path: Path) -> None:
    fake = tmp_path / "no_tqdm" / "tqdm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('tqdm is not installed')\n")
    done = subprocess.run(
        [sys.executable, "-m", "taskkit", "map", f"{tasks}:double", "1", "--progress"],
        capture_output=True,
        text=True,
        env=environment({"PYTHONPATH": os.pathsep.join([str(fake.parent), SRC])}),
        timeout=LIMIT,
    )
    assert (2, "") == (done.returncode, done.stdout)
    assert 'needs tqdm: pip install "taskkit[progress]"' in done.stderr


def test_progress_shows_on_standard_error(tasks: str) -> None:
    pytest.importorskip("tqdm")
    done = taskkit("map", f"{tasks}:double", "1", "2", "--progress", "--backend", "thread")
    assert (0, ["2", "4"]) == (done.returncode, sorted(done.stdout.split()))
    assert "2/2" in done.stderr


# -------------------------------------------------------------- the other commands


def test_help_shows_examples() -> None:
    done = taskkit("map", "--help")
    assert 0 == done.returncode
    assert "examples:" in done.stdout
    assert "seq 100 | python -m taskkit map" in done.stdout
    assert "exit status:" in done.stdout


@pytest.mark.parametrize("command", ["tour", "backends"])
def test_the_other_commands_still_parse(command: str) -> None:
    done = taskkit(command, "--help")
    assert (0, "") == (done.returncode, done.stderr)
    assert f"usage: python -m taskkit {command}" in done.stdout
