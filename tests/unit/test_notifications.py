"""Notification publisher ids: ``<kind>.<host>``, and ``volume.<host>@<backend>`` through a
backend's view of the node's notifier (:meth:`Notifier.for_host`)."""

from __future__ import annotations

import oslo_messaging
import pytest

from blockmgr import notifications


class _RecordingOsloNotifier:
    """Stands in for ``oslo_messaging.Notifier``: records what it was built with and sent."""

    sent: list[tuple[str, str, str, dict]] = []

    def __init__(self, transport, publisher_id=None, **kwargs):
        self.transport = transport
        self.publisher_id = publisher_id

    def info(self, ctxt, event_type, payload):
        self.sent.append((self.publisher_id, "INFO", event_type, payload))

    def error(self, ctxt, event_type, payload):
        self.sent.append((self.publisher_id, "ERROR", event_type, payload))


@pytest.fixture
def sent(monkeypatch):
    _RecordingOsloNotifier.sent = []
    monkeypatch.setattr(oslo_messaging, "Notifier", _RecordingOsloNotifier)
    return _RecordingOsloNotifier.sent


def test_publisher_is_kind_dot_host(conf, sent):
    transport = object()
    node = notifications.Notifier(conf, "node1", transport=transport)
    node.info(None, "volume.create.start", {"volume_id": "v1"})
    node.error(None, "snapshot.delete.error", {"snapshot_id": "s1"})
    assert [(p, t) for p, _prio, t, _payload in sent] == [
        ("volume.node1", "volume.create.start"), ("snapshot.node1", "snapshot.delete.error")]


def test_a_backend_publishes_as_host_at_backend_on_the_shared_transport(conf, sent):
    transport = object()
    node = notifications.Notifier(conf, "node1", transport=transport)
    lvm = node.for_host("node1@lvm")
    loop = node.for_host("node1@loop")
    lvm.info(None, "volume.create.end", {"volume_id": "v1"})
    loop.error(None, "volume.create.error", {"volume_id": "v2", "reason": "full"})
    node.info(None, "volume.create.start", {"volume_id": "v3"})
    assert [(p, t) for p, _prio, t, _payload in sent] == [
        ("volume.node1@lvm", "volume.create.end"),
        ("volume.node1@loop", "volume.create.error"),
        ("volume.node1", "volume.create.start")]
    assert (lvm.host, loop.host, node.host) == ("node1@lvm", "node1@loop", "node1")
    assert lvm._transport is transport and loop._transport is transport
    assert node.for_host("node1") is node


def test_memory_notifier_views_share_the_events(conf):
    node = notifications.MemoryNotifier("node1")
    backend = node.for_host("node1@lvm")
    backend.info(None, "volume.create.start", {"volume_id": "v1"})
    node.error(None, "group.create.error", {"group_id": "g1"})
    assert node.types() == backend.types() == ["volume.create.start", "group.create.error"]
    assert node.publishers == ["volume.node1@lvm", "group.node1"]
    assert notifications.MemoryNotifier().events == []
