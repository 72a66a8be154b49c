"""RPC plumbing on the in-process transport: addressing, context, errors, bounded servers."""

from __future__ import annotations

import threading
import time
import uuid

import oslo_messaging
import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import rpc
from blockmgr import rpc_inprocess

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


@pytest.fixture
def transport(conf):
    url = "inprocess://test-%s" % uuid.uuid4().hex[:8]
    yield rpc.get_transport(conf, url)
    rpc_inprocess.reset()


class ForeignError(Exception):
    """From a module the client does not allow to be rebuilt."""


class Endpoint:
    target = oslo_messaging.Target(version="1.3")

    def __init__(self, name="a"):
        self.name = name
        self.seen = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def whoami(self, ctxt, tag=None):
        assert isinstance(ctxt, bm_context.RequestContext)
        self.seen.append((ctxt.to_dict(), tag))
        return {"server": self.name, "project": ctxt.project_id, "tag": tag}

    def fail(self, ctxt, volume_id):
        raise exception.VolumeNotFound(volume_id=volume_id)

    def fail_plain(self, ctxt):
        raise ForeignError("not a blockmgr error")

    def slow(self, ctxt, tag):
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            self.gate.wait(10)
            self.seen.append((None, tag))
        finally:
            with self._lock:
                self.running -= 1


def _serve(transport, server, endpoint, pool_size=4, topic="t"):
    srv = rpc.get_server(transport, topic, server, [endpoint], pool_size=pool_size)
    srv.start()
    return srv


def _stop(*servers):
    for srv in servers:
        srv.stop()
        srv.wait()


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_backend_of_strips_only_the_pool():
    assert rpc.backend_of("node1@lvm#pool-a") == "node1@lvm"
    assert rpc.backend_of("node1@lvm") == "node1@lvm"
    assert rpc.backend_of(None) is None


def test_call_reaches_the_named_server_with_the_context(transport):
    a, b = Endpoint("a"), Endpoint("b")
    servers = [_serve(transport, "h@a", a), _serve(transport, "h@b", b)]
    try:
        client = rpc.get_client(transport, "t", server="h@b#pool1", version="1.0", timeout=5)
        assert client.call(CTX, "whoami", tag="x") == {"server": "b", "project": "p1",
                                                      "tag": "x"}
        assert a.seen == [] and b.seen[0][0]["request_id"] == CTX.request_id
    finally:
        _stop(*servers)


def test_fanout_cast_reaches_every_server(transport):
    a, b = Endpoint("a"), Endpoint("b")
    servers = [_serve(transport, "h@a", a), _serve(transport, "h@b", b)]
    try:
        rpc.get_client(transport, "t", fanout=True, version="1.0").cast(CTX, "whoami", tag=1)
        assert _wait_for(lambda: len(a.seen) == 1 and len(b.seen) == 1)
    finally:
        _stop(*servers)


def test_dict_context_is_accepted_and_other_contexts_are_refused(transport):
    a = Endpoint()
    srv = _serve(transport, "h@a", a)
    try:
        client = rpc.get_client(transport, "t", server="h@a", timeout=5)
        assert client.call(CTX.to_dict(), "whoami")["project"] == "p1"
        with pytest.raises(exception.InvalidInput):
            client.call(object(), "whoami")
    finally:
        _stop(srv)


def test_blockmgr_errors_come_back_typed_and_clean(transport):
    srv = _serve(transport, "h@a", Endpoint())
    try:
        client = rpc.get_client(transport, "t", server="h@a", timeout=5)
        with pytest.raises(exception.VolumeNotFound) as info:
            client.call(CTX, "fail", volume_id="v-1")
        remote = info.value
        assert remote.kwargs == {"volume_id": "v-1"}
        local = rpc.local_error(remote)
        assert type(local) is exception.VolumeNotFound
        assert str(local) == "Volume v-1 could not be found." and local.kwargs == remote.kwargs
        with pytest.raises(oslo_messaging.RemoteError) as plain:
            client.call(CTX, "fail_plain")
        assert plain.value.exc_type == "ForeignError"
    finally:
        _stop(srv)


