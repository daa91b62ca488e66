"""Helpers of the ``dask`` backend: the worker-side trampoline, cluster set-up, primitives.

Nothing here imports ``distributed`` at module level except ``_cluster`` and
``_primitives``, which are imported only when the backend is used.
"""
