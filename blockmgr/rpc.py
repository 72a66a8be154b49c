"""RPC plumbing over oslo.messaging: transports, clients, servers, the context on the wire.

Addressing (``ARCHITECTURE.md``): volume workers listen on topic :data:`VOLUME_TOPIC` with
server ``host@backend``; schedulers on :data:`SCHEDULER_TOPIC`. A resource's ``host`` may
carry a ``#pool`` suffix, which :func:`backend_of` strips before addressing.

Transports: ``transport_url`` (``rabbit://...``) as oslo.messaging reads it, or
``inprocess://<name>`` (:mod:`blockmgr.rpc_inprocess`): a broker inside this process for the
all-in-one mode and unit tests, which wakes listeners at once instead of polling like
oslo.messaging's ``fake://`` (~50 ms per message).

Errors: blockmgr exceptions raised by an endpoint cross RPC through oslo.messaging's own
remote-exception mechanism (module :data:`ALLOWED_REMOTE_EXMODS` is allowed), which rebuilds
them from their ``kwargs`` on the caller's side. oslo makes the rebuilt class a ``*_Remote``
subclass whose ``str()`` carries the remote traceback; :func:`local_error` turns it back into
a plain instance of the original class (same message, same kwargs) for callers that show
messages to humans.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import oslo_messaging
from oslo_config import cfg
from oslo_messaging.rpc import server as rpc_server

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import metrics

LOG = logging.getLogger(__name__)

VOLUME_TOPIC = "blockmgr-volume"
SCHEDULER_TOPIC = "blockmgr-scheduler"

#: Modules whose exceptions are rebuilt on the calling side (others become RemoteError).
ALLOWED_REMOTE_EXMODS = ["blockmgr.exception"]

INPROCESS_SCHEME = "inprocess://"


def _ensure_messaging_opts(conf) -> None:
    """oslo.messaging reads its tracing options from the config it is handed but registers
    them only on the global one (see :mod:`blockmgr.conf.rpc`)."""
    from blockmgr.conf import rpc as rpc_conf

    if "oslo_messaging_metrics" not in conf or "rpc_response_timeout" not in conf:
        rpc_conf.register_opts(conf)


def _url(conf, url: str | None) -> str | None:
    return url if url is not None else conf.transport_url


def get_transport(conf, url: str | None = None):
    """The RPC transport: ``url`` if given, else ``[DEFAULT] transport_url``."""
    _ensure_messaging_opts(conf)
    url = _url(conf, url)
    if url and url.startswith(INPROCESS_SCHEME):
        from blockmgr import rpc_inprocess

        return rpc_inprocess.get_transport(conf, url, ALLOWED_REMOTE_EXMODS)
    _bound_prefetch(conf)
    return oslo_messaging.get_rpc_transport(conf, url=url,
                                            allowed_remote_exmods=ALLOWED_REMOTE_EXMODS)


def _bound_prefetch(conf) -> None:
    """Unless the operator set ``[oslo_messaging_rabbit] rabbit_qos_prefetch_count``, let
    RabbitMQ hand a consumer at most ``rpc_worker_threads`` unacknowledged messages (its
    default, 0, is unbounded). Messages taken early are acknowledged on receipt; the request
    ledger makes losing them harmless, the bound keeps them few."""
    try:
        group = conf.oslo_messaging_rabbit
        if group.rabbit_qos_prefetch_count == 0 and "rpc_worker_threads" in conf:
            conf.set_default("rabbit_qos_prefetch_count", conf.rpc_worker_threads,
                             group="oslo_messaging_rabbit")
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        pass


def get_notification_transport(conf, url: str | None = None):
    """The notification transport (``[oslo_messaging_notifications] transport_url``, falling
    back to the RPC one). An in-process RPC URL yields an in-process transport as well."""
    _ensure_messaging_opts(conf)
    rpc_url = _url(conf, url)
    if rpc_url and rpc_url.startswith(INPROCESS_SCHEME):
        from blockmgr import rpc_inprocess

        return rpc_inprocess.get_transport(conf, rpc_url, ALLOWED_REMOTE_EXMODS,
                                           notifications=True)
    return oslo_messaging.get_notification_transport(
        conf, url=url, allowed_remote_exmods=ALLOWED_REMOTE_EXMODS)


def backend_of(host: str | None) -> str | None:
    """``host@backend#pool`` -> ``host@backend`` (the RPC server name); None stays None."""
    if host is None:
        return None
    return host.partition("#")[0]


class RequestContextSerializer(oslo_messaging.NoOpSerializer):
    """Sends a :class:`~blockmgr.context.RequestContext` as its dict and rebuilds it on
    arrival; arguments themselves must already be JSON (ids, dicts, lists)."""

    def serialize_context(self, ctxt):
        if isinstance(ctxt, bm_context.RequestContext):
            return ctxt.to_dict()
        if ctxt is None:
            return {}
        if isinstance(ctxt, dict):
            return bm_context.RequestContext.from_dict(ctxt).to_dict()
        raise exception.InvalidInput(
            reason="an RPC context must be a RequestContext or its dict, not %s"
            % type(ctxt).__name__)

    def deserialize_context(self, ctxt):
        return bm_context.RequestContext.from_dict(ctxt or {})