def test_local_error_leaves_local_exceptions_alone():
    err = exception.InvalidInput(reason="x")
    assert rpc.local_error(err) is err
    other = ValueError("x")
    assert rpc.local_error(other) is other


def test_non_json_arguments_fail_at_the_caller(transport):
    client = rpc.get_client(transport, "t", server="h@a", timeout=1)
    with pytest.raises((TypeError, ValueError)):
        client.cast(CTX, "whoami", tag=object())


def test_call_without_a_server_times_out(transport):
    client = rpc.get_client(transport, "t", server="nobody@here", timeout=0.2)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.call(CTX, "whoami")


def test_newer_version_than_the_server_is_refused(transport):
    srv = _serve(transport, "h@a", Endpoint())
    try:
        client = rpc.get_client(transport, "t", server="h@a", version="2.0", timeout=5)
        with pytest.raises(oslo_messaging.RemoteError) as info:
            client.call(CTX, "whoami")
        assert info.value.exc_type == "UnsupportedVersion"
    finally:
        _stop(srv)


def test_in_process_calls_do_not_poll(transport):
    srv = _serve(transport, "h@a", Endpoint())
    try:
        client = rpc.get_client(transport, "t", server="h@a", timeout=5)
        client.call(CTX, "whoami")
        started = time.perf_counter()
        for _ in range(50):
            client.call(CTX, "whoami")
        per_call = (time.perf_counter() - started) / 50
        assert per_call < 0.02, "%.1f ms per call: the listener is polling" % (per_call * 1e3)
    finally:
        _stop(srv)


def test_server_runs_at_most_pool_size_requests_and_leaves_the_rest_queued(transport):
    endpoint = Endpoint()
    endpoint.gate.clear()
    srv = _serve(transport, "h@a", endpoint, pool_size=2)
    client = rpc.get_client(transport, "t", server="h@a")
    for tag in range(6):
        client.cast(CTX, "slow", tag=tag)
    assert _wait_for(lambda: endpoint.running == 2)
    time.sleep(0.1)
    assert endpoint.max_running == 2 and srv.busy == 2
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    endpoint.gate.set()
    stopper.join(5)
    srv.wait()
    done = len(endpoint.seen)
    assert 2 <= done < 6, "stopping must not start the queued backlog"
    # the rest is still in the broker and reaches the next server on that name
    successor = Endpoint()
    srv2 = _serve(transport, "h@a", successor)
    try:
        assert _wait_for(lambda: done + len(successor.seen) == 6)
        assert sorted(t for _c, t in endpoint.seen + successor.seen) == list(range(6))
    finally:
        _stop(srv2)


def test_notification_transport_is_in_process_for_an_in_process_url(conf):
    url = "inprocess://notify-%s" % uuid.uuid4().hex[:8]
    transport = rpc.get_notification_transport(conf, url)
    try:
        assert isinstance(transport._driver, rpc_inprocess.InProcessDriver)
        # nobody listens: the notification is dropped, not kept forever
        oslo_messaging.Notifier(transport, driver="messagingv2", topics=["n"],
                                publisher_id="x").info({}, "volume.create.end", {"a": 1})
        assert all(not q for q in transport._driver._broker.queues.values())
    finally:
        rpc_inprocess.reset()


def test_the_broker_prefetch_is_bounded_to_the_worker_threads_unless_set(conf):
    conf.set_override("rpc_worker_threads", 7)
    rpc._bound_prefetch(conf)
    assert conf.oslo_messaging_rabbit.rabbit_qos_prefetch_count == 7
    conf.set_override("rabbit_qos_prefetch_count", 3, group="oslo_messaging_rabbit")
    rpc._bound_prefetch(conf)
    assert conf.oslo_messaging_rabbit.rabbit_qos_prefetch_count == 3
