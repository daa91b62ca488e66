"""The ``asyncio`` backend: tasks on an event loop, the caller's or its own (``_executor``)."""
