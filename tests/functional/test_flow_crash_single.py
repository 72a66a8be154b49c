"""Crash tests for the single-resource flows: delete / unmanage volume (and cascade),
create / delete / unmanage snapshot, extend.

Same method as ``test_flow_crash.py`` (whose worker script, manager builder and ``world``
fixture are reused): every task boundary generated from the flow definition, a worker process
killed there with ``os._exit``, then a restarted manager (``init_host`` = recovery) on the
same SQLite database and loopback directory. After recovery: no transitional status, no live
reservation, quota usage equal to the recomputed truth, no unfinished flow, backend files
exactly matching the rows -- and, since every task of these flows resumes, the operation
finished (deleted / unmanaged / available / extended).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import create_snapshot, delete_snapshot, delete_volume, extend_volume
from blockmgr.flows import faults
from tests.functional.test_flow_crash import PROJECT, WORKER, build_manager, world  # noqa: F401

pytestmark = [pytest.mark.functional, pytest.mark.slow]

GiB = 1024 ** 3
CTX = bm_context.RequestContext(project_id=PROJECT)

#: case -> (flow factory, its kwargs, manager method, expected end state of the resource)
CASES_BY_OP = {
    "delete_volume": (delete_volume.get_flow, {}, "delete_volume", "deleted"),
    "unmanage_volume": (delete_volume.get_flow, {"unmanage_only": True}, "delete_volume",
                        "unmanaged"),
    "cascade_delete": (delete_volume.get_flow, {}, "delete_volume", "deleted"),
    "create_snapshot": (create_snapshot.get_flow, {}, "create_snapshot", "available"),
    "delete_snapshot": (delete_snapshot.get_flow, {}, "delete_snapshot", "deleted"),
    "unmanage_snapshot": (delete_snapshot.get_flow, {"unmanage_only": True},
                          "delete_snapshot", "unmanaged"),
    "extend_volume": (extend_volume.get_flow, {}, "extend_volume", "available"),
}
CASES = [(op, spec) for op, (factory, kwargs, _m, _e) in CASES_BY_OP.items()
         for spec in faults.boundaries(factory(**kwargs))]


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
    manager.create_snapshot(CTX, sid)
    if op == "cascade_delete":
        _set(manager, models.Snapshot, sid, "deleting")
        _set(manager, models.Volume, vid, "deleting")
        return [vid, False, True], ("volume", vid)
    _set(manager, models.Snapshot, sid, "deleting" if op == "delete_snapshot" else "unmanaging")
    return [sid, op == "unmanage_snapshot"], ("snapshot", sid)


def _check_backend_matches_rows(manager):
    """Every managed backend file belongs to a live row, every live row has its file."""
    files = {name: os.path.getsize(os.path.join(manager.driver.directory, name))
             for name in os.listdir(manager.driver.directory)}
    managed = {n for n in files if n.startswith(("volume-", "snapshot-")) and "@" not in n}
    with manager.db.reader() as session:
        volumes = session.scalars(sa.select(models.Volume)
                                  .where(models.Volume.deleted.is_(False))).all()
        snapshots = session.scalars(sa.select(models.Snapshot)
                                    .where(models.Snapshot.deleted.is_(False))).all()
    expected = {v.name: v.size * GiB for v in volumes}
    expected.update({s.name: s.volume_size * GiB for s in snapshots})
    assert managed == set(expected), (sorted(managed), sorted(expected))
    for name, size in expected.items():
        assert files[name] == size, name


@pytest.mark.parametrize("op,spec", CASES, ids=["%s-%s" % (op, spec.rpartition(".")[2])
                                                for op, spec in CASES])
def test_crash_at_boundary_then_recover(world, op, spec):  # noqa: F811
    manager = build_manager(world)
    args, (kind, resource_id) = _prepare(manager, op)
    method, expected = CASES_BY_OP[op][2], CASES_BY_OP[op][3]
    env = dict(os.environ, **{faults.ENV_VAR: spec})
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", WORKER,
                           json.dumps({"conf": world, "op": method, "args": args})],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == faults.EXIT_CODE, proc.stderr[-2000:]

    restarted = build_manager(world)
    restarted.init_host()

    with restarted.db.reader() as session:
        for model, what in ((models.Volume, "volume"), (models.Snapshot, "snapshot")):
            stuck = session.scalars(sa.select(model).where(
                model.deleted.is_(False),
                model.status.in_(sorted(states.TRANSITIONAL[what])))).all()
            assert stuck == [], [(r.id, r.status) for r in stuck]
        live = session.scalars(sa.select(models.Reservation).where(
            models.Reservation.deleted.is_(False))).all()
        assert live == []
        model = models.Volume if kind == "volume" else models.Snapshot
        row = repository.get(session, model, resource_id, read_deleted=True)
        assert row.status == ("deleted" if expected == "unmanaged" else expected), row.status
        if op == "extend_volume":
            assert row.size == 4
    assert restarted.quota.check() == []
    assert restarted.runner.backend.unfinished_flow_uuids() == set()
    _check_backend_matches_rows(restarted)
    files = set(os.listdir(restarted.driver.directory))
    if op == "unmanage_volume":
        assert "unmanaged-volume-%s" % resource_id in files    # kept, exactly once
    if op == "unmanage_snapshot":
        assert [n for n in files if n.endswith("@snapshot-%s" % resource_id)]
    usage = restarted.quota.get_usages(PROJECT)
    assert usage["volumes"]["in_use"] == (0 if kind == "volume" and expected != "available"
                                          else 1)
