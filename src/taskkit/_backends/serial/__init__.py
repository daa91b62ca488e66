"""The ``serial`` backend: every task runs inside ``submit``, in the caller (``_executor``)."""
