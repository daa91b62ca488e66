"""The ``process`` backend: everything that runs tasks in worker processes.

* ``_executor``: ``ProcessExecutor`` (pickles calls, hands them over) and its manager
  (``_Pool`` hands tasks to workers, ``_CallerReads`` lets a caller read its own reply,
  ``_Manager`` is the manager thread's loop).
* ``_wire``: the frames on each worker's socket; ``_worker``: the loop a worker runs.
* ``_primitives``: the process queue, lock, event, semaphore and value, in shared memory;
  ``_shm`` (Linux futexes, robust mutexes) or ``_shm_portable`` (other POSIX) under them.
  Their waiters sleep in ``_primitives``' ``FutexLot``s, under the driver of
  ``taskkit._primitives._waiting``.
"""
