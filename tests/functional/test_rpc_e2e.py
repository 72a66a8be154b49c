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

import os
import time

import pytest
import sqlalchemy as sa

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import rpc
from blockmgr import states
from blockmgr.db import models
from tests.conftest import require_service
from tests.functional.daemons import Cluster
from tests.functional.daemons import private_vhost
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
    assert "scheduler_max_attempts" in row.status_reason or "no pool" in row.status_reason, \
        row.status_reason
    assert not any(vol3["id"] in name for d in "ab" for name in files(c.directory(d)))
    assert h.usage()["volumes"] == 3 and h.usage()["gigabytes"] == 6
    h.assert_quota_exact()

    c.fail_flag("a").unlink()
    c.fail_flag("b").unlink()
    h.destroy_all()
    assert h.usage()["volumes"] == 0 and h.usage()["gigabytes"] == 0
    h.assert_quota_exact()
