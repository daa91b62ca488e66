"""Getting a ``distributed.Client``: start a private ``LocalCluster``, or connect to one.

``open_executor("dask")`` owns what it starts and closes it (client first,
then cluster); ``address=`` connects a new client it owns to an existing
scheduler; ``client=`` uses the caller's client and closes nothing.

Who can reach a cluster taskkit starts: a Dask scheduler runs whatever code
its clients send, so a cluster reachable by others is a way to run code as
its owner.  Ours therefore listens only on loopback, and

* with worker processes, speaks TLS with credentials made for this cluster
  alone (``Security.temporary()``, kept in this process's memory and handed
  to the workers it starts): a client without them is refused, so another
  local account cannot connect even though it can reach 127.0.0.1;
* with worker threads (``processes=False``), uses in-process channels and
  opens no port for clients at all.

Its HTTP servers (the scheduler's dashboard, each worker's ``/health`` and
``/metrics``) are bound to 127.0.0.1 too; they serve status, not code.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

import dask
import distributed as _distributed

from ..._core._errors import BackendUnavailable

__all__ = ["Connection", "connect"]

# distributed is only partly typed: its objects are handled as Any here.
distributed: Any = _distributed

# Our own cluster reports a worker killed mid-task at once (taskkit's
# ``retries`` decides what to do next) rather than re-running the task on up
# to three more workers first; and a one-thread worker holds only the task it
# runs, so a crash never takes an innocent queued task down with it.
_OWN_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}


class _QuietQueueTimeouts(logging.Filter):
    """Drop the scheduler's error log for a ``Queue.get``/``put`` that timed out.

    Dask answers the caller with ``TimeoutError`` (which taskkit turns into
    ``queue.Empty``/``queue.Full``) *and* logs the same timeout on the
    scheduler with a traceback, as if it were a fault.  Only that message is
    dropped, and only from the scheduler inside our own cluster.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Exception while handling op queue_"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, TimeoutError)


_quiet_queue_timeouts = _QuietQueueTimeouts()
_quiet_users = 0
_quiet_lock = threading.Lock()


def _quiet(on: bool) -> None:
    """Install the filter while at least one of our clusters is open."""
    global _quiet_users
    logger = logging.getLogger("distributed.core")
    with _quiet_lock:
        _quiet_users += 1 if on else -1
        if _quiet_users > 0:
            logger.addFilter(_quiet_queue_timeouts)
        else:
            logger.removeFilter(_quiet_queue_timeouts)


class Connection:
    """A client and what must be closed with it."""

    def __init__(
        self,
        client: Any,
        cluster: Any | None,
        owns_client: bool,
        directory: str | None,
    ) -> None:
        self.client, self.cluster = client, cluster
        self.owns_client, self.directory = owns_client, directory
        self.address = str(client.scheduler.address)  # kept: the client forgets it on close

    def close(self, *, kill: bool = False) -> None:
        """Close the client (if ours), then the cluster (if ours), then its directory.

        With ``kill``, the cluster's workers are stopped without waiting for
        their running calls (Dask would wait seconds for them).
        """
        try:
            if kill and self.cluster is not None:
                _stop_workers_now(self.cluster)
            if self.owns_client:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            if self.cluster is not None:
                _quiet(False)
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)


def _stop_workers_now(cluster: Any) -> None:
    for worker in list(cluster.workers.values()):
        try:
            if isinstance(worker, distributed.Nanny):
                # The nanny kills its worker process if it has not left by then.
                cluster.sync(worker.close, timeout=0.5)
            else:
                # A worker thread of this process cannot be killed: do not wait for it.
                cluster.sync(worker.close, timeout=0.5, executor_wait=False)
        except Exception:
            pass  # cluster.close() below still closes what is left


def connect(
    *,
    address: str | None,
    client: Any | None,
    n_workers: int,
    threads_per_worker: int,
    processes: bool,
    local_directory: str | os.PathLike[str] | None,
    connect_timeout: float,
    security: Any | None,
    cluster_options: Mapping[str, Any],
) -> Connection:
    """Return a connection to the cluster the executor should use."""
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return Connection(client, None, owns_client=False, directory=None)
    if address is not None:
        try:
            new = distributed.Client(
                address, timeout=connect_timeout, security=security, set_as_default=False
            )
        except TypeError as exc:
            if security is not None or "TLS" not in str(exc):
                raise
            raise BackendUnavailable(
                f"could not reach the Dask scheduler at {address}: it speaks TLS, so pass "
                "the cluster's credentials as security=distributed.security.Security(...)"
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"could not reach a Dask scheduler at {address} within {connect_timeout:g} s "
                f"({type(exc).__name__}: {exc}); is the scheduler running and the address "
                "right (tcp://host:port)?"
            ) from exc
        return Connection(new, None, owns_client=True, directory=None)
    return _start_local(
        n_workers, threads_per_worker, processes, local_directory, security, cluster_options
    )


def _start_local(
    n_workers: int,
    threads_per_worker: int,
    processes: bool,
    local_directory: str | os.PathLike[str] | None,
    security: Any | None,
    cluster_options: Mapping[str, Any],
) -> Connection:
    options: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "processes": processes,
        # The HTTP servers always start, the scheduler's on port 8787 and each
        # worker's on every interface unless told otherwise: random loopback
        # ports never collide with another cluster and are not seen from outside.
        "dashboard_address": "127.0.0.1:0",
        "worker_dashboard_address": "127.0.0.1:0",
    }
    if processes or security is not None:
        # Clients and workers connect over sockets: TLS with this cluster's own
        # credentials, so that no other local account can connect (see above).
        options["host"] = "127.0.0.1"
        options["security"] = security if security is not None else _own_credentials()
    # else worker threads talk to the scheduler in-process: no port for clients at all.
    directory = None
    if local_directory is None:
        directory = local_directory = tempfile.mkdtemp(prefix="taskkit-dask-")
    options["local_directory"] = os.fspath(local_directory)
    options.update(cluster_options)
    _quiet(True)
    try:
        with dask.config.set(_OWN_CLUSTER_CONFIG):
            cluster = distributed.LocalCluster(**options)
        try:
            client = distributed.Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
    except BaseException:
        _quiet(False)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return Connection(client, cluster, owns_client=True, directory=directory)


def _own_credentials() -> Any:
    """Self-signed TLS credentials for one cluster, held only in this process's memory."""
    try:
        return distributed.security.Security.temporary()
    except ImportError as exc:
        raise BackendUnavailable(
            "a Dask cluster started by taskkit is secured with TLS credentials of its own, "
            'which needs the "cryptography" package: python -m pip install "taskkit[dask]"'
        ) from exc
