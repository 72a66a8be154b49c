"""Usage notifications through oslo.messaging's Notifier; a failed notify never fails an op.

Event types are ``<kind>.<action>.<start|end|error>`` (``volume.create.start``,
``volume.manage_existing.end``, ``snapshot.manage_existing_snapshot.error``, ...), publisher
``<kind>.<host>``. A volume worker publishes as its backend, ``volume.<host>@<backend>``
(Cinder's publisher for a volume service): the node's one :class:`Notifier` gives each
backend a view of itself with :meth:`Notifier.for_host`, sharing its transport. ``.error`` events are blockmgr's addition (Cinder has none): a flow sends
one when it reverts, with the reason.

The driver (``messagingv2``, ``log``, ``noop``, ...) and transport come from oslo.messaging's
``[oslo_messaging_notifications]`` options on the config object given. oslo.messaging
registers its tracing options only on the global ``cfg.CONF`` and then reads them from the
config it was handed, which fails with ``NoSuchOptError: oslo_messaging_tracing`` on a private
``ConfigOpts``; :func:`_ensure_tracing_opts` registers them on the given config first.
:class:`MemoryNotifier` keeps events in a list (the all-in-one mode without a broker, tests).
"""

from __future__ import annotations

import logging
import threading

LOG = logging.getLogger(__name__)


def _ensure_tracing_opts(conf) -> None:
    from oslo_messaging._tracing import client as tracing

    if "oslo_messaging_tracing" not in conf:
        conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")


def _payload_context(context) -> dict:
    if context is None:
        return {}
    return context.to_dict() if hasattr(context, "to_dict") else dict(context)


class Notifier:
    """Sends events through an oslo.messaging Notifier, logging (never raising) failures."""

    def __init__(self, conf, host: str, *, transport=None):
        import oslo_messaging

        _ensure_tracing_opts(conf)
        self._transport = transport or oslo_messaging.get_notification_transport(conf)
        self._conf = conf
        self._host = host
        self._notifiers: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The ``<host>`` of the publisher ids ``<kind>.<host>``."""
        return self._host

    def for_host(self, host: str) -> "Notifier":
        """The same notifier publishing as ``<kind>.<host>`` (e.g. a volume backend's
        ``node1@lvm``); it shares this one's transport, so no connection is added."""
        if host == self._host:
            return self
        view = object.__new__(Notifier)
        view._transport, view._conf, view._host = self._transport, self._conf, host
        view._notifiers = {}
        view._lock = threading.Lock()
        return view

    def _for(self, event_type: str):
        kind = event_type.partition(".")[0]
        with self._lock:
            notifier = self._notifiers.get(kind)
            if notifier is None:
                import oslo_messaging

                notifier = oslo_messaging.Notifier(
                    self._transport, publisher_id="%s.%s" % (kind, self._host))
                self._notifiers[kind] = notifier
            return notifier

    def info(self, context, event_type: str, payload: dict) -> None:
        self._send("info", context, event_type, payload)

    def error(self, context, event_type: str, payload: dict) -> None:
        self._send("error", context, event_type, payload)

    def _send(self, priority, context, event_type, payload) -> None:
        try:
            getattr(self._for(event_type), priority)(_payload_context(context), event_type,
                                                     dict(payload))
        except Exception:
            LOG.warning("Failed to send notification %s", event_type, exc_info=True)


class MemoryNotifier:
    """Keeps ``(priority, event_type, payload)`` tuples in :attr:`events` and, in the same
    order, the publisher id of each in :attr:`publishers`."""

    def __init__(self, host: str = "memory"):
        self.host = host
        self.events: list[tuple[str, str, dict]] = []
        self.publishers: list[str] = []
        self._lock = threading.Lock()

    def for_host(self, host: str) -> "MemoryNotifier":
        """A view publishing as ``<kind>.<host>`` into the same :attr:`events`."""
        if host == self.host:
            return self
        view = object.__new__(MemoryNotifier)
        view.host, view.events, view.publishers, view._lock = (
            host, self.events, self.publishers, self._lock)
        return view

    def info(self, context, event_type: str, payload: dict) -> None:
        self._record("INFO", event_type, payload)

    def error(self, context, event_type: str, payload: dict) -> None:
        self._record("ERROR", event_type, payload)

    def _record(self, priority: str, event_type: str, payload: dict) -> None:
        with self._lock:
            self.events.append((priority, event_type, dict(payload)))
            self.publishers.append("%s.%s" % (event_type.partition(".")[0], self.host))

    def types(self) -> list[str]:
        return [event_type for _p, event_type, _payload in self.events]
