"""Cluster mode building blocks on a real Redis: the jobboard's claims, their renewal and
loss, the tooz lock registry, configuration checks. Every test uses its own cluster name, so
its keys (``blockmgr:<cluster>@...``) never meet another test's."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from blockmgr import cluster as bm_cluster
from blockmgr import exception
from blockmgr.cluster import board as cluster_board
from blockmgr.cluster import claims
from blockmgr.cluster import coordination
from blockmgr.volume import locks as bm_locks
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def cluster_name():
    require_service("redis")
    name = "ut-%s@lb" % uuid.uuid4().hex[:10]
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match="blockmgr:%s*" % name))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def board(cluster_name):
    b = cluster_board.ClusterBoard(REDIS_URL, cluster_name)
    b.connect()
    yield b
    b.close()


def _flow():
    return str(uuid.uuid4())


# --- the board ------------------------------------------------------------------------------

def test_post_claimed_is_one_job_per_flow_and_already_claimed(board):
    flow = _flow()
    assert board.post_claimed(flow, "a", 5, {"resource_id": "v1", "locks": ["v1"]})
    assert board.owner(flow) == "a"
    assert board.details(flow) == {"resource_id": "v1", "locks": ["v1"]}
    # A second post for the same flow changes nothing, and a peer cannot claim it.
    assert not board.post_claimed(flow, "b", 5, {})
    assert board.owner(flow) == "a"
    assert not board.claim(flow, "b", 5)
    assert [j.uuid for j in board.jobs()] == [flow]
    assert board.jobs(only_unclaimed=True) == []


def test_claim_expires_and_a_peer_takes_it(board):
    flow = _flow()
    board.post_claimed(flow, "a", 0.3, {})
    time.sleep(0.5)
    assert board.owner(flow) is None
    assert [j.uuid for j in board.jobs(only_unclaimed=True)] == [flow]
    assert board.claim(flow, "b", 5)
    # The old owner can neither renew nor consume what it lost.
    assert not board.renew(flow, "a", 5)
    assert not board.consume(flow, "a")
    assert board.owner(flow) == "b"
    assert board.consume(flow, "b")
    assert board.jobs() == [] and board.owner(flow) is None


def test_renew_extends_only_the_owners_claim(board):
    flow = _flow()
    board.post_claimed(flow, "a", 0.4, {})
    for _ in range(4):
        time.sleep(0.2)
        assert board.renew(flow, "a", 0.4)
    assert board.owner(flow) == "a"


def test_abandon_frees_the_claim_at_once_and_adopt_posts_unclaimed(board):
    flow = _flow()
    board.post_claimed(flow, "a", 30, {})
    assert board.abandon(flow, "a")
    assert board.claim(flow, "b", 30)
    orphan = _flow()
    assert board.adopt(orphan, {"resource_id": "x"})
    assert not board.adopt(orphan, {})
    assert board.owner(orphan) is None
    assert board.flow_uuids() == {flow, orphan}


def test_unreachable_redis_is_a_cluster_unavailable_error():
    b = cluster_board.ClusterBoard("redis://127.0.0.1:1/0", "nowhere@lb")
    with pytest.raises(exception.ClusterUnavailable) as info:
        b.connect()
    assert "nowhere@lb" in info.value.msg and "redis://127.0.0.1:1/0" in info.value.msg
    with pytest.raises(exception.ClusterUnavailable):
        b.post_claimed(_flow(), "a", 5, {})
    b.close()


# --- the claim keeper -----------------------------------------------------------------------

def test_keeper_renews_while_held_and_reports_a_claim_taken_over(board):
    lost = []
    keeper = claims.ClaimKeeper(board, "a", ttl=0.6, interval=0.1,
                                on_lost=lambda f, why: lost.append((f, why))).start()
    try:
        kept, stolen = _flow(), _flow()
        for flow in (kept, stolen):
            board.post_claimed(flow, "a", 0.6, {})
            keeper.add(flow)
        time.sleep(1.0)          # longer than the TTL: only renewals keep them
        assert board.owner(kept) == "a" and board.owner(stolen) == "a"
        board._client.set(board._keys(stolen)[1], b"b")   # a peer owns it now
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [f for f, _why in lost] == [stolen]
        assert "another worker" in lost[0][1]
        assert keeper.held() == {kept}
    finally:
        keeper.stop()


def test_keeper_gives_a_claim_up_when_redis_is_silent_for_most_of_the_ttl():
    class Silent:
        def renew(self, *_a):
            raise redis.ConnectionError("connection refused")

    now = [0.0]
    lost = []
    keeper = claims.ClaimKeeper(Silent(), "a", ttl=10, interval=1,
                                on_lost=lambda f, why: lost.append((f, why)),
                                clock=lambda: now[0])
    keeper.add("f1")
    now[0] = 8.9
    keeper.renew_all()
    assert lost == [] and keeper.holds("f1")
    now[0] = 9.1
    keeper.renew_all()
    assert [f for f, _ in lost] == ["f1"] and "connection refused" in lost[0][1]
    assert not keeper.holds("f1")


# --- tooz locks -----------------------------------------------------------------------------

@pytest.fixture
def two_registries(cluster_name, conf):
    conf.set_override("jobboard_url", REDIS_URL, group="cluster")
    conf.set_override("claim_ttl", 3, group="cluster")
    url = coordination.coordination_url(conf, cluster_name)
    coords = [coordination.start_coordinator(url, "m%d-%s" % (i, uuid.uuid4().hex[:6]))
              for i in range(2)]
    yield [bm_locks.ToozLockRegistry(c) for c in coords], coords
    for c in coords:
        if c.is_started:
            c.stop()


def test_coordination_url_derives_from_the_jobboard(conf):
    conf.set_override("jobboard_url", "redis://:pw@10.0.0.5:6380/3", group="cluster")
    conf.set_override("claim_ttl", 12, group="cluster")
    url = coordination.coordination_url(conf, "c1@lb")
    assert url.startswith("redis://:pw@10.0.0.5:6380?")
    assert "db=3" in url and "lock_timeout=12" in url and "namespace=blockmgr%3Ac1%40lb" in url
    conf.set_override("coordination_url", "redis://h:1?lock_timeout=7", group="cluster")
    url = coordination.coordination_url(conf, "c1@lb")
    assert "lock_timeout=7" in url and "namespace=" in url and "db=" not in url
    conf.clear_override("coordination_url", group="cluster")
    conf.set_override("jobboard_url", "http://x", group="cluster")
    with pytest.raises(exception.ConfigurationError) as info:
        coordination.coordination_url(conf, "c1@lb")
    assert "jobboard_url" in info.value.msg


def test_tooz_locks_exclude_across_members_and_record_current_names(two_registries):
    (a, b), _coords = two_registries
    order = []
    entered = threading.Event()

    def holder():
        with a.hold(["v2", "v1"]):
            assert a.current_names() == ["v1", "v2"]
            entered.set()
            time.sleep(0.4)
            order.append("a-done")

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(5)
    with b.hold(["v1"]):
        order.append("b-in")
    t.join()
    assert order == ["a-done", "b-in"]
    assert a.current_names() == [] and b.held_names() == set()


def test_a_dead_members_lock_frees_itself_after_lock_timeout(two_registries):
    (_a, b), coords = two_registries
    lock = coords[0].get_lock(b"vol-x")
    assert lock.acquire(blocking=False)
    # Death: no more heartbeats for it and no release (the key lives out lock_timeout).
    coords[0]._acquired_locks.discard(lock)
    coords[0].stop()
    assert not coords[1].get_lock(b"vol-x").acquire(blocking=False)
    with b.hold(["vol-x"]):
        assert b.current_names() == ["vol-x"]


# --- configuration --------------------------------------------------------------------------

def test_cluster_host_names_and_refuses_bad_names(conf):
    from blockmgr.conf import backend

    conf.register_opts(backend.GENERIC_OPTS, group="lb")
    assert bm_cluster.cluster_host(conf, "lb") is None
    conf.set_override("cluster", "east", group="lb")
    assert bm_cluster.cluster_host(conf, "lb") == "east@lb"
    conf.set_override("cluster", "east@x", group="lb")
    with pytest.raises(exception.ConfigurationError) as info:
        bm_cluster.cluster_host(conf, "lb")
    assert "[lb] cluster" in info.value.msg
    assert bm_cluster.cluster_host(conf, "not-a-backend") is None
