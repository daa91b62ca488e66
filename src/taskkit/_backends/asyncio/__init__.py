"""The ``asyncio`` backend: tasks on an asyncio event loop, the caller's or its own (``_executor``)."""
