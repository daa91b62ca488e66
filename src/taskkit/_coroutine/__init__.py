"""taskkit's own cooperative scheduler, the engine of the ``coroutine`` backend."""

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