def get_client(transport, topic: str, *, server: str | None = None,
               version: str | None = None, fanout: bool = False,
               timeout: float | None = None,
               retry: int | None = None) -> oslo_messaging.RPCClient:
    """An RPCClient for ``topic`` (and ``server``, with any ``#pool`` stripped).

    ``retry``: how often a send reconnects to an unreachable broker before it raises
    (``MessageDeliveryFailure``); None or -1 retries forever (oslo.messaging's default),
    so a cast blocks until the broker is back."""
    target = oslo_messaging.Target(topic=topic, server=backend_of(server), version=version,
                                   fanout=fanout)
    return oslo_messaging.get_rpc_client(transport, target, serializer=RequestContextSerializer(),
                                         timeout=timeout, retry=retry)


class BoundedRPCServer(rpc_server.RPCServer):
    """An RPC server that takes a message from the broker only when a worker thread is free.

    oslo.messaging's threading executor queues everything the listener receives, without
    limit, and the AMQP driver acknowledges RPC messages when they are received. A busy or
    stopping worker would then hold acknowledged requests in memory, lost if it exits before
    running them. Here the listener's thread waits for a free slot before handing a message
    on, so the backlog stays in the broker, and :meth:`stop` leaves it there for the next
    worker (or this one after a restart).
    """

    def __init__(self, *args, pool_size: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool_size = size = pool_size or self.conf.executor_thread_pool_size
        # ``start()`` builds the executor from ``_executor_cls``; its size must equal the
        # number of slots, or acknowledged messages would queue inside the executor. The
        # standard library's pool replaces futurist's, whose idle workers poll with a 1 s
        # timeout and so make every stop() take a second.
        name = "rpc-%s" % (self._target.server or self._target.topic)
        self._executor_cls = lambda **_opts: futures.ThreadPoolExecutor(
            max_workers=size, thread_name_prefix=name)
        # Every request is counted by method and outcome (blockmgr.metrics).
        self.dispatcher.dispatch = metrics.counting_dispatch(self.dispatcher.dispatch,
                                                             self._target.topic)
        self._slots = threading.BoundedSemaphore(size)
        self._busy = 0
        self._busy_lock = threading.Lock()
        # Dispatch order, for wait_dispatched_before(): requests are numbered in the
        # listener thread, i.e. in the order the broker delivered them.
        self._dispatched = 0
        self._running: set[int] = set()
        self._finished = threading.Condition(self._busy_lock)

    @property
    def busy(self) -> int:
        """Requests being processed right now."""
        return self._busy

    @property
    def dispatched(self) -> int:
        """How many requests were handed to a thread so far (in delivery order)."""
        return self._dispatched

    def wait_dispatched_before(self, count: int, timeout: float | None = None) -> bool:
        """Wait until each of the first ``count`` requests handed to a thread has finished;
        True if they all had within ``timeout``."""
        with self._finished:
            return self._finished.wait_for(
                lambda: not self._running or min(self._running) >= count, timeout)

    def _on_incoming(self, incoming):
        self._slots.acquire()
        with self._busy_lock:
            self._busy += 1
            seq = self._dispatched
            self._dispatched += 1
            self._running.add(seq)
        try:
            future = self._work_executor.submit(self._process_incoming, incoming)
        except BaseException:
            self._release(seq)
            raise
        future.add_done_callback(lambda _f: self._release(seq))

    def _release(self, seq: int):
        with self._busy_lock:
            self._busy -= 1
            self._running.discard(seq)
            self._finished.notify_all()
        self._slots.release()


def get_server(transport, topic: str, server: str, endpoints: list, *,
               executor: str = "threading", pool_size: int | None = None) -> BoundedRPCServer:
    """An RPC server on (``topic``, ``server``) dispatching to ``endpoints``, at most
    ``pool_size`` requests at a time (default: oslo's ``executor_thread_pool_size``)."""
    target = oslo_messaging.Target(topic=topic, server=server)
    _ensure_messaging_opts(transport.conf)
    return oslo_messaging.get_rpc_server(
        transport, target, endpoints, executor=executor,
        serializer=RequestContextSerializer(),
        access_policy=oslo_messaging.DefaultRPCAccessPolicy,
        server_cls=_server_factory(pool_size))


def _server_factory(pool_size):
    def build(transport, target, dispatcher, executor):
        return BoundedRPCServer(transport, target, dispatcher, executor, pool_size=pool_size)
    return build


def local_error(exc: BaseException) -> BaseException:
    """A blockmgr error rebuilt by oslo.messaging (class ``X_Remote``) as a plain ``X`` with
    the same message and kwargs; anything else is returned unchanged."""
    if not isinstance(exc, exception.BlockmgrError):
        return exc
    cls = type(exc)
    if not cls.__name__.endswith("_Remote"):
        return exc
    original = cls.__mro__[1]
    err = original.__new__(original)
    err.kwargs = dict(exc.kwargs)
    err.msg = exc.msg
    Exception.__init__(err, err.msg)
    return err
