"""Print an interleaving as a short table, and the schedule string that replays it."""

from __future__ import annotations

import linecache
import os
import re
from collections.abc import Sequence
from typing import Any

from ._runtime import Run, Step

__all__ = [
    "add_note",
    "describe_report",
    "format_schedule",
    "format_table",
    "parse_schedule",
    "summarize_counterexample",
    "summarize_report",
]

_ENTRY = re.compile(r"^\s*(T\d+|-)@(\d+)>T(\d+)\s*$")


def format_schedule(run: Run) -> str:
    """Return the run's decisions that differ from the default, e.g. ``"T0@1>T1,T1@4>T0"``."""
    return ",".join(
        f"{'-' if cur is None else f'T{cur}'}@{step}>T{nxt}" for step, cur, nxt in run.deviations
    )


def parse_schedule(text: str) -> dict[int, int]:
    """Parse a schedule string into ``{step: task index}``.

    Raises:
        ValueError: the text is not a schedule string.
    """
    entries: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _ENTRY.match(part)
        if match is None:
            raise ValueError(
                f"bad schedule entry {part!r}: expected 'T<current>@<step>>T<next>', e.g. 'T0@3>T1'"
            )
        entries[int(match.group(2))] = int(match.group(3))
    return entries


def add_note(error: BaseException, text: str) -> None:
    """Attach ``text`` to ``error``'s report (a note on 3.11+, the message before that)."""
    adder = getattr(error, "add_note", None)
    if adder is not None:
        adder(text)
    elif error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}\n{text}", *error.args[1:])
    else:
        error.args = (*error.args, text)


def _source(filename: str, line: int) -> str:
    return linecache.getline(filename, line).strip()


def format_table(run: Run, *, limit: int = 40) -> str:
    """Return the interleaving of ``run`` as a table, one row per step.

    A run longer than ``limit`` steps shows one row per stretch of one task.  A stretch that
    ended because another task preempted it names the access it was preempted before.
    """
    steps = run.steps
    rows: list[tuple[str, str, str, str, str]] = []
    segments = _segments(steps) if len(steps) > limit else [[s] for s in steps]
    for n, seg in enumerate(segments):
        first, last = seg[0], seg[-1]
        mark = "preempt" if first.preempted else ""
        where, source = _place(first.where, last.where)
        if len(seg) == 1:
            op = first.op
        else:
            op = f"{first.op} ... {last.op} ({len(seg)} steps)"
            following = segments[n + 1] if n + 1 < len(segments) else None
            if following is not None and following[0].preempted:
                pending = _next_of(steps, last)
                if pending is not None:
                    op = f"{op}; preempted before {pending.op}"
                    _, source = _place(pending.where, None)
        rows.append((str(first.index), f"T{first.task}", mark, where, _cell(op, source)))
    if run.failure is not None:
        who = f"T{run.failed_task.index} " if run.failed_task is not None else ""
        rows.append(("", "", "", "", f"{who}failed: {type(run.failure).__name__}"))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) for i in range(4)]
        lines.append("  " + "  ".join(cells) + "  " + r[4])
    return "\n".join(line.rstrip() for line in lines)


def _cell(op: str, source: str) -> str:
    return op + ("   " + source if source else "")


def _place(
    where: tuple[str, int, str] | None, until: tuple[str, int, str] | None
) -> tuple[str, str]:
    """``file.py:12-14 func`` and the source of the first line, for a step or a stretch."""
    if where is None:
        return "", ""
    filename, line, func = where
    place = f"{os.path.basename(filename)}:{line}"
    if until is not None and until[1] != line and until[0] == filename:
        place += f"-{until[1]}"
    return f"{place} {func}", _source(filename, line)


def _next_of(steps: Sequence[Step], step: Step) -> Step | None:
    """The next step of ``step``'s task: what it was about to do when it was preempted."""
    for later in steps[step.index + 1 :]:
        if later.task == step.task:
            return later
    return None


def _segments(steps: Sequence[Step]) -> list[list[Step]]:
    """Group consecutive steps of one task; a preemption starts a new group."""
    out: list[list[Step]] = []
    for step in steps:
        if out and out[-1][-1].task == step.task and not step.preempted:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def describe(run: Run) -> str:
    """Return the headline, the table and the replay line for a finished run."""
    schedule = format_schedule(run)
    n = run.preemptions
    head = (
        f"interleaving of {len(run.tasks)} tasks, {len(run.steps)} switch points, "
        f"{n} preemption{'s' if n != 1 else ''}:"
    )
    return (
        f"{head}\n{format_table(run)}\n"
        f"schedule: {schedule!r}  (taskkit.testing.replay({schedule!r}).run(...))"
    )


def _first_line(error: BaseException, width: int = 80) -> str:
    text = f"{type(error).__name__}: {error}".split("\n", 1)[0].rstrip(": ")
    return text if len(text) <= width else text[: width - 3] + "..."


def summarize_counterexample(cx: Any) -> str:
    """One line for ``repr(counterexample)``: what failed and the schedule that replays it."""
    return (
        f"Counterexample({_first_line(cx.error)!r}, schedule={cx.schedule!r}, "
        f"preemptions={cx.preemptions})"
    )


def summarize_report(report: Any) -> str:
    """One line for ``repr(report)``, short enough for pytest's ``where ... = Report(...)``."""
    parts = [f"ok={report.ok}", f"complete={report.complete}", f"executions={report.executions}"]
    if report.counterexample is not None:
        parts.append(f"failure={_first_line(report.counterexample.error)!r}")
        parts.append(f"schedule={report.counterexample.schedule!r}")
    if report.notes:
        parts.append(f"notes={len(report.notes)}")
    return f"Report({', '.join(parts)})"


def describe_report(report: Any) -> str:
    """The whole story of a report: the verdict, the failing interleaving and the notes."""
    runs = f"{report.executions} execution{'s' if report.executions != 1 else ''}"
    if report.ok:
        if report.complete:
            head = f"ok: every interleaving checked ({runs})"
        else:
            head = f"ok, but not a complete search ({runs})"
    else:
        head = f"failed after {runs}:\n{report.counterexample}"
    return "\n".join([head, *(f"note: {note}" for note in report.notes)])
