"""The switch for taskkit's fast paths: ``TASKKIT_FAST_PATHS=0`` turns them all off.

Each fast path is a shortcut taken on a hot path, next to the plain code that does
the same work the ordinary way; both give the same results.  The flags are read once,
when taskkit is imported, from the environment variable ``TASKKIT_FAST_PATHS``:
unset or ``1`` turns every fast path on, ``0`` turns every one off, and a
comma-separated list of names (``process_caller_reads,asyncio_inline_submit``)
turns on just those.  CI runs the contract and backend tests both ways, and each
fast path has a benchmark row (``python -m benchmarks fastpaths``) that compares it
with its plain twin.

The fast paths:

``process_caller_reads``
    A caller blocked in ``result()`` on a process task reads the worker's reply
    from the worker's socket itself, instead of waiting for the manager thread to
    read it and wake the caller (``_CallerReads`` in ``_backends/process/_executor.py``).  Plain
    twin: the manager thread reads every reply.
``asyncio_inline_submit``
    ``submit(async_fn)`` on the asyncio executor's own loop creates the asyncio task
    at once and settles and counts it on that thread without the ledger's lock
    (``_AsyncioBackend._start_here``, ``_ledger.LoopTasks``).  Plain twin:
    ``Executor.submit`` and the loop's ordinary admission.
"""

from __future__ import annotations

import os

__all__ = ["ASYNCIO_INLINE_SUBMIT", "NAMES", "PROCESS_CALLER_READS"]

#: Every fast path, by name.
NAMES = ("process_caller_reads", "asyncio_inline_submit")


def _enabled(setting: str | None) -> frozenset[str]:
    if setting is None or setting.strip() in ("", "1"):
        return frozenset(NAMES)
    if setting.strip() == "0":
        return frozenset()
    names = frozenset(name.strip() for name in setting.split(",") if name.strip())
    unknown = names - frozenset(NAMES)
    if unknown:
        raise ValueError(
            f"TASKKIT_FAST_PATHS names unknown fast paths {sorted(unknown)}; "
            f"use 0, 1 or some of {', '.join(NAMES)}"
        )
    return names


_on = _enabled(os.environ.get("TASKKIT_FAST_PATHS"))

PROCESS_CALLER_READS = "process_caller_reads" in _on
ASYNCIO_INLINE_SUBMIT = "asyncio_inline_submit" in _on
