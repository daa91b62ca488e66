"""The ``dask`` backend: the same interface on a Dask cluster.

* ``_executor``: ``DaskExecutor``; ``_cluster``: starting or joining a cluster (TLS on
  the clusters taskkit starts); ``_remote``: the worker-side trampoline;
  ``_primitives``: queue, lock, event, semaphore and value on Dask's own.

Nothing here imports ``distributed`` at module level except ``_cluster``,
``_primitives`` and ``_executor``, which are imported only when the backend is used.
"""
