"""An oslo.messaging transport whose broker lives in this process (``inprocess://<name>``).

For the all-in-one mode and unit tests. Unlike oslo.messaging's ``fake://`` driver, whose
listeners poll with a fixed 50 ms sleep, a listener here waits on a condition variable and
wakes the moment a message arrives.

It behaves like the AMQP driver where blockmgr's code can tell the difference:

* every message and context is JSON-encoded and decoded (a non-JSON argument fails at the
  caller, as it would on RabbitMQ);
* a failed ``call`` re-raises through oslo's remote-exception serialization, so exceptions
  from modules in ``allowed_remote_exmods`` come back rebuilt and others as ``RemoteError``;
* ``server=`` targets are per-server queues, topic-only targets are shared (each message goes
  to one listener), fanout reaches every server of the topic; a message to a queue nobody
  listens on waits there until someone does (a call times out after its timeout);
* messages not yet taken when a listener stops stay queued for the next listener.

Brokers are named by the URL's host/path part and shared by every transport of this process
that uses the same URL; :func:`reset` drops them all (tests).
"""

from __future__ import annotations

import collections
import queue
import threading
import time

import oslo_messaging
from oslo_messaging import transport as msg_transport
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as driver_common
from oslo_serialization import jsonutils

_BROKERS: dict[str, "Broker"] = {}
_BROKERS_LOCK = threading.Lock()


class Broker:
    """Queues keyed ``(exchange, topic, server)`` (server None: the shared topic queue)."""

    def __init__(self, name: str):
        self.name = name
        self.cond = threading.Condition()
        self.queues: dict[tuple, collections.deque] = {}

    def _queue(self, key) -> collections.deque:
        return self.queues.setdefault(key, collections.deque())

    def deliver(self, exchange, topic, server, fanout, item, *, only_if_listened=False):
        with self.cond:
            if fanout:
                keys = [k for k in self.queues if k[0] == exchange and k[1] == topic
                        and k[2] is not None]
            else:
                key = (exchange, topic, server)
                keys = [key] if (key in self.queues or not only_if_listened) else []
            for key in keys:
                self._queue(key).append(item)
            if keys:
                self.cond.notify_all()

    def declare(self, keys) -> None:
        with self.cond:
            for key in keys:
                self._queue(key)

    def take(self, keys, stopped: threading.Event, timeout: float | None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not stopped.is_set():
                for key in keys:
                    q = self.queues.get(key)
                    if q:
                        return q.popleft()
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self.cond.wait(wait)
            return None

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


def _broker(name: str) -> Broker:
    with _BROKERS_LOCK:
        broker = _BROKERS.get(name)
        if broker is None:
            broker = _BROKERS[name] = Broker(name)
        return broker


def reset() -> None:
    """Forget every broker and the messages they hold."""
    with _BROKERS_LOCK:
        _BROKERS.clear()


class _Incoming(base.RpcIncomingMessage):
    def __init__(self, ctxt, message, reply_q):
        super().__init__(ctxt, message)
        self._reply_q = reply_q

    def reply(self, reply=None, failure=None):
        if self._reply_q is None:
            return
        if failure:
            self._reply_q.put((None, driver_common.serialize_remote_exception(failure)))
        else:
            self._reply_q.put((jsonutils.loads(jsonutils.dumps(reply)), None))

    def acknowledge(self):
        """Taking a message off the queue is the acknowledgement."""

    def requeue(self):
        """Not supported (oslo's AMQP driver does not requeue RPC messages either)."""

    def heartbeat(self):
        """Calls wait for their full timeout; nothing to keep alive."""


class _Listener(base.PollStyleListener):
    def __init__(self, broker: Broker, keys):
        super().__init__()
        self._broker = broker
        self._keys = keys
        self._stopped = threading.Event()
        broker.declare(keys)

    @base.batch_poll_helper
    def poll(self, timeout=None):
        item = self._broker.take(self._keys, self._stopped, timeout)
        if item is None:
            return None
        ctxt, message, reply_q = item
        return _Incoming(ctxt, message, reply_q)

    def stop(self):
        self._stopped.set()
        self._broker.wake()


class InProcessDriver(base.BaseDriver):
    def __init__(self, conf, url, default_exchange=None, allowed_remote_exmods=None):
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        self._broker = _broker(_broker_name(url))

    def require_features(self, requeue=False):
        """Everything blockmgr uses is supported."""

    def _exchange(self, target):
        return target.exchange or self._default_exchange

    def send(self, target, ctxt, message, wait_for_reply=None, timeout=None,
             call_monitor_timeout=None, retry=None, transport_options=None):
        item_ctxt = jsonutils.loads(jsonutils.dumps(ctxt))
        item_msg = jsonutils.loads(jsonutils.dumps(message))
        reply_q = queue.Queue() if wait_for_reply else None
        self._broker.deliver(self._exchange(target), target.topic, target.server,
                             target.fanout, (item_ctxt, item_msg, reply_q))
        if not wait_for_reply:
            return None
        try:
            result, failure = reply_q.get(timeout=timeout)
        except queue.Empty:
            raise oslo_messaging.MessagingTimeout(
                "No reply on topic %s within %ss" % (target.topic, timeout)) from None
        if failure is not None:
            raise driver_common.deserialize_remote_exception(failure,
                                                             self._allowed_remote_exmods)
        return result

    def send_notification(self, target, ctxt, message, version, retry=None):
        """Delivered only to topics someone listens on; otherwise dropped (a process-local
        broker has nobody to keep them for)."""
        self._broker.deliver(self._exchange(target), target.topic, None, False,
                             (jsonutils.loads(jsonutils.dumps(ctxt)),
                              jsonutils.loads(jsonutils.dumps(message)), None),
                             only_if_listened=True)

    def listen(self, target, batch_size, batch_timeout):
        exchange = self._exchange(target)
        keys = [(exchange, target.topic, target.server), (exchange, target.topic, None)]
        return base.PollStyleListenerAdapter(_Listener(self._broker, keys), batch_size,
                                             batch_timeout)

    def listen_for_notifications(self, targets_and_priorities, pool, batch_size,
                                 batch_timeout):
        keys = [(self._exchange(target), "%s.%s" % (target.topic, priority), None)
                for target, priority in targets_and_priorities]
        return base.PollStyleListenerAdapter(_Listener(self._broker, keys), batch_size,
                                             batch_timeout)

    def cleanup(self):
        """The broker outlives a transport; :func:`reset` drops it."""


def _broker_name(url) -> str:
    hosts = ",".join(h.hostname or "" for h in (url.hosts or []))
    return "%s/%s" % (hosts, url.virtual_host or "")


def get_transport(conf, url: str, allowed_remote_exmods, notifications: bool = False):
    parsed = msg_transport.TransportURL.parse(conf, url)
    driver = InProcessDriver(conf, parsed, default_exchange=conf.control_exchange,
                             allowed_remote_exmods=list(allowed_remote_exmods))
    cls = msg_transport.NotificationTransport if notifications else msg_transport.RPCTransport
    return cls(driver)


__all__ = ["Broker", "InProcessDriver", "get_transport", "reset"]
