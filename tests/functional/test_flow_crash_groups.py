"""Crash tests for the consistency-group flows: kill a worker at every task boundary, restart.

Boundaries come from each flow's definition (``faults.boundaries(get_flow())``). For each, a
forked worker (``crash_harness.py``; loopback driver; SQLite, MariaDB and PostgreSQL) runs
the operation with ``BLOCKMGR_FAULT_INJECT`` set and dies there; a fresh manager on the same
database and directory then recovers (``init_host``) and the shared invariants are checked:
no group / group snapshot / volume / snapshot in a transitional status, no live
reservation, quota usage equal to the recomputed truth, no unfinished flow, and backend
files exactly matching the live rows (no leak, nothing ``available`` without its file).
"""

from __future__ import annotations

import pytest

from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import (create_group, create_group_from_src, create_group_snapshot,
                            delete_group, delete_group_snapshot, update_group)
from blockmgr.interface.objects import SnapshotView, VolumeView
from tests.functional import crash_harness as harness
from tests.functional.crash_harness import PROJECT, crash_databases, crash_world  # noqa: F401

pytestmark = [pytest.mark.functional, pytest.mark.slow]

FLOWS = {
    "create_group": create_group.get_flow(),
    "delete_group": delete_group.get_flow(),
    "update_group": update_group.get_flow(),
    "create_group_snapshot": create_group_snapshot.get_flow(),
    "delete_group_snapshot": delete_group_snapshot.get_flow(),
    "create_group_from_src": create_group_from_src.get_flow(),
}
CASES = harness.cases(FLOWS)


def _group(manager, session, status):
    row = repository.create(session, models.Group, status=status, project_id=PROJECT,
                            host=manager.host + "#lb")
    manager.quota.consume(session, PROJECT, groups=1)
    return row.id


def _volumes(manager, group_id, count=2, size=1, status="available", on_backend=True,
             **values):
    ids = []
    per = values.pop("per", dict)
    for _ in range(count):
        with manager.db.writer() as session:
            vol = repository.create(session, models.Volume, status=status, size=size,
                                    host=manager.host + "#lb", project_id=PROJECT,
                                    group_id=group_id, **values, **per())
            manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
            ids.append(vol.id)
        if on_backend:
            manager.driver.create_volume(VolumeView(id=vol.id, size=size))
    return ids


def _group_snapshot(manager, group_id, status, member_status, on_backend):
    with manager.db.writer() as session:
        gsnap = repository.create(session, models.GroupSnapshot, group_id=group_id,
                                  status=status, project_id=PROJECT)
        snaps = []
        for vol in repository.volumes_in_group(session, group_id):
            snap = repository.create(session, models.Snapshot, volume_id=vol.id,
                                     group_snapshot_id=gsnap.id, status=member_status,
                                     volume_size=vol.size, project_id=PROJECT)
            manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=vol.size)
            snaps.append((snap.id, vol.id))
        gsid = gsnap.id
    if on_backend:
        for sid, vid in snaps:
            manager.driver.create_snapshot(SnapshotView(id=sid, volume_id=vid, volume_size=1))
    return gsid, [sid for sid, _vid in snaps]


def _prepare(manager, op):
    """Rows and backend objects as the API leaves them before casting ``op``; returns the
    endpoint's arguments after the context."""
    with manager.db.writer() as session:
        status = {"create_group": "creating", "delete_group": "deleting",
                  "update_group": "updating"}.get(op, "available")
        gid = _group(manager, session, status)
    if op == "create_group":
        return [gid]
    members = _volumes(manager, gid)
    if op == "delete_group":
        return [gid]
    if op == "update_group":
        extra = _volumes(manager, None, count=1)
        return [gid, extra, members[:1]]
    if op == "create_group_snapshot":
        gsid, _ = _group_snapshot(manager, gid, "creating", "creating", on_backend=False)
        return [gsid]
    gsid, sids = _group_snapshot(manager, gid, "available", "available", on_backend=True)
    if op == "delete_group_snapshot":
        with manager.db.writer() as session:
            repository.update(session, repository.get(session, models.GroupSnapshot, gsid),
                              status="deleting")
        return [gsid]
    with manager.db.writer() as session:
        new_gid = _group(manager, session, "creating")
    links = iter(sids)
    _volumes(manager, new_gid, status="creating", on_backend=False,
             per=lambda: {"snapshot_id": next(links)})
    return [new_gid, gsid]


@pytest.mark.parametrize("op,spec", CASES, ids=[harness.case_id(*c) for c in CASES])
def test_group_crash_at_boundary_then_recover(crash_world, op, spec):  # noqa: F811
    args = _prepare(crash_world.manager(), op)
    crash = harness.crash_worker(crash_world, spec, op, *args)

    restarted, report = harness.recover(crash_world, crash)

    harness.assert_invariants(restarted, crash, report)
    if op in ("create_group", "delete_group", "create_group_snapshot",
              "delete_group_snapshot", "create_group_from_src"):
        # every boundary is resumable: the operation completes after the restart
        model = models.GroupSnapshot if "snapshot" in op else models.Group
        with restarted.db.reader() as session:
            row = repository.get(session, model, args[0], read_deleted=True)
            assert row.status == ("deleted" if op.startswith("delete") else "available")
