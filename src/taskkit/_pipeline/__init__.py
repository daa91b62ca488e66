"""Subprocess pipelines: ``cmd("ls", "-l") | cmd("wc", "-l")`` run with real OS pipes.

Modules: ``_api`` (cmd, shell, Pipeline), ``_results`` (Completed, StageResult),
``_engine`` (processes, pipes, signals), ``_steps`` (what a run does, in order, written
once), ``_sync`` and ``_async`` (the two ways of waiting: each drives the steps with its
reactor), ``_common`` (line splitting, ending a run).
"""

from ._api import Pipeline as Pipeline
from ._api import cmd as cmd
from ._api import shell as shell
from ._async import AsyncLines as AsyncLines
from ._results import Completed as Completed
from ._results import StageResult as StageResult
from ._sync import Lines as Lines

__all__ = ["AsyncLines", "Completed", "Lines", "Pipeline", "StageResult", "cmd", "shell"]
