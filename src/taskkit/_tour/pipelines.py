"""The pipelines part of ``python -m taskkit tour``: ``ls -l | wc -l``, run by taskkit."""

from __future__ import annotations

from taskkit import cmd

__all__ = ["tour_section"]


def tour_section() -> None:
    """Run ``ls -l | wc -l`` in the current directory and say what happened."""
    pipeline = cmd("ls", "-l") | cmd("wc", "-l")
    done = pipeline.run(timeout=10, text=True)
    print("Subprocess pipelines: taskkit.cmd('ls', '-l') | taskkit.cmd('wc', '-l')")
    print(f"  ran `{pipeline}`: ls wrote into an OS pipe that wc read directly,")
    print("  with no shell and no copying through Python in between.")
    print(f"  wc counted {done.stdout.strip()} lines of `ls -l` output in this directory.")
    print(f"  Exit status of each program (like bash's PIPESTATUS): {list(done.returncodes)};")
    print("  had either failed, taskkit would have raised PipelineFailed naming it.")
