"""Crash tests for the single-resource flows: delete / unmanage volume (and cascade),
create / delete / unmanage snapshot, extend.

Same method as ``test_flow_crash.py`` (machinery in ``crash_harness.py``): every task
boundary generated from the flow definition, a forked worker killed there with ``os._exit``,
then a fresh manager (``init_host`` = recovery) on the same database and loopback directory,
on SQLite, MariaDB and PostgreSQL. After recovery the shared invariants hold (no
transitional status, no live reservation, quota usage equal to the recomputed truth, no
unfinished flow, backend files exactly matching the rows) -- and, since every task of these
flows resumes, the operation finished (deleted / unmanaged / available / extended).
"""

from __future__ import annotations

import os

import pytest

from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import create_snapshot, delete_snapshot, delete_volume, extend_volume
from blockmgr.flows import revert_to_snapshot
from tests.functional import crash_harness as harness
from tests.functional.crash_harness import (CTX, GiB, PROJECT,  # noqa: F401
                                            crash_databases, crash_world)

pytestmark = [pytest.mark.functional, pytest.mark.slow]

#: case -> (flow, manager method, expected end state of the resource)
CASES_BY_OP = {
    "delete_volume": (delete_volume.get_flow(), "delete_volume", "deleted"),
    "unmanage_volume": (delete_volume.get_flow(unmanage_only=True), "delete_volume",
                        "unmanaged"),
    "cascade_delete": (delete_volume.get_flow(), "delete_volume", "deleted"),
    "create_snapshot": (create_snapshot.get_flow(), "create_snapshot", "available"),
    "delete_snapshot": (delete_snapshot.get_flow(), "delete_snapshot", "deleted"),
    "unmanage_snapshot": (delete_snapshot.get_flow(unmanage_only=True),
                          "delete_snapshot", "unmanaged"),
    # DELETE of a snapshot whose manage failed (error_managing_deleting): the object is
    # the user's, so the flow releases it, crash or not.
    "delete_failed_snapshot_manage": (delete_snapshot.get_flow(), "delete_snapshot",
                                      "unmanaged"),
    "extend_volume": (extend_volume.get_flow(), "extend_volume", "available"),
    "revert_to_snapshot": (revert_to_snapshot.get_flow(), "revert_to_snapshot", "available"),
}
#: What the revert case writes to the volume after its snapshot (the snapshot holds zeros).
REVERTED_AWAY = b"written after the snapshot"
#: What the user's object holds in the failed-manage delete case (never lost).
USER_DATA = b"the user's snapshot data"
FLOWS = {op: flow for op, (flow, _m, _e) in CASES_BY_OP.items()}
CASES = harness.cases(FLOWS)


def _set(manager, model, resource_id, *statuses, **values):
    with manager.db.writer() as session:
        row = repository.get(session, model, resource_id)
        for status in statuses:
            repository.update(session, row, status=status)
        repository.update(session, row, **values)


def _prepare(manager, op):
    """Real resources (through the manager), left as the API leaves them before ``op``;
    returns the worker's arguments and the resource the op acts on."""
    with manager.db.writer() as session:
        vol = repository.create(session, models.Volume, status="creating", size=2,
                                host=manager.host + "#lb", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=2)
        vid = vol.id
    manager.create_volume(CTX, vid)
    if op in ("delete_volume", "unmanage_volume", "extend_volume"):
        if op == "extend_volume":
            _set(manager, models.Volume, vid, "extending", previous_status="available")
            return [vid, 4, manager.quota.reserve(PROJECT, gigabytes=2)], ("volume", vid)
        _set(manager, models.Volume, vid, "deleting" if op == "delete_volume" else "unmanaging")
        return [vid, op == "unmanage_volume"], ("volume", vid)
    with manager.db.writer() as session:
        snap = repository.create(session, models.Snapshot, volume_id=vid, status="creating",
                                 volume_size=2, project_id=PROJECT)
        manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=2)
        sid = snap.id
    if op == "create_snapshot":
        return [sid], ("snapshot", sid)
    if op == "delete_failed_snapshot_manage":
        # A manage whose name restore and unmanage both failed: the user's file still
        # carries the snapshot's name, with the user's data in it.
        with open(os.path.join(manager.driver.directory, "snapshot-%s" % sid), "wb") as f:
            f.truncate(2 * GiB)
            f.write(USER_DATA)
        _set(manager, models.Snapshot, sid, "error_managing", "error_managing_deleting")
        return [sid, False], ("snapshot", sid)
    manager.create_snapshot(CTX, sid)
    if op == "revert_to_snapshot":
        with open(os.path.join(manager.driver.directory, "volume-%s" % vid), "r+b") as f:
            f.write(REVERTED_AWAY)           # written after the snapshot: the revert undoes it
        _set(manager, models.Snapshot, sid, "restoring")
        _set(manager, models.Volume, vid, "reverting")
        return [vid, sid], ("volume", vid)
    if op == "cascade_delete":
        _set(manager, models.Snapshot, sid, "deleting")
        _set(manager, models.Volume, vid, "deleting")
        return [vid, False, True], ("volume", vid)
    _set(manager, models.Snapshot, sid, "deleting" if op == "delete_snapshot" else "unmanaging")
    return [sid, op == "unmanage_snapshot"], ("snapshot", sid)


@pytest.mark.parametrize("op,spec", CASES, ids=[harness.case_id(*c) for c in CASES])
def test_crash_at_boundary_then_recover(crash_world, op, spec):  # noqa: F811
    args, (kind, resource_id) = _prepare(crash_world.manager(), op)
    _flow, method, expected = CASES_BY_OP[op]
    crash = harness.crash_worker(crash_world, spec, method, *args)

    restarted, report = harness.recover(crash_world, crash)

    harness.assert_invariants(restarted, crash, report)
    with restarted.db.reader() as session:
        model = models.Volume if kind == "volume" else models.Snapshot
        row = repository.get(session, model, resource_id, read_deleted=True)
        assert row.status == ("deleted" if expected == "unmanaged" else expected), row.status
        if op == "extend_volume":
            assert row.size == 4
        if op == "revert_to_snapshot":
            snaps = repository.snapshots_of_volume(session, resource_id)
            assert [s.status for s in snaps] == ["available"]
            with open(os.path.join(restarted.driver.directory, "volume-%s" % resource_id),
                      "rb") as f:
                assert f.read(len(REVERTED_AWAY)) == bytes(len(REVERTED_AWAY))
    files = set(os.listdir(restarted.driver.directory))
    if op == "unmanage_volume":
        assert "unmanaged-volume-%s" % resource_id in files    # kept, exactly once
    if op == "unmanage_snapshot":
        assert [n for n in files if n.endswith("@snapshot-%s" % resource_id)]
    if op == "delete_failed_snapshot_manage":
        [released] = [n for n in files if n.endswith("snapshot-%s" % resource_id)]
        assert "@" in released                     # released, never deleted
        with open(os.path.join(restarted.driver.directory, released), "rb") as f:
            assert f.read(len(USER_DATA)) == USER_DATA
    usage = restarted.quota.get_usages(PROJECT)
    if op == "delete_failed_snapshot_manage":
        assert usage["snapshots"]["in_use"] == 0 and usage["gigabytes"]["in_use"] == 2
    assert usage["volumes"]["in_use"] == (0 if kind == "volume" and expected != "available"
                                          else 1)
