"""The quota reconciler on SQLite: its report, dry run, CLI and periodic run in the scheduler.

The running/resumable-flow safety rule is proven on all three databases with real flows in
tests/functional/test_quota_reconciler.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest

from blockmgr import metrics
from blockmgr import quota_reconciler
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import engine as flow_engine
from blockmgr.quota import QuotaEngine

PAST = dt.datetime(2000, 1, 1)


class Logbooks:
    """Just the liveness question the reconciler asks of a flow persistence backend."""

    def __init__(self, unfinished):
        self.unfinished = set(unfinished)

    def unfinished_flow_uuids(self, book_uuid=None):
        return set(self.unfinished)


@pytest.fixture
def quota(sqlite_database, conf):
    conf.set_override("connection", sqlite_database.url, group="database")
    return QuotaEngine(sqlite_database, conf)


def _drifted(quota, db):
    """p1: a live flow's reservation, a gone flow's, an expired ownerless one, one volume
    in the tables but none in usage."""
    quota.reserve("p1", owner="live-flow", gigabytes=4)
    quota.reserve("p1", owner="gone-flow", gigabytes=6)
    quota.reserve("p2", snapshots=1, expire=PAST)
    with db.writer() as session:
        repository.create(session, models.Volume, status="available", size=10,
                          project_id="p1", host="h@b#pool")


def test_run_releases_orphans_fixes_usage_and_reports(quota, sqlite_database, caplog):
    _drifted(quota, sqlite_database)
    own = metrics.Metrics(process_collectors=False)
    reconciler = quota_reconciler.QuotaReconciler(
        quota, sqlite_database, Logbooks({"live-flow"}), metrics=own)
    with caplog.at_level(logging.INFO, logger="blockmgr.quota_reconciler"):
        report = reconciler.run()
    assert sorted((o.owner or "", o.resource, o.delta) for o in report.released) == [
        ("", "snapshots", 1), ("gone-flow", "gigabytes", 6)]
    changes = {(c.project_id, c.resource): c for c in report.changes}
    gb = changes[("p1", "gigabytes")]
    assert (gb.reserved_before, gb.reserved_after, gb.released) == (10, 4, 1)
    assert (gb.in_use_before, gb.in_use_after) == (0, 6)   # 10 GiB, 4 of them maybe pending
    vols = changes[("p1", "volumes")]
    assert (vols.in_use_before, vols.in_use_after, vols.released) == (0, 1, 0)
    assert changes[("p2", "snapshots")].reserved_after == 0
    assert quota.reservations_of("live-flow") and quota.check() == []
    assert ("released 2 orphaned reservation(s) and fixed 2 usage value(s) in 2 project(s)"
            in report.summary())
    logged = caplog.text
    assert "project p1 gigabytes: in_use 0 -> 6, reserved 10 -> 4" in logged
    get = own.registry.get_sample_value
    assert get("blockmgr_quota_reconcile_runs_total", {"outcome": "ok"}) == 1
    assert get("blockmgr_quota_reconcile_released_reservations_total",
               {"resource": "gigabytes"}) == 1
    assert get("blockmgr_quota_reconcile_usage_corrections_total",
               {"resource": "volumes", "field": "in_use"}) == 1
    assert get("blockmgr_quota_reconcile_last_success_timestamp_seconds") > 0
    # A second run has nothing left to do.
    assert reconciler.run().clean


def test_dry_run_reports_the_same_and_changes_nothing(quota, sqlite_database):
    _drifted(quota, sqlite_database)
    reconciler = quota_reconciler.QuotaReconciler(quota, sqlite_database,
                                                  Logbooks({"live-flow"}))
    before = quota_reconciler.usages(sqlite_database)
    dry = reconciler.run(dry_run=True)
    assert quota_reconciler.usages(sqlite_database) == before
    assert len(quota.orphans(lambda owner: owner == "live-flow")) == 2
    real = reconciler.run()
    assert sorted(o.uuid for o in dry.released) == sorted(o.uuid for o in real.released)
    assert [(c.project_id, c.resource, c.reserved_after, c.released)
            for c in dry.changes if c.released] == [
        (c.project_id, c.resource, c.reserved_after, c.released)
        for c in real.changes if c.released]
    # in_use is judged with the orphans still live, so a dry run may see less to fix.
    assert {(d.resource, d.field) for d in dry.drifts} <= {
        (d.resource, d.field) for d in real.drifts}


def test_without_logbooks_every_owner_counts_as_live(quota, sqlite_database):
    _drifted(quota, sqlite_database)
    report = quota_reconciler.QuotaReconciler(quota, sqlite_database, None).run()
    assert [(o.owner, o.resource) for o in report.released] == [(None, "snapshots")]
    assert quota.reservations_of("gone-flow")


def test_a_liveness_check_that_fails_keeps_the_reservations(quota, sqlite_database):
    class Broken:
        def unfinished_flow_uuids(self, book_uuid=None):
            raise RuntimeError("logbook database unreachable")

    _drifted(quota, sqlite_database)
    report = quota_reconciler.QuotaReconciler(quota, sqlite_database, Broken()).run()
    assert {o.owner for o in report.released} == {None}
    assert quota.reservations_of("gone-flow") and quota.reservations_of("live-flow")


def test_a_failing_run_is_counted_and_raised(tmp_path, conf):
    from blockmgr.db.session import Database

    empty = Database("sqlite:///%s" % (tmp_path / "no-schema.sqlite"))
    own = metrics.Metrics(process_collectors=False)
    try:
        with pytest.raises(Exception):
            quota_reconciler.QuotaReconciler(QuotaEngine(empty, conf), empty, None,
                                             metrics=own).run()
    finally:
        empty.dispose()
    assert own.registry.get_sample_value("blockmgr_quota_reconcile_runs_total",
                                         {"outcome": "error"}) == 1


# --- CLI ------------------------------------------------------------------------------------

def _config(tmp_path, db_url):
    path = tmp_path / "blockmgr.conf"
    path.write_text("[database]\nconnection = %s\n" % db_url)
    return str(path)


def test_cli_reconcile_and_dry_run(quota, sqlite_database, conf, tmp_path, capsys):
    from blockmgr.cmd import manage

    # A real logbook in the database, with one unfinished flow owning a reservation.
    persistence = flow_engine.open_persistence(conf, sqlite_database)
    runner = flow_engine.FlowRunner(persistence, "node1@fake")
    from taskflow.persistence import models as tf_models

    flow = tf_models.FlowDetail("unfinished", uuid="11111111-1111-1111-1111-111111111111")
    persistence.add_flow_detail(runner.book, flow)
    persistence.flush(flow.uuid)
    persistence.close()
    quota.reserve("p1", owner=flow.uuid, gigabytes=4)
    quota.reserve("p1", owner="gone-flow", gigabytes=6)
    config = _config(tmp_path, sqlite_database.url)

    assert manage.main(["--config-file", config, "quota", "reconcile", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "WOULD RELEASE reservation" in out and "owner flow gone-flow" in out
    assert flow.uuid not in out
    assert quota.reservations_of("gone-flow")

    assert manage.main(["--config-file", config, "quota", "reconcile"]) == 0
    out = capsys.readouterr().out
    assert "RELEASED reservation" in out and "10 -> 4" in out
    assert "released 1 orphaned reservation(s)" in out
    assert quota.reservations_of(flow.uuid) and not quota.reservations_of("gone-flow")

    assert manage.main(["--config-file", config, "quota", "reconcile", "--dry-run"]) == 0
    assert "Nothing to do" in capsys.readouterr().out


# --- the scheduler runs it periodically --------------------------------------------------------

def test_scheduler_runs_the_reconciler_periodically(quota, sqlite_database, conf):
    import uuid

    from blockmgr import notifications
    from blockmgr import rpc
    from blockmgr import rpc_inprocess
    from blockmgr.scheduler import service as sched_service

    conf.set_override("reconcile_interval", 1, group="quota")
    conf.set_override("persistence_connection", "memory", group="flows")
    transport = rpc.get_transport(conf, "inprocess://rec-%s" % uuid.uuid4().hex[:8])
    own = metrics.Metrics(process_collectors=False)
    scheduler = sched_service.SchedulerService(
        conf, db=sqlite_database, transport=transport, quota=quota,
        notifier=notifications.MemoryNotifier(), metrics=own)
    ran = threading.Event()
    real_run = scheduler.reconciler.run

    def run_and_tell():
        report = real_run()
        ran.set()
        return report

    scheduler.reconciler.run = run_and_tell
    scheduler.start()
    try:
        assert ran.wait(30)
    finally:
        scheduler.stop()
        rpc_inprocess.reset()
    assert own.registry.get_sample_value("blockmgr_quota_reconcile_runs_total",
                                         {"outcome": "ok"}) >= 1
    collector = scheduler.metrics_collectors()[0]
    names = {family.name for family in collector.collect()}
    assert "blockmgr_quota_reservations_orphaned" in names
