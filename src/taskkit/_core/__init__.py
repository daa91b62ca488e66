"""The core every backend shares: the contract, and what keeps it.

* ``_executor``: ``Executor``, the public face (submit, options, map, close/join, shutdown,
  statistics, listeners), holding its backend; ``_backend``: the protocol a backend object
  implements, and what it may read and set of a task;
  ``_ledger``: task states, counters, retries, deadlines, settling, and the one
  ``transition`` every change passes through; ``_events``: task events from it.
* ``_future``: ``Future`` and ``as_completed``; ``_map``: ``map``/``amap``; ``_calls``:
  running a call or a map chunk; ``_timer``: the shared deadline thread; ``_progress``:
  progress bars; ``_factory``: ``ex.queue()`` and the other primitive factories.
* ``_errors``: the exceptions; ``_serialize``: the one serialiser; ``_compat``: every
  private standard-library name taskkit uses; ``_fastpaths``: the fast-path switches;
  ``_control``: the hooks through which taskkit takes part in ``taskkit.testing`` runs.
"""
