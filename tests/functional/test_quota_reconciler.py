"""The quota reconciler on SQLite, MariaDB and PostgreSQL, against real flows.

The safety rule under test: a reservation owned by a flow that is running, or unfinished in
its logbook (resumable after a crash), is never released -- while reservations of flows that
are finished or gone are, and usage that drifted is put right.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import metrics
from blockmgr import quota_reconciler
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import engine as flow_engine
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume.manager import VolumeManager

GiB = 1024 ** 3
PROJECT = "p-reconcile"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")


class Crash(BaseException):
    """Tears a flow down mid-task, leaving it unfinished in its logbook (like kill -9)."""


def _manager(conf, database, driver):
    return VolumeManager(conf, "fake", db=database, driver=driver,
                         quota=QuotaEngine(database, conf), notifier=MemoryNotifier(),
                         reschedule=lambda *a: None)


@pytest.fixture
def env(database, conf):
    conf.set_override("host", "node1")
    conf.set_override("connection", database.url, group="database")
    driver = FakeDriver(None, "fake", host="node1@fake")
    manager = _manager(conf, database, driver)
    manager.init_host()
    # The reconciler reads the logbooks through a backend of its own, as a scheduler does.
    persistence = flow_engine.open_persistence(conf, database)
    own_metrics = metrics.Metrics(process_collectors=False)
    reconciler = quota_reconciler.QuotaReconciler(QuotaEngine(database, conf), database,
                                                  persistence, metrics=own_metrics)
    yield manager, reconciler
    persistence.close()


def _managing(manager):
    with manager.db.writer() as session:
        return repository.create(session, models.Volume, status="managing", size=0,
                                 host=manager.host + "#pool", project_id=PROJECT).id


def _live_rows(manager):
    with manager.db.reader() as session:
        return [tuple(r) for r in session.execute(
            sa.select(models.Reservation.owner, models.Reservation.resource,
                      models.Reservation.delta)
            .where(models.Reservation.deleted.is_(False)))]


def test_running_and_resumable_flows_keep_their_reservations(env):
    manager, reconciler = env
    # A finished-and-pruned ("gone") owner, and usage that drifted.
    manager.quota.reserve(PROJECT, owner="gone-flow", gigabytes=7)
    manager.quota.commit(manager.quota.reserve(PROJECT, snapshots=3))   # no snapshot exists

    # 1. A flow that crashed mid-way: unfinished in its logbook, so resumable.
    crashed = _managing(manager)
    ref = manager.driver.seed_foreign_volume(2 * GiB, name="lv-crashed")
    manager.driver.inject_failure("manage_existing", Crash(), times=1)
    with pytest.raises(Crash):
        manager.manage_existing(CTX, crashed, ref)
    [crashed_flow] = manager.runner.backend.unfinished_flow_uuids()

    # 2. A flow running right now, held inside its driver call.
    inside, release = threading.Event(), threading.Event()

    def hold(_call):
        inside.set()
        release.wait(60)
        return None

    running = _managing(manager)
    ref2 = manager.driver.seed_foreign_volume(3 * GiB, name="lv-running")
    manager.driver.inject_failure("manage_existing", hold, times=1)
    worker = threading.Thread(target=manager.manage_existing, args=(CTX, running, ref2))
    worker.start()
    try:
        assert inside.wait(60)
        owners_before = {owner for owner, _r, _d in _live_rows(manager)}
        running_flow = (owners_before - {"gone-flow", crashed_flow}).pop()
        assert {crashed_flow, running_flow, "gone-flow"} <= owners_before

        report = reconciler.run()
    finally:
        release.set()
        worker.join(60)

    released_owners = {o.owner for o in report.released}
    assert released_owners == {"gone-flow"}
    assert [o.delta for o in report.released] == [7]
    owners_after = {owner for owner, _r, _d in _live_rows(manager)}
    assert crashed_flow in owners_after   # still held while it waits to resume
    fixed = {(d.resource, d.field): (d.recorded, d.expected) for d in report.drifts}
    assert fixed[("snapshots", "in_use")] == (3, 0)
    changes = {c.resource: c for c in report.changes if c.project_id == PROJECT}
    assert changes["gigabytes"].released == 1
    assert changes["snapshots"].in_use_before == 3 and changes["snapshots"].in_use_after == 0
    assert reconciler.metrics.registry.get_sample_value(
        "blockmgr_quota_reconcile_released_reservations_total",
        {"resource": "gigabytes"}) == 1

    # The running flow finished normally with its reservation intact.
    with manager.db.reader() as session:
        assert repository.get(session, models.Volume, running).status == "available"

    # At restart the crashed flow is recovered (an interrupted manage reverts: the driver
    # may or may not have renamed the volume) and resolves its own reservation.
    restarted = _manager(manager.conf, manager.db, manager.driver)
    report = restarted.init_host()
    assert report.reverted == [crashed_flow] and report.reservations_released == []
    with manager.db.reader() as session:
        assert repository.get(session, models.Volume, crashed).status == "error_managing"
    assert _live_rows(manager) == []
    usages = manager.quota.get_usages(PROJECT)
    assert usages["gigabytes"]["in_use"] == 3 and usages["gigabytes"]["reserved"] == 0
    assert manager.quota.check() == [] and reconciler.run().clean
