"""The part of ``_compat`` without asyncio: the fork server's preload list, exit hooks.

A worker process of the process backend imports this, not ``_compat``, so it never
imports asyncio (``_compat`` re-exports both functions, and the notes there hold
here too: each name is checked on CPython 3.10-3.13, with what taskkit does if a
release removes it).  Importing this module does no work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["add_forkserver_preload", "run_multiprocessing_exit_hooks"]


def add_forkserver_preload(module: str) -> bool:
    """Have the fork server import ``module`` once, if it has not started yet.

    The public ``set_forkserver_preload`` replaces the list; taskkit adds to it, so it
    reads the list first, and it leaves a server that is already running alone.
    Checked: 3.10-3.13 (``forkserver._forkserver``, its ``_forkserver_pid`` and
    ``_preload_modules``).  If they go: nothing is preloaded (False), and each worker
    imports taskkit itself, more slowly.

    Returns:
        True if ``module`` is (now) on the list of a server yet to start.
    """
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None:
        return False  # already running: its preload list is fixed
    modules = list(getattr(server, "_preload_modules", ["__main__"]))
    if module not in modules:
        server.set_forkserver_preload([*modules, module])
    return True


def run_multiprocessing_exit_hooks() -> None:
    """Run multiprocessing's own exit hooks (finalizers), as a process it started would.

    Checked: 3.10-3.13 (``multiprocessing.util._exit_function``).  If it goes: nothing
    is run; the process exits without its finalizers, as with ``os._exit``.
    """
    from multiprocessing import util

    hooks: Callable[[], object] | None = getattr(util, "_exit_function", None)
    if hooks is not None:
        hooks()
