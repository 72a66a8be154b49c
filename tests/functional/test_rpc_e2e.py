"""End to end over real RabbitMQ and a real server database: a ``blockmgr-scheduler`` and two
``blockmgr-volume`` hosts run as separate processes (``tests/functional/daemons.py``); the test
process is the API service, driving them through :class:`blockmgr.api.Client`.

Host ``a`` is the emptier backend: host ``b`` starts with a 2 TiB sparse volume-like file in its
directory, so it reports that much more provisioned capacity and the capacity weigher prefers
``a``. Both run the loopback
driver in a directory of their own, through ``FlakyLoopbackDriver``
(``tests/functional/e2e_driver.py``) whose creates the test can make fail.

Every test ends with the quota checked against the real tables (``QuotaEngine.check()``) and
no reservation left pending.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
import sqlalchemy as sa

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import rpc
from blockmgr import services
from blockmgr import states
from blockmgr.db import models
from tests.conftest import require_service
from tests.functional.daemons import Cluster
from tests.functional.daemons import private_vhost
from tests.functional.daemons import rabbitmqctl
from tests.functional.daemons import wait_for

pytestmark = [pytest.mark.functional]

V, S, G, GS = (states.VolumeStatus, states.SnapshotStatus, states.GroupStatus,
               states.GroupSnapshotStatus)
PROJECT = "p-e2e"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u-e2e")
DBS = pytest.mark.parametrize("db_backend", ["mysql", "postgresql"])

#: Statuses a resource may be left in once the system is quiet.
SETTLED_VOLUME = {V.AVAILABLE, V.ERROR, V.ERROR_DELETING, V.ERROR_MANAGING,
                  V.ERROR_EXTENDING, V.ERROR_UNMANAGING}
GiB = 1024 ** 3


class Harness:
    """A started cluster plus the API side (client library) in this process."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.db = cluster.db
        self.conf = cluster.client_conf()
        self.transport = rpc.get_transport(self.conf)
        self.quota = bm_quota.QuotaEngine(self.db, self.conf)
        self.client = api.Client(self.conf, self.db, self.quota, transport=self.transport)
        for resource in ("volumes", "gigabytes", "snapshots"):
            self.quota.set_limit(PROJECT, resource, 1000)

    def close(self):
        self.transport.cleanup()

    # --- reading state ------------------------------------------------------------------

    def row(self, model, rid):
        with self.db.reader() as session:
            row = session.get(model, rid)
            if row is not None:
                session.expunge(row)
            return row

    def wait_status(self, model, rid, wanted, timeout=30.0):
        """Wait until the row is in one of ``wanted`` (a status or a set; None: deleted)."""
        wanted = wanted if isinstance(wanted, (set, frozenset)) else {wanted}

        def current():
            row = self.row(model, rid)
            return None if row is None or row.deleted else row.status

        got = wait_for(lambda: current() in wanted, timeout, 0.05)
        assert got, "%s %s is %s, expected %s; reason %r\n%s" % (
            model.__tablename__, rid, current(), wanted,
            getattr(self.row(model, rid), "status_reason", None), self.cluster.logs())
        return self.row(model, rid)

    def live(self, model):
        with self.db.reader() as session:
            rows = list(session.scalars(sa.select(model).where(model.deleted.is_(False))))
            for row in rows:
                session.expunge(row)
            return rows

    def pending_reservations(self) -> list:
        with self.db.reader() as session:
            return list(session.scalars(sa.select(models.Reservation.uuid).where(
                models.Reservation.deleted.is_(False))))

    def usage(self) -> dict:
        return {r: u["in_use"] for r, u in self.quota.get_usages(PROJECT).items()}

    def assert_quota_exact(self):
        assert self.pending_reservations() == []
        assert self.quota.check() == []
        assert all(u["reserved"] == 0 for u in self.quota.get_usages(PROJECT).values())

    def destroy_all(self):
        """Delete every live resource through the client library, wait until gone."""
        for gsnap in self.live(models.GroupSnapshot):
            self.client.groups.delete_group_snapshot(CTX, gsnap.id)
            self.wait_status(models.GroupSnapshot, gsnap.id, None)
        for group in self.live(models.Group):
            self.client.groups.delete_group(CTX, group.id, delete_volumes=True)
            self.wait_status(models.Group, group.id, None)
        for snap in self.live(models.Snapshot):
            self.client.snapshots.delete_snapshot(CTX, snap.id)
            self.wait_status(models.Snapshot, snap.id, None)
        for vol in self.live(models.Volume):
            self.client.volumes.delete_volume(CTX, vol.id)
            self.wait_status(models.Volume, vol.id, None)


