"""Internals of the ``process`` backend: the wire format and the worker's main loop.

``_wire`` frames messages over one socket per worker and serialises with
pickle protocol 5 (cloudpickle where plain pickle cannot); ``_worker`` is the
loop each worker process runs.  ``taskkit._backends.process`` is the parent side.
"""
