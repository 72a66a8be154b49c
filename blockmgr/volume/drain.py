"""Resolving, after start, the orphans recovery could not judge: rows whose request may be queued.

At start (``recovery.recover(defer_orphans=True)``) a row of this backend in a transitional
status without a flow is either lost (the worker died holding its request, or the request was
never delivered) or still **queued in the broker**: the scheduler placed it and cast the
request, which waits in this backend's queue (``blockmgr-volume.<host@backend>``) because
the worker was down. Moving it to ``error`` at start would refuse a request about to arrive
(the e2e kill -9 test saw 9 of 30 creates end that way). Leaving it for ever would break
the rule that nothing of this host stays transitional after recovery.

:class:`QueueDrain` tells the two apart exactly, with a marker message:

1. Once the RPC server consumes, the worker casts ``recovery_drained(token)`` to its own
   server queue. RabbitMQ queues are FIFO (a message redelivered after the old process died
   goes back to its original place), so when the marker is handed to a thread, every request
   queued before the start has been handed to a thread before it.
2. It then waits until those requests have finished
   (:meth:`blockmgr.rpc.BoundedRPCServer.wait_dispatched_before`): each ran its flow, which
   settled its row (done, error, rescheduled), or was refused.
3. The rows that are still transitional without a flow had no request queued: they move to
   their error status (:func:`blockmgr.volume.recovery.resolve_orphans`).

The wait is bounded: if the marker has not come back ``[DEFAULT] recovery_drain_timeout``
seconds after the server started (the broker lost the queue, or the cast failed), or the
requests ahead of it have not finished by then, the rows are resolved anyway. Each is then
checked under the resource's lock, so a request being served is never overtaken; a request
that arrives even later finds the error status and is refused by its flow (the create flow
accepts only ``creating``), so nothing runs twice.

The marker travels in its own RPC namespace (:data:`NAMESPACE`), apart from the volume API;
a marker of an earlier start (its process died before reading it) carries another token and
is ignored.
"""

from __future__ import annotations

import logging
import threading
import time

import oslo_messaging
from oslo_utils import uuidutils

from blockmgr import context as bm_context
from blockmgr import rpc
from blockmgr.volume import recovery

LOG = logging.getLogger(__name__)

NAMESPACE = "blockmgr-volume-recovery"
VERSION = "1.0"


class DrainEndpoint:
    """The RPC endpoint of the marker; registered on every backend's server."""

    target = oslo_messaging.Target(namespace=NAMESPACE, version=VERSION)

    def __init__(self, drain: "QueueDrain"):
        self._drain = drain

    def recovery_drained(self, context, token: str) -> None:
        self._drain.marker_arrived(token)


class QueueDrain:
    """Resolves ``deferred`` (``RecoveryReport.deferred``) of ``manager`` as the module says.

    :param timeout: seconds after :meth:`start` when the rows are resolved whatever happened.
    :param clock: monotonic seconds (tests).
    """

    def __init__(self, manager, deferred, *, transport, timeout: float,
                 clock=time.monotonic):
        self.manager = manager
        self.deferred = list(deferred)
        self.transport = transport
        self.timeout = float(timeout)
        self.token = uuidutils.generate_uuid()
        self.endpoint = DrainEndpoint(self)
        self.resolved = threading.Event()
        self.moved: list[tuple[str, str, str]] = []
        #: "drained" (exact) or "timeout" once resolved.
        self.how: str | None = None
        self._clock = clock
        self._server = None
        self._mark: int | None = None
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, server) -> None:
        """Cast the marker through ``server``'s queue and resolve in a thread of its own.
        Nothing deferred: nothing to do (the marker is not even sent)."""
        self._server = server
        if not self.deferred:
            self.how = "drained"
            self.resolved.set()
            return
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="drain-%s" % self.manager.host)
        self._thread.start()

    def stop(self) -> None:
        """Give up (stopping worker): the rows stay as they are for the next start."""
        self._stop.set()
        self._arrived.set()

    def marker_arrived(self, token: str) -> None:
        if token != self.token or self._server is None:
            LOG.debug("Ignoring the queue marker %s of an earlier start of %s", token,
                      self.manager.host)
            return
        # Counted in the listener thread before this one ran: every request delivered
        # before the marker has a smaller number.
        self._mark = self._server.dispatched
        self._arrived.set()

    def _run(self) -> None:
        deadline = self._clock() + self.timeout
        try:
            rpc.get_client(self.transport, rpc.VOLUME_TOPIC, server=self.manager.host,
                           version=VERSION, retry=3).prepare(namespace=NAMESPACE).cast(
                bm_context.get_admin_context(), "recovery_drained", token=self.token)
        except Exception as exc:
            LOG.warning("Could not send the queue marker of %s (%s); its %d resource(s) "
                        "without a flow are resolved after recovery_drain_timeout (%.0f s)",
                        self.manager.host, exc, len(self.deferred), self.timeout)
        self._arrived.wait(max(0.0, deadline - self._clock()))
        if self._stop.is_set():
            return
        how = "timeout"
        if self._mark is not None and self._server.wait_dispatched_before(
                self._mark, max(0.0, deadline - self._clock())):
            how = "drained"
        if self._stop.is_set():
            return
        if how == "timeout":
            LOG.warning("%s: the requests queued before the start were not all served "
                        "within recovery_drain_timeout (%.0f s); resolving its resources "
                        "without a flow now", self.manager.host, self.timeout)
        try:
            self.moved = recovery.resolve_orphans(self.manager, self.deferred)
        except Exception:
            LOG.exception("Could not resolve the resources of %s left without a flow; the "
                          "next start retries", self.manager.host)
            return
        self.how = how
        LOG.info("%s: %d of %d resource(s) left without a flow had no request queued and "
                 "moved to their error status (%s)", self.manager.host, len(self.moved),
                 len(self.deferred), how)
        self.resolved.set()