@pytest.fixture(scope="module")
def vhost_url():
    """One private vhost for this module's clusters (see ``daemons`` for why a vhost)."""
    require_service("rabbitmq")
    with private_vhost() as url:
        yield url


def start_cluster(tmp_path, db_url, url, **kwargs) -> Cluster:
    kwargs.setdefault("hosts", {"a": {}, "b": {}})
    return Cluster(tmp_path, db_url, rabbit_url=url, **kwargs)


@pytest.fixture
def harness(db_backend, db_url, tmp_path, vhost_url):
    with start_cluster(tmp_path, db_url, vhost_url, prefill_gib={"b": 2048}) as c:
        c.start()
        h = Harness(c)
        try:
            yield h
        finally:
            h.close()


def files(path) -> set[str]:
    return set(os.listdir(path)) if path.exists() else set()


# --- 1-3: placement, reschedule, all backends failing ------------------------------------

@DBS
def test_placement_reschedule_and_error_after_max_attempts(harness):
    h, c = harness, harness.cluster
    a, b = c.backend("a"), c.backend("b")

    # 1. placed on the emptier backend, created there
    vol = h.client.volumes.create_volume(CTX, 2, name="first")
    row = h.wait_status(models.Volume, vol["id"], V.AVAILABLE)
    assert rpc.backend_of(row.host) == a, row.host
    assert "volume-%s" % vol["id"] in files(c.directory("a"))

    # 2. the emptier backend's driver fails the create: rescheduled, available on b
    c.fail_flag("a").touch()
    vol2 = h.client.volumes.create_volume(CTX, 1, name="rescheduled")
    row = h.wait_status(models.Volume, vol2["id"], V.AVAILABLE)
    assert rpc.backend_of(row.host) == b, row.host
    assert "volume-%s" % vol2["id"] in files(c.directory("b"))
    assert "volume-%s" % vol2["id"] not in files(c.directory("a"))
    assert "test flag" in c.processes["a"].log_text(60000)

    # 3. every backend fails: error once the attempts are used up, quota still consistent
    c.fail_flag("b").touch()
    vol3 = h.client.volumes.create_volume(CTX, 3, name="doomed")
    row = h.wait_status(models.Volume, vol3["id"], V.ERROR)
    assert row.host is None
    # The reason leads with the first failure's cause, then why nothing else fits.
    assert "the first attempt failed on %s" % a in row.status_reason, row.status_reason
    assert "VolumeBackendAPIException" in row.status_reason, row.status_reason
    assert not any(vol3["id"] in name for d in "ab" for name in files(c.directory(d)))
    assert h.usage()["volumes"] == 3 and h.usage()["gigabytes"] == 6
    h.assert_quota_exact()

    c.fail_flag("a").unlink()
    c.fail_flag("b").unlink()
    h.destroy_all()
    assert h.usage()["volumes"] == 0 and h.usage()["gigabytes"] == 0
    h.assert_quota_exact()


# --- 4-5: manage, snapshots, groups over RPC; connection info; everything deleted ---------

