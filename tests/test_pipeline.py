"""Subprocess pipelines: cmd, shell, Pipeline.run/lines/arun/alines.

Every test runs real programs (sh, yes, head, wc, cat, python -c).  An autouse fixture
checks that no test leaves a child process behind, unreaped or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskkit
from taskkit import Completed, Pipeline, PipelineFailed, PipelineTimeout, StageResult, cmd, shell
from taskkit._pipeline._common import HIGH_WATER, LineSplitter

PY = sys.executable

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")


def _children() -> set[int]:
    """Processes whose parent is this one (running or zombie, i.e. not yet reaped)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a killed orphan may linger as one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ends(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` has terminated, waiting for it on a pidfd (no polling).

    A killed process first closes its files (so the pipeline sees EOF), then becomes a
    zombie; in between it still looks alive in /proc, so sampling /proc would race.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)


def _open_fds() -> dict[int, str]:
    """This process's open descriptors of the kinds a pipeline opens, with their targets.

    Only pipes, ``/dev/null`` and anonymous inodes (pidfds, selectors) count: other threads
    of the test session open descriptors of their own at any moment (the dask client's
    connections, its system monitor reading ``/proc/<pid>/stat``).
    """
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # the descriptor listdir itself used, closed by now
        if target.startswith(("pipe:", "anon_inode:", "/dev/null")):
            found[int(name)] = target
    return found


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.fixture(autouse=True)
def _no_children_left() -> Iterator[None]:
    before = _children()
    yield
    left = _children() - before
    assert not left, f"child processes left behind: {left}"


# -- building pipelines -----------------------------------------------------------------


def test_cmd_is_a_one_stage_pipeline_and_bar_composes() -> None:
    one = cmd("ls", "-l")
    assert isinstance(one, Pipeline)
    assert len(one) == 1
    both = one | cmd("wc", "-l")
    assert both.argv == (("ls", "-l"), ("wc", "-l"))
    assert str(both) == "ls -l | wc -l"
    assert both == Pipeline(cmd("ls", "-l"), cmd("wc", "-l"))
    assert hash(both) == hash(Pipeline(one, cmd("wc", "-l")))
    assert len(one) == 1  # composing built a new pipeline


def test_shell_pipes_like_cmd() -> None:
    done = (shell("printf 'b\\na\\nb\\n'") | cmd("sort") | shell("uniq -c | wc -l")).run()
    assert done.stdout == b"2\n"
    assert done.stages[2].argv == ("/bin/sh", "-c", "uniq -c | wc -l")


def test_arguments_are_validated_at_once() -> None:
    with pytest.raises(TypeError, match="argument 2 is int"):
        cmd("head", "-n", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one str"):
        shell(["echo", "hi"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="program"):
        cmd("")
    with pytest.raises(TypeError):
        cmd("true") | "wc"  # type: ignore[operator]
    with pytest.raises(ValueError, match="timeout"):
        cmd("true").run(timeout=-1)
    with pytest.raises(LookupError):
        cmd("true").run(encoding="no-such-codec")


def test_tour_pipeline_ls_wc(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    done = (cmd("ls", "-l", cwd=tmp_path) | cmd("wc", "-l")).run(timeout=10)
    assert done.stdout.lstrip() == b"4\n"  # "total" line plus three files
    assert done.returncodes == [0, 0]
    assert done.failed is None


def test_tour_section_prints_what_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    from taskkit._tour.pipelines import tour_section

    tour_section()
    out = capsys.readouterr().out
    assert "ls -l | wc -l" in out
    assert "[0, 0]" in out


# -- 1. real OS pipes; the parent keeps no end; everything reaped -------------------------


def test_stages_share_one_os_pipe_the_parent_does_not_hold() -> None:
    pipeline = cmd("sleep", "30") | shell("readlink /proc/$$/fd/0; exec cat")
    with pipeline.lines() as lines:
        link = next(lines)
        assert link.startswith("pipe:[")
        # Stage 0 writes into the very pipe stage 1 reads: no Python relay between them.
        assert link == os.readlink(f"/proc/{lines.pids[0]}/fd/1")
        ours = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                ours.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        assert link not in ours
        pids = lines.pids
    assert all(_reaped(pid) for pid in pids)


def test_stages_share_one_process_group() -> None:
    script = "import os; print(os.getpgid(0))"
    done = (cmd(PY, "-c", script) | cmd(PY, "-c", f"import sys; sys.stdin.read(); {script}")).run()
    leader = done.stages[0].pid
    assert str(leader).encode() == done.stdout.strip()
    assert os.getpgid(0) != leader


@pytest.mark.parametrize(
    "make",
    [
        lambda: (cmd("yes") | cmd("head", "-n", "3")).run(),
        lambda: (cmd("true") | cmd("false")).run(check=False),
        lambda: (cmd("cat") | cmd("wc", "-c")).run(input=b"x" * 200_000),
    ],
    ids=["ok", "failed", "input"],
)
def test_no_file_descriptor_leaks(make: object) -> None:
    assert callable(make)
    make()  # warm up lazily opened descriptors (selectors, /dev/null)
    before = _open_fds()
    done = make()
    assert isinstance(done, Completed)
    assert before == _open_fds()
    assert all(_reaped(stage.pid) for stage in done.stages)


def test_no_file_descriptor_leaks_on_timeout_early_exit_and_spawn_failure() -> None:
    before = _open_fds()
    with pytest.raises(PipelineTimeout):
        cmd("sleep", "30").run(timeout=0.05)
    with cmd("yes").lines() as lines:
        next(lines)
    with pytest.raises(FileNotFoundError):
        (cmd("sleep", "30") | cmd("/nonexistent/program")).run()
    assert before == _open_fds()


# -- 2. pipefail reporting --------------------------------------------------------------


def test_failing_producer_is_reported_although_the_last_stage_succeeds() -> None:
    with pytest.raises(PipelineFailed) as info:
        (cmd("false") | cmd("true")).run()
    err = info.value
    assert isinstance(err, subprocess.CalledProcessError)
    assert isinstance(err, taskkit.TaskkitError)
    assert err.stage.index == 0
    assert err.returncode == 1
    assert err.cmd == ["false"]
    assert err.result.returncodes == [1, 0]
    assert "stage 0" in str(err)
    assert "'false'" in str(err)
    assert "status 1" in str(err)


def test_rightmost_failing_stage_wins_as_with_pipefail() -> None:
    with pytest.raises(PipelineFailed) as info:
        (shell("exit 3") | shell("exit 4") | cmd("true")).run()
    assert info.value.stage.index == 1
    assert info.value.returncode == 4
    assert info.value.result.returncodes == [3, 4, 0]


def test_failure_message_names_signal_and_stderr_tail() -> None:
    script = "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; kill -TERM $$"
    with pytest.raises(PipelineFailed) as info:
        (cmd("true") | shell(script)).run()
    err = info.value
    assert err.returncode == -signal.SIGTERM
    assert err.stage.signal == signal.SIGTERM
    message = str(err)
    assert "stage 1" in message
    assert "SIGTERM" in message
    assert "line7" in message
    assert "line1" not in message  # only the tail
    assert b"line1\n" in err.stderr


def test_check_false_returns_the_failure() -> None:
    done = (shell("echo out; echo err >&2; exit 2") | cmd("cat")).run(check=False)
    assert done.stdout == b"out\n"
    assert done.returncodes == [2, 0]
    failed = done.failed
    assert failed is not None
    assert isinstance(failed, StageResult)
    assert (failed.index, failed.returncode, failed.ok, failed.stderr) == (0, 2, False, b"err\n")
    assert done.stages[1].ok


def test_ok_codes_accept_other_statuses() -> None:
    done = (cmd("printf", "a\\nb\\n") | cmd("grep", "zzz", ok_codes=(0, 1))).run()
    assert done.returncodes == [0, 1]
    assert done.failed is None


def test_pipeline_failed_and_timeout_pickle() -> None:
    with pytest.raises(PipelineFailed) as info:
        (shell("echo bad >&2; exit 5") | cmd("cat")).run()
    again = pickle.loads(pickle.dumps(info.value))
    assert (5, 0, str(info.value)) == (again.returncode, again.stage.index, str(again))
    with pytest.raises(PipelineTimeout) as timeout:
        cmd("sleep", "30").run(timeout=0.05)
    again_t = pickle.loads(pickle.dumps(timeout.value))
    assert again_t.result is not None
    assert again_t.result.returncodes == [-signal.SIGTERM]


@settings(max_examples=15, deadline=None)
@given(codes=st.lists(st.sampled_from([0, 0, 1, 2, 7]), min_size=1, max_size=4))
def test_returncodes_are_pipestatus_and_failed_is_rightmost(codes: list[int]) -> None:
    pipeline = Pipeline(*(shell(f"exit {code}") for code in codes))
    done = pipeline.run(check=False)
    assert codes == done.returncodes
    failing = [index for index, code in enumerate(codes) if code]
    assert (failing[-1] if failing else None) == (done.failed.index if done.failed else None)


# -- 3. SIGPIPE ---------------------------------------------------------------------------


def test_producer_killed_by_sigpipe_is_ok() -> None:
    done = (cmd("yes") | cmd("head", "-n", "1")).run()
    assert done.stdout == b"y\n"
    assert done.returncodes[0] == -signal.SIGPIPE
    assert done.stages[0].ok
    assert done.failed is None


def test_sigpipe_is_forgiven_only_before_the_last_stage() -> None:
    die = "kill -PIPE $$"
    assert (cmd("true") | shell(die) | cmd("true")).run().failed is None
    assert (shell("exit 141") | cmd("true")).run().failed is None  # a shell reports 128 + 13
    with pytest.raises(PipelineFailed) as info:
        (cmd("true") | shell(die)).run()
    assert info.value.returncode == -signal.SIGPIPE


def test_children_start_with_default_signal_handling() -> None:
    # Python ignores SIGPIPE and SIGXFSZ; children must not inherit that.
    done = cmd("grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status").run(text=True)
    fields = dict(line.split(":\t") for line in done.stdout.splitlines())
    assert fields == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}


def test_blocked_signals_are_unblocked_in_children() -> None:
    blocked = {signal.SIGUSR1}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        done = cmd("grep", "^SigBlk", "/proc/self/status").run(text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert done.stdout == "SigBlk:\t0000000000000000\n"


# -- 4. no deadlock, stderr per stage, input ------------------------------------------------


def test_large_stderr_from_every_stage_and_large_stdout_do_not_deadlock() -> None:
    loud = "head -c 3000000 /dev/zero | tr '\\0' e >&2; echo end-of-stderr >&2"
    done = (shell(f"{loud}; head -c 5000000 /dev/zero") | shell(f"{loud}; cat")).run(timeout=30)
    assert len(done.stdout) == 5_000_000
    for stage in done.stages:
        assert len(stage.stderr) == 1 << 20  # a bounded tail by default
        assert stage.stderr.endswith(b"eeeend-of-stderr\n")
    whole = shell(loud).run(stderr_limit=None)
    assert 3_000_000 + len(b"end-of-stderr\n") == len(whole.stages[0].stderr)


def test_stderr_is_kept_per_stage() -> None:
    stages = [shell(f"cat; echo from-{i} >&2") for i in range(3)]
    done = Pipeline(*stages).run(input=b"data")
    assert done.stdout == b"data"
    assert [s.stderr for s in done.stages] == [b"from-0\n", b"from-1\n", b"from-2\n"]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    "kind", ["bytes", "bytearray", "memoryview", "str", "file", "bytesio", "iterator"]
)
def test_input_kinds(kind: str, tmp_path: Path) -> None:
    data = b"hello\n" * 100_000
    path = tmp_path / "input"
    path.write_bytes(data)
    with path.open("rb") as file:
        source = {
            "bytes": data,
            "bytearray": bytearray(data),
            "memoryview": memoryview(data),
            "str": data.decode(),
            "file": file,
            "bytesio": io.BytesIO(data),
            "iterator": _chunks(data, 4096),
        }[kind]
        done = (cmd("cat") | cmd("cat")).run(input=source)
    assert data == done.stdout


def test_large_input_and_large_output_at_once() -> None:
    data = os.urandom(1 << 16) * 300  # ~20 MB each way: feeding must not wait for reading
    done = (cmd("cat") | cmd("cat")).run(input=data, timeout=60)
    assert data == done.stdout


def test_stage_that_exits_before_reading_all_input_is_fine() -> None:
    done = cmd("head", "-c", "3").run(input=b"x" * 10_000_000)
    assert done.stdout == b"xxx"
    endless = (b"y" * 1000 for _ in iter(int, 1))  # never ends: only EPIPE stops it
    assert cmd("head", "-c", "2").run(input=endless).stdout == b"yy"


def test_input_error_is_raised_after_the_stages_are_reaped() -> None:
    def broken() -> Iterator[bytes]:
        yield b"partial\n"
        raise ValueError("input went wrong")

    with pytest.raises(ValueError, match="input went wrong"):
        (cmd("cat") | cmd("wc", "-l")).run(input=broken())


def test_input_is_fed_while_lines_are_read() -> None:
    """The child answers each line only after the parent has seen the previous answer."""
    seen = threading.Event()

    def feed() -> Iterator[bytes]:
        yield b"ping\n"
        assert seen.wait(10), "the first answer never arrived while input was pending"
        yield b"ping\n"

    child = "import sys\nfor line in sys.stdin: print('pong', flush=True)"
    with cmd(PY, "-c", child).lines(input=feed(), timeout=20) as lines:
        got = []
        for line in lines:
            got.append(line)
            seen.set()
    assert got == ["pong", "pong"]


def test_default_stdin_is_empty() -> None:
    assert cmd("cat").run(timeout=10).stdout == b""


# -- 5. timeouts and cancellation kill the tree -------------------------------------------


def test_timeout_kills_the_group_and_carries_the_partial_result() -> None:
    started = time.monotonic()
    with pytest.raises(PipelineTimeout) as info:
        (shell("echo $!; sleep 30 & echo $!; exec sleep 30") | cmd("cat")).run(timeout=0.3)
    elapsed = time.monotonic() - started
    err = info.value
    assert isinstance(err, subprocess.TimeoutExpired)
    assert err.timeout == 0.3
    assert err.result is not None
    grandchild = int(err.result.stdout.split()[-1])
    assert _ends(grandchild)
    assert err.stdout == err.result.stdout
    assert err.result.returncodes == [-signal.SIGTERM, -signal.SIGTERM]
    assert "did not finish within 0.3 s" in str(err)
    assert elapsed < 2.0


def test_sigkill_follows_sigterm_after_the_grace_period() -> None:
    stubborn = "trap '' TERM; echo ready; exec sleep 30"  # sleep inherits the ignored TERM
    with (cmd("sleep", "30") | shell(stubborn)).lines(kill_grace=0.2) as lines:
        assert next(lines) == "ready"
    assert lines.result is not None
    assert lines.result.returncodes == [-signal.SIGTERM, -signal.SIGKILL]


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_a_stray_outside_the_group_holding_the_pipe_does_not_hold_up_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(PipelineTimeout) as info:
        shell("setsid sleep 30 & echo $!; exec sleep 30").run(timeout=0.2, kill_grace=0.2)
    elapsed = time.monotonic() - started
    assert info.value.result is not None
    stray = int(info.value.result.stdout)
    try:
        assert _alive(stray)  # out of reach of the group kill, and no longer waited for
        assert elapsed < 1.5
    finally:
        os.kill(stray, signal.SIGKILL)


def test_ctrl_c_during_run_kills_the_group(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        from taskkit import shell
        shell("sleep 30 & echo $$ $! > {fifo}; wait").run()
    """)
    proc = subprocess.Popen([PY, "-c", script], stderr=subprocess.PIPE)
    try:
        with fifo.open() as pids:  # opens once the stage writes: it is running
            stage, grandchild = map(int, pids.read().split())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert b"KeyboardInterrupt" in err
    assert _ends(stage)
    assert _ends(grandchild)


def test_ctrl_c_while_the_stages_start_loses_no_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    real_popen = subprocess.Popen

    def popen_then_ctrl_c(*args: object, **kwargs: object) -> object:
        proc = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came before Popen returned
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        (cmd("sleep", "30") | cmd("sleep", "30")).run()
    # Raised inside Popen, the interrupt would have orphaned stage 0; held back until
    # both stages were known, it stopped and reaped them (the autouse fixture checks).


# -- 6. lines in real time ------------------------------------------------------------------


def test_lines_arrive_while_the_pipeline_runs() -> None:
    # The child prints a line, then waits for input the parent sends only after seeing it.
    proceed = threading.Event()

    def answer() -> Iterator[bytes]:
        assert proceed.wait(10)
        yield b"go\n"

    child = "import sys\nprint('first', flush=True)\nsys.stdin.readline()\nprint('second')"
    with (cmd(PY, "-c", child) | cmd("cat")).lines(input=answer(), timeout=20) as lines:
        assert next(lines) == "first"
        proceed.set()
        assert list(lines) == ["second"]
    assert lines.result is not None
    assert lines.result.returncodes == [0, 0]


def test_very_long_lines_arrive_whole() -> None:
    child = "import sys; sys.stdout.write('a' * 100000 + '\\n' + 'b' * 3000000 + '\\nend')"
    with cmd(PY, "-c", child).lines() as lines:
        got = list(lines)
    assert [len(line) for line in got] == [100_000, 3_000_000, 3]
    assert got[-1] == "end"


def test_leaving_lines_early_kills_reaps_and_raises_nothing() -> None:
    pipeline = cmd("yes") | shell("cat; exit 3")  # would fail if it ran to the end
    with pipeline.lines() as lines:
        for _ in lines:
            break
        pids = lines.pids
    assert all(_reaped(pid) for pid in pids)
    assert lines.result is not None
    assert lines.result.returncodes[1] == -signal.SIGTERM


def test_exception_in_the_block_kills_reaps_and_propagates() -> None:
    def body() -> int:
        with cmd("sleep", "30").lines() as lines:
            pids.append(lines.pids[0])
            raise KeyError("boom")

    pids: list[int] = []
    with pytest.raises(KeyError):
        body()
    assert _reaped(pids[0])


def test_lines_checks_the_result_at_the_end() -> None:
    got = []
    with pytest.raises(PipelineFailed) as info, shell("echo a; echo b; exit 3").lines() as lines:
        got.extend(lines)
    assert got == ["a", "b"]
    assert info.value.returncode == 3
    with shell("echo a; exit 3").lines(check=False) as lines:
        assert list(lines) == ["a"]
    assert lines.result is not None
    assert lines.result.returncodes[0] == 3


def test_lines_timeout() -> None:
    with shell("echo a; exec sleep 30").lines(timeout=0.2) as lines:
        assert next(lines) == "a"
        with pytest.raises(PipelineTimeout):
            next(lines)
    assert lines.result is not None
    assert lines.result.returncodes == [-signal.SIGTERM]


def test_lines_decoding_and_line_endings() -> None:
    script = r"printf 'caf\303\251\r\nbad \377 byte\nno newline'"
    with shell(script).lines() as lines:
        assert list(lines) == ["café", "bad \ufffd byte", "no newline"]
    with shell("printf 'caf\\351\\n'").lines(encoding="latin-1") as lines:
        assert list(lines) == ["café"]


def test_lines_must_be_used_in_a_with_block() -> None:
    lines = cmd("true").lines()
    with pytest.raises(RuntimeError, match="with"):
        next(lines)


def test_pty_makes_the_child_see_a_terminal_and_flush_each_line() -> None:
    # Python fully buffers a pipe; on a terminal it flushes each line, so "first"
    # arrives while the child waits for the parent's go-ahead.
    proceed = threading.Event()

    def answer() -> Iterator[bytes]:
        assert proceed.wait(10)
        yield b"go\n"

    child = "import sys\nprint(sys.stdout.isatty())\nsys.stdin.readline()\nprint('done')"
    with cmd(PY, "-c", child).lines(pty=True, input=answer(), timeout=20) as lines:
        assert next(lines) == "True"
        proceed.set()
        assert list(lines) == ["done"]


def test_unbuffered_sets_pythonunbuffered_for_the_children() -> None:
    done = cmd(PY, "-c", "import os; print(os.environ.get('PYTHONUNBUFFERED'))").run(
        unbuffered=True
    )
    assert done.stdout == b"1\n"


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\n")), max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_line_splitter_ignores_how_the_bytes_are_chunked(lines: list[str], cuts: list[int]) -> None:
    data = "\n".join(lines).encode()
    splitter = LineSplitter("utf-8", "strict")
    previous = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        splitter.feed(data[previous:cut])  # an empty chunk mid-stream would mean EOF
        previous = cut
    if previous < len(data):
        splitter.feed(data[previous:])
    splitter.feed(b"")
    got = []
    while splitter:
        got.append(splitter.pop())
    expected = "\n".join(lines).split("\n")
    if not expected[-1]:
        expected.pop()  # a final "\n" ends the last line; it does not start an empty one
    assert expected == got
    assert splitter.size == 0


# -- 7. text --------------------------------------------------------------------------------


def test_text_decodes_stdout_and_stderr_replacing_bad_bytes() -> None:
    done = shell(r"printf 'ok \377\n'; printf 'warn \377' >&2").run(text=True)
    assert done.stdout == "ok \ufffd\n"
    assert done.stages[0].stderr == "warn \ufffd"
    raw = shell(r"printf '\377'").run()
    assert raw.stdout == b"\xff"


def test_text_errors_strict_raises_when_asked() -> None:
    with pytest.raises(UnicodeDecodeError):
        shell(r"printf '\377'").run(text=True, errors="strict")


def test_str_input_is_encoded() -> None:
    assert cmd("wc", "-c").run(input="café", text=True).stdout.lstrip() == "5\n"


# -- 8. safety -----------------------------------------------------------------------------


def test_arguments_never_meet_a_shell() -> None:
    tricky = "$HOME; echo injected `id` *"
    assert (tricky + "\n").encode() == cmd("echo", tricky).run().stdout
    assert shell("echo $((1 + 2))").run().stdout == b"3\n"


def test_env_is_merged_into_the_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKKIT_KEEP", "kept")
    monkeypatch.setenv("TASKKIT_DROP", "dropped")
    script = 'echo "$TASKKIT_NEW $TASKKIT_KEEP ${TASKKIT_DROP:-gone}"'
    done = shell(script, env={"TASKKIT_NEW": "new", "TASKKIT_DROP": None}).run()
    assert done.stdout == b"new kept gone\n"


def test_cwd_accepts_a_path(tmp_path: Path) -> None:
    assert f"{tmp_path}\n".encode() == cmd("pwd", cwd=tmp_path).run().stdout


def test_missing_program_raises_before_any_stage_starts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(FileNotFoundError) as info:
        (cmd("touch", str(marker)) | cmd("no-such-program-taskkit")).run()
    assert info.value.filename == "no-such-program-taskkit"
    assert "no-such-program-taskkit" in str(info.value)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match=r"cmd\('ls', '-l'\)"):
        cmd("ls -l").run()


def test_missing_program_by_path_stops_the_stages_already_started() -> None:
    with pytest.raises(FileNotFoundError) as info:
        (cmd("sleep", "30") | cmd("./no/such/program")).run()
    assert info.value.filename == "./no/such/program"
    # The autouse fixture checks that the sleep was killed and reaped.


def test_no_non_blocking_descriptors_reach_the_children() -> None:
    probe = "import os; print([os.get_blocking(fd) for fd in (0, 1, 2)])"
    sync = (cmd("cat") | cmd(PY, "-c", f"import sys; sys.stdin.read(); {probe}")).run(input=b"x")
    assert sync.stdout == b"[True, True, True]\n"
    first = cmd(PY, "-c", probe).run(input=b"x")
    assert first.stdout == b"[True, True, True]\n"

    async def main() -> bytes:
        done = await (cmd(PY, "-c", probe) | cmd("cat")).arun(input=b"x")
        return done.stdout

    assert asyncio.run(main()) == b"[True, True, True]\n"


# -- 9. asyncio twins -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_arun() -> None:
    done = await (cmd("sort") | cmd("uniq", "-c")).arun(input=b"b\na\nb\n", text=True)
    assert [line.strip() for line in done.stdout.splitlines()] == ["1 a", "2 b"]
    with pytest.raises(PipelineFailed) as info:
        await (cmd("false") | cmd("true")).arun()
    assert info.value.stage.index == 0
    assert (await (cmd("yes") | cmd("head", "-n", "1")).arun()).stdout == b"y\n"


@pytest.mark.asyncio
async def test_arun_runs_pipelines_concurrently() -> None:
    results = await asyncio.gather(
        *(shell(f"echo {i}; cat").arun(input=b"x" * 100_000) for i in range(10))
    )
    assert [f"{i}\n".encode() + b"x" * 100_000 for i in range(10)] == [r.stdout for r in results]


@pytest.mark.asyncio
async def test_arun_timeout() -> None:
    with pytest.raises(PipelineTimeout) as info:
        await (shell("echo partial; exec sleep 30") | cmd("cat")).arun(timeout=0.2)
    assert info.value.result is not None
    assert info.value.result.stdout == b"partial\n"


@pytest.mark.asyncio
async def test_cancelling_arun_kills_the_tree(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    task = asyncio.ensure_future(shell(f"sleep 30 & echo $$ $! > {fifo}; wait").arun())
    # Opening the FIFO completes once the stage opens it to write: it is running.
    stage, grandchild = map(int, (await asyncio.to_thread(fifo.read_text)).split())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _reaped(stage)
    assert _ends(grandchild)


@pytest.mark.asyncio
async def test_asyncio_timeout_around_arun() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await (cmd("sleep", "30") | cmd("cat")).arun()
    assert time.monotonic() - started < 2.0


@pytest.mark.asyncio
async def test_alines() -> None:
    async with (cmd("seq", "3") | cmd("cat")).alines() as lines:
        assert [line async for line in lines] == ["1", "2", "3"]
    assert lines.result is not None
    assert lines.result.returncodes == [0, 0]
    child = "import sys; sys.stdout.write('a' * 100000 + '\\n')"
    async with cmd(PY, "-c", child).alines() as lines:
        assert [len(line) async for line in lines] == [100_000]


@pytest.mark.asyncio
async def test_alines_early_exit_and_failure() -> None:
    async with (cmd("yes") | shell("cat; exit 3")).alines() as lines:
        async for _ in lines:
            break
        pids = lines.pids
    assert all(_reaped(pid) for pid in pids)
    async with shell("echo a; exit 3").alines() as lines:
        assert await lines.__anext__() == "a"
        with pytest.raises(PipelineFailed):
            await lines.__anext__()


@pytest.mark.asyncio
async def test_alines_pauses_a_fast_producer_for_a_slow_consumer() -> None:
    async with (cmd("yes", "0123456789") | cmd("head", "-n", "200000")).alines() as lines:
        assert await lines.__anext__() == "0123456789"
        while not lines._engine._stdout_paused:  # the consumer stalls; the loop runs on
            await asyncio.sleep(0)
        held = lines._splitter.size
        assert HIGH_WATER < held <= HIGH_WATER + (1 << 16)
        for _ in range(100):
            await asyncio.sleep(0)
        assert held == lines._splitter.size  # paused: nothing more is read
        count = 1 + sum([1 async for _ in lines])
    assert count == 200_000


@pytest.mark.asyncio
async def test_alines_real_time_with_input() -> None:
    proceed = threading.Event()

    def answer() -> Iterator[bytes]:
        assert proceed.wait(10)
        yield b"go\n"

    child = "import sys\nprint('first', flush=True)\nsys.stdin.readline()\nprint('second')"
    async with cmd(PY, "-c", child).alines(input=answer(), timeout=20) as lines:
        assert await lines.__anext__() == "first"
        proceed.set()
        assert [line async for line in lines] == ["second"]


# -- stages die with their parent ------------------------------------------------------


def _stage_pid_when_parent_killed(tmp_path: Path, how: signal.Signals, outlive: bool) -> int:
    """Run ``sleep 60`` as a pipeline stage in a child interpreter, kill the interpreter
    with ``how`` during ``run()``, and return the stage's pid."""
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the stage's open() returns
    script = textwrap.dedent(
        f"""
        from taskkit import cmd
        stage = cmd("sh", "-c", "echo $$ > {fifo}; exec sleep 60", outlive_parent={outlive})
        (stage | cmd("cat")).run()
        """
    )
    parent = subprocess.Popen([PY, "-c", script])
    try:
        assert select.select([reader], [], [], 30)[0], "the stage did not start"
        pid = int(os.read(reader, 100).decode())
        parent.send_signal(how)
        assert parent.wait(30) == -how
    finally:
        os.close(reader)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    return pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_stages_die_with_a_parent_killed_during_run(tmp_path: Path, how: signal.Signals) -> None:
    pid = _stage_pid_when_parent_killed(tmp_path, how, outlive=False)
    try:
        assert _ends(pid, within=10), "the stage outlived the process that started it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_outlive_parent_keeps_a_stage_running_after_its_parent_died(tmp_path: Path) -> None:
    pid = _stage_pid_when_parent_killed(tmp_path, signal.SIGKILL, outlive=True)
    try:
        assert not _ends(pid, within=1), "the stage died with its parent"
    finally:
        os.kill(pid, signal.SIGKILL)
    assert _ends(pid)


def test_stages_started_by_a_thread_that_ended_keep_running() -> None:
    # The kernel's parent-death signal follows the thread that forked: a stage must
    # not die when the thread that entered lines() ends.
    release = threading.Event()

    def feed() -> Iterator[bytes]:
        release.wait(30)
        yield b"still here\n"

    entered: list[object] = []

    def enter() -> None:
        context = cmd("cat").lines(input=feed())
        entered.append((context, context.__enter__()))

    starter = threading.Thread(target=enter)
    starter.start()
    starter.join(30)
    context, lines = entered[0]  # type: ignore[misc]
    try:
        release.set()
        assert list(lines) == ["still here"]
    finally:
        context.__exit__(None, None, None)  # type: ignore[attr-defined]
