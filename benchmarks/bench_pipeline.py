"""Subprocess pipelines: taskkit against bash and a hand-written Popen chain.

Two measurements, each in the same run as its peers:

* throughput: 1 GiB through ``head -c 1073741824 /dev/zero | wc -c`` (target: taskkit
  within 1.05x of bash running the same pipeline);
* line latency: from a child writing a line (its clock, CLOCK_MONOTONIC, which the
  parent shares on Linux) to ``lines()`` yielding it (target: <= 5 ms).  The child
  flushes each line and pauses 5 ms between lines, so each line is measured alone.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks._util import Row, interleaved, print_table
from taskkit import cmd

GIB = 1 << 30
PIPELINE = f"head -c {GIB} /dev/zero | wc -c"
LINES = 100
CHILD = f"""
import sys, time
for _ in range({LINES}):
    sys.stdout.write(f"{{time.monotonic_ns()}}\\n")
    sys.stdout.flush()
    time.sleep(0.005)
"""


def _bash() -> None:
    out = subprocess.run(["bash", "-c", PIPELINE], stdout=subprocess.PIPE, check=True).stdout
    assert int(out) == GIB


def _popen_chain() -> None:
    head = subprocess.Popen(["head", "-c", str(GIB), "/dev/zero"], stdout=subprocess.PIPE)
    wc = subprocess.Popen(["wc", "-c"], stdin=head.stdout, stdout=subprocess.PIPE)
    assert head.stdout is not None
    head.stdout.close()  # so head gets SIGPIPE if wc dies
    out, _ = wc.communicate()
    head.wait()
    assert int(out) == GIB


def _taskkit() -> None:
    done = (cmd("head", "-c", str(GIB), "/dev/zero") | cmd("wc", "-c")).run()
    assert int(done.stdout) == GIB


def _taskkit_async() -> None:
    async def main() -> bytes:
        done = await (cmd("head", "-c", str(GIB), "/dev/zero") | cmd("wc", "-c")).arun()
        return done.stdout

    assert int(asyncio.run(main())) == GIB


def _latencies_taskkit() -> list[float]:
    delays = []
    with cmd(sys.executable, "-c", CHILD).lines() as lines:
        for line in lines:
            delays.append((time.monotonic_ns() - int(line)) / 1e9)
    return delays


def _latencies_taskkit_async() -> list[float]:
    async def main() -> list[float]:
        delays = []
        async with cmd(sys.executable, "-c", CHILD).alines() as lines:
            async for line in lines:
                delays.append((time.monotonic_ns() - int(line)) / 1e9)
        return delays

    return asyncio.run(main())


def _latencies_popen() -> list[float]:
    delays = []
    with subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            delays.append((time.monotonic_ns() - int(line)) / 1e9)
    return delays


def _median_latency(measure: object, repeats: int) -> float:
    assert callable(measure)
    delays: list[float] = []
    for _ in range(max(1, repeats)):
        delays += measure()
    return statistics.median(delays)


def main(repeats: int) -> None:
    if shutil.which("bash") is None:
        print("\n## pipelines: bash is missing; skipped")
        return
    medians = interleaved(
        {
            "bash": _bash,
            "Popen chain": _popen_chain,
            "taskkit run()": _taskkit,
            "taskkit arun()": _taskkit_async,
        },
        repeats,
    )
    print_table(
        "pipelines: 1 GiB through `head -c 1073741824 /dev/zero | wc -c` (interleaved runs)",
        [
            Row("bash", medians["bash"]),
            Row("Popen chain", medians["Popen chain"], "bash"),
            Row("taskkit run()", medians["taskkit run()"], "bash", "<= 1.05x"),
            Row("taskkit arun()", medians["taskkit arun()"], "bash", "<= 1.05x"),
        ],
    )
    print_table(
        f"pipelines: child writes a line -> caller has it (median of {LINES} x {repeats} lines)",
        [
            Row("Popen stdout readline", _median_latency(_latencies_popen, repeats)),
            Row(
                "taskkit lines()",
                _median_latency(_latencies_taskkit, repeats),
                "Popen stdout readline",
                "<= 5 ms",
            ),
            Row(
                "taskkit alines()",
                _median_latency(_latencies_taskkit_async, repeats),
                "Popen stdout readline",
                "<= 5 ms",
            ),
        ],
    )


if __name__ == "__main__":
    main(5)
