"""The ``coroutine`` backend: taskkit's own cooperative scheduler (``_scheduler``) and the
executor on it (``_executor``).  The scheduler's public names are re-exported here."""

from ._scheduler import (
    BlockingWarning,
    PickNext,
    Scheduler,
    Task,
    checkpoint,
    current_scheduler,
    fifo,
    is_task_object,
    seeded_random,
    sleep,
)

__all__ = [
    "BlockingWarning",
    "PickNext",
    "Scheduler",
    "Task",
    "checkpoint",
    "current_scheduler",
    "fifo",
    "is_task_object",
    "seeded_random",
    "sleep",
]