@DBS
def test_manage_snapshots_groups_and_connection_over_rpc(harness):
    h, c = harness, harness.cluster
    a = c.backend("a")
    legacy, legacy_snap = c.directory("a") / "legacy-disk.img", c.directory("a") / "old-snap"
    for path, size in ((legacy, GiB + 1), (legacy_snap, GiB // 2)):
        with open(path, "wb") as f:
            f.truncate(size)

    # the foreign file is listed as manageable (a call to the worker), then managed
    listed = h.client.volumes.get_manageable_volumes(CTX, a)
    entry = next(e for e in listed if e["reference"] == {"source-name": "legacy-disk.img"})
    assert entry["safe_to_manage"] and entry["size"] == 2
    vol = h.client.volumes.manage_existing(CTX, a, {"source-name": "legacy-disk.img"},
                                           name="legacy")
    row = h.wait_status(models.Volume, vol["id"], V.AVAILABLE)
    assert row.size == 2 and rpc.backend_of(row.host) == a
    assert not legacy.exists() and (c.directory("a") / ("volume-%s" % vol["id"])).exists()

    # manage_existing_snapshot routed through the scheduler to the volume's backend
    msnap = h.client.snapshots.manage_existing_snapshot(CTX, vol["id"],
                                                        {"source-name": "old-snap"})
    h.wait_status(models.Snapshot, msnap["id"], S.AVAILABLE)
    assert (c.directory("a") / ("snapshot-%s" % msnap["id"])).exists()

    # snapshot create / delete
    snap = h.client.snapshots.create_snapshot(CTX, vol["id"], name="s1")
    h.wait_status(models.Snapshot, snap["id"], S.AVAILABLE)
    assert (c.directory("a") / ("snapshot-%s" % snap["id"])).exists()
    h.client.snapshots.delete_snapshot(CTX, snap["id"])
    h.wait_status(models.Snapshot, snap["id"], None)
    assert not (c.directory("a") / ("snapshot-%s" % snap["id"])).exists()

    # 5. connection info from the worker (loopback_attach = file: the file's path)
    info = h.client.volumes.initialize_connection(CTX, vol["id"], {"host": "e2e-client"})
    assert info["driver_volume_type"] == "local"
    assert info["data"]["device_path"] == str(c.directory("a") / ("volume-%s" % vol["id"]))
    assert info["data"]["volume_id"] == vol["id"] and info["data"]["access_mode"] == "rw"
    assert os.path.getsize(info["data"]["device_path"]) == GiB + 1
    h.client.volumes.terminate_connection(CTX, vol["id"], {"host": "e2e-client"})
    with pytest.raises(exception.VolumeNotFound):   # a call's error crosses RPC typed
        h.client.volumes.initialize_connection(
            bm_context.RequestContext(project_id="another", user_id="u"), vol["id"], {})

    # consistency group, two members, group snapshot, group from the group snapshot
    group = h.client.groups.create_group(CTX, name="cg")
    grow = h.wait_status(models.Group, group["id"], G.AVAILABLE)
    members = [h.client.volumes.create_volume(CTX, 1, group_id=group["id"])["id"]
               for _ in range(2)]
    for vid in members:
        assert h.wait_status(models.Volume, vid, V.AVAILABLE).host.startswith(grow.host)
    gsnap = h.client.groups.create_group_snapshot(CTX, group["id"], name="cgsnap")
    h.wait_status(models.GroupSnapshot, gsnap["id"], GS.AVAILABLE, timeout=60)
    assert {s.status for s in h.live(models.Snapshot) if s.group_snapshot_id} == {S.AVAILABLE}
    clone = h.client.groups.create_group_from_src(CTX, group_snapshot_id=gsnap["id"])
    h.wait_status(models.Group, clone["id"], G.AVAILABLE, timeout=60)
    clones = [v for v in h.live(models.Volume) if v.group_id == clone["id"]]
    assert len(clones) == 2 and {v.status for v in clones} == {V.AVAILABLE}
    assert h.usage() == {**h.usage(), "volumes": 5, "groups": 2, "snapshots": 3}
    h.assert_quota_exact()

    # delete everything through the API: usage back to 0, directories back to what was
    # there before (nothing but the filler on b)
    h.destroy_all()
    assert all(v == 0 for v in h.usage().values()), h.usage()
    h.assert_quota_exact()
    assert files(c.directory("a")) == set()
    assert files(c.directory("b")) == {"volume-%s" % ("0" * 8 + "-0000-0000-0000-" + "0" * 12)}


# --- 6: kill -9 a worker under load -------------------------------------------------------

@pytest.mark.slow
@DBS
def test_worker_killed_under_load_then_restarted_settles_with_exact_quota(
        db_backend, db_url, tmp_path, vhost_url):
    # every create takes 0.2 s and a backend runs 4 at once: the burst is in flight
    slow = {"e2e_create_delay": 0.2}
    with start_cluster(tmp_path, db_url, vhost_url, hosts={"a": slow, "b": slow},
                       default_opts={"rpc_worker_threads": 4}) as c:
        c.start()
        h = Harness(c)
        try:
            ids = [h.client.volumes.create_volume(CTX, 1, name="load-%d" % i)["id"]
                   for i in range(30)]

            def on_a(status):
                return [v for v in h.live(models.Volume)
                        if v.status == status and rpc.backend_of(v.host) == c.backend("a")]

            # kill a while it has created some and has more to go
            assert wait_for(lambda: len(on_a(V.AVAILABLE)) >= 2, 60), c.logs()
            assert on_a(V.CREATING), "nothing left in flight on a: the test proves nothing"
            killed_at = models.utcnow()
            c.processes["a"].kill()
            in_flight = {v.id for v in on_a(V.CREATING)}

            c.start_volume("a")
            c.wait_up(["a"], after=killed_at)
            final = {vid: h.wait_status(models.Volume, vid, SETTLED_VOLUME, timeout=90).status
                     for vid in ids}
            settled = {s: sorted(v for v in final if final[v] == s) for s in set(final.values())}
            print("\n[%s] after kill -9 with %d in flight on a: %s; errors: %s" % (
                db_backend, len(in_flight), {s: len(v) for s, v in settled.items()},
                [h.row(models.Volume, v).status_reason for v in settled.get(V.ERROR, [])]))
            assert set(final.values()) <= {V.AVAILABLE, V.ERROR}
            # Only requests that were on a can have failed, and only those a's threads had
            # taken (rpc_worker_threads = 4; oslo.messaging acknowledges a message when a
            # thread starts on it): a flow running at the kill is resumed or reverted, a
            # request taken before its flow was persisted is lost and its row goes to error.
            # Requests still queued for a are served after the restart: recovery leaves
            # their rows `creating` until the queue ahead of the start has been served
            # (blockmgr/volume/drain.py). Rows that failed are compared by the host they
            # were on (the scheduler may place on a between the kill and its suspicion).
            errors = settled.get(V.ERROR, [])
            failed_hosts = {rpc.backend_of(h.row(models.Volume, vid).host or "")
                            for vid in errors}
            assert failed_hosts <= {c.backend("a")}, (settled, in_flight, c.logs())
            assert len(errors) <= 4, (
                [(v, h.row(models.Volume, v).status_reason) for v in errors], c.logs())
            for vid in settled.get(V.AVAILABLE, []):
                host = h.row(models.Volume, vid).host
                name = "a" if rpc.backend_of(host) == c.backend("a") else "b"
                assert (c.directory(name) / ("volume-%s" % vid)).exists()
            assert h.usage()["volumes"] == 30 and h.usage()["gigabytes"] == 30
            h.assert_quota_exact()
            h.destroy_all()
            assert h.usage()["volumes"] == 0 and h.usage()["gigabytes"] == 0
            h.assert_quota_exact()
        finally:
            h.close()


# --- 6b: kill -9 a worker that never comes back ------------------------------------------

BURST = 12   # creates for a (0.5 s each, one at a time): some are left when it is killed


@pytest.mark.slow
@DBS
def test_worker_killed_for_good_new_creates_avoid_it_and_its_creates_end_in_error(
        db_backend, db_url, tmp_path, vhost_url):
    """a (the emptier backend) takes a burst of creates slowly, one at a time, and is
    killed. New creates go to b -- a is suspected (heartbeats stopped) before it is
    down -- and the scheduler moves a's remaining `creating` rows (queued for it, or in
    its flow) to error once a has been down for stale_create_timeout. Nothing stays
    `creating`; quota stays exact."""
    with start_cluster(tmp_path, db_url, vhost_url, prefill_gib={"b": 2048},
                       hosts={"a": {"e2e_create_delay": 0.5}, "b": {}},
                       default_opts={"rpc_worker_threads": 1},
                       scheduler_opts={"stale_create_timeout": 3}) as c:
        c.start()
        h = Harness(c)
        try:
            ids = [h.client.volumes.create_volume(CTX, 1, name="burst-%d" % i)["id"]
                   for i in range(BURST)]
            on_a = lambda: [v for v in h.live(models.Volume)
                            if rpc.backend_of(v.host) == c.backend("a")]
            assert wait_for(lambda: any(v.status == V.AVAILABLE for v in on_a()), 60), \
                c.logs()
            # The scheduler suspects a backend only once it has measured its heartbeat
            # period (liveness.py): a must have beaten a few times before it dies.
            a_row = lambda: c.services()[(services.VOLUME_BINARY, c.backend("a"))]
            assert wait_for(lambda: a_row().report_count >= 4, 30), c.logs()
            c.processes["a"].kill()
            left = {v.id for v in on_a() if v.status == V.CREATING}
            assert left, "a finished everything before the kill: the test proves nothing"

            # a's heartbeats stop; after 4 missed ones (daemons.py), well before
            # service_down_time (10 s), it is suspect
            last = c.services()[(services.VOLUME_BINARY, c.backend("a"))].heartbeat_at
            assert wait_for(lambda: models.utcnow() - last > dt.timedelta(seconds=6.5), 30)
            still_up = c.is_up("a")
            new = h.client.volumes.create_volume(CTX, 1, name="after-kill")["id"]
            row = h.wait_status(models.Volume, new, V.AVAILABLE, timeout=60)
            assert rpc.backend_of(row.host) == c.backend("b"), row.host
            print("\n[%s] a killed with %d creating; the next create went to b while a "
                  "still counted as up: %s" % (db_backend, len(left), still_up))

            for vid in left:
                row = h.wait_status(models.Volume, vid, {V.ERROR}, timeout=90)
                assert "has been down" in row.status_reason, row.status_reason
            assert not [v for v in h.live(models.Volume) if v.status == V.CREATING]
            assert h.usage()["volumes"] == BURST + 1
            assert h.usage()["gigabytes"] == BURST + 1
            h.assert_quota_exact()
        finally:
            h.close()


# --- 7: the broker restarted mid-run ------------------------------------------------------

def _broker_port_open() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
@DBS
def test_broker_restart_workers_reconnect_and_nothing_is_left_stuck(
        db_backend, db_url, tmp_path, vhost_url):
    if "BLOCKMGR_TEST_RABBIT_URL" in os.environ:
        pytest.skip("restarts the local broker with rabbitmqctl; a remote one is configured")
    with start_cluster(tmp_path, db_url, vhost_url) as c:
        c.start()
        h = Harness(c)
        try:
            before = h.client.volumes.create_volume(CTX, 1, name="before")
            h.wait_status(models.Volume, before["id"], V.AVAILABLE)

            down = []
            rabbitmqctl("stop_app")
            try:
                assert wait_for(lambda: not _broker_port_open(), 30)
                # casts give up fast ([DEFAULT] api_rpc_retries), but the requests are
                # accepted all the same: they are rows of the ledger, pending
                started = time.monotonic()
                down.append(h.client.volumes.create_volume(CTX, 2, name="while-down"))
                down.append(h.client.snapshots.create_snapshot(CTX, before["id"],
                                                               name="while-down"))
                elapsed = time.monotonic() - started
                assert {r["status"] for r in down} == {"creating"}
                print("\n[%s] two requests accepted with the broker down in %.1f s"
                      % (db_backend, elapsed))
            finally:
                rabbitmqctl("start_app")
                assert wait_for(_broker_port_open, 60), "RabbitMQ did not come back"
            # The queues survived the restart (durable by default, blockmgr/conf/rpc.py):
            # a cast made before the daemons re-declared them is kept, not dropped.
            vhost = vhost_url.rsplit("/", 1)[1]
            listed = rabbitmqctl("list_queues", "-p", vhost, "name", "durable").stdout
            durable = dict(line.split("\t") for line in listed.splitlines()
                           if line.count("\t") == 1)
            for queue in ("blockmgr-scheduler", "blockmgr-volume.%s" % c.backend("a"),
                          "blockmgr-volume.%s" % c.backend("b")):
                assert durable.get(queue) == "true", (queue, listed)
            # what was accepted while the broker was down runs once it is back (sweeps)
            h.wait_status(models.Volume, down[0]["id"], V.AVAILABLE, timeout=90)
            h.wait_status(models.Snapshot, down[1]["id"], S.AVAILABLE, timeout=90)

            # the daemons reconnect by themselves: new requests are served
            after = [h.client.volumes.create_volume(CTX, 1, name="after-%d" % i)["id"]
                     for i in range(4)]
            for vid in after:
                h.wait_status(models.Volume, vid, V.AVAILABLE, timeout=90)
            snap = h.client.snapshots.create_snapshot(CTX, after[0])
            h.wait_status(models.Snapshot, snap["id"], S.AVAILABLE)
            used = {rpc.backend_of(h.row(models.Volume, v).host) for v in after}
            assert used == {c.backend("a"), c.backend("b")}, used   # both workers are back

            # nothing stuck in a transitional status, quota exact, everything deletable
            assert not [v for v in h.live(models.Volume) if v.status not in SETTLED_VOLUME]
            h.assert_quota_exact()
            h.destroy_all()
            assert all(v == 0 for v in h.usage().values()), h.usage()
            h.assert_quota_exact()
        finally:
            h.close()
