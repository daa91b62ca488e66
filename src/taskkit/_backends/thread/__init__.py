"""The ``thread`` backend: a pool of worker threads (``_executor``)."""
