"""Crash tests: kill a worker at every task boundary of every flow, restart, check invariants.

The boundaries are generated from each flow's definition (``faults.boundaries(get_flow())``),
never listed by hand. For each one a worker *process* runs the operation with
``BLOCKMGR_FAULT_INJECT`` set and dies (``os._exit``) there; the test process then starts a
manager on the same database and loopback directory (``init_host`` = recovery) and asserts:
no transitional status, no live reservation, quota usage equal to the recomputed truth, no
unfinished flow, and backend files matching the rows (nothing the user owned deleted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from blockmgr import conf as bm_conf
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db.session import Database
from blockmgr.drivers import loader
from blockmgr.flows import create_volume, faults, manage_existing, manage_existing_snapshot
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager

pytestmark = [pytest.mark.functional, pytest.mark.slow]

GiB = 1024 ** 3
PROJECT = "p1"

WORKER = r"""
import json, sys
from tests.functional.test_flow_crash import build_manager
from blockmgr import context
args = json.loads(sys.argv[1])
manager = build_manager(args["conf"])
ctx = context.RequestContext(project_id="p1")
getattr(manager, args["op"])(ctx, *args["args"])
"""

FLOWS = {
    "create_volume": create_volume,
    "manage_existing": manage_existing,
    "manage_existing_snapshot": manage_existing_snapshot,
}
CASES = [(op, spec) for op, module in FLOWS.items()
         for spec in faults.boundaries(module.get_flow())]


def build_manager(conf_file: str) -> VolumeManager:
    conf = bm_conf.new_config(config_files=[conf_file])
    db = Database(conf.database.connection)
    driver = loader.find_driver_class("loopback")(conf["lb"], "lb", host=conf.host + "@lb")
    driver.do_setup(None)
    return VolumeManager(conf, "lb", db=db, driver=driver, quota=QuotaEngine(db, conf),
                         notifier=MemoryNotifier())


@pytest.fixture
def world(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "crash.sqlite")
    conf_file = tmp_path / "blockmgr.conf"
    conf_file.write_text(
        "[DEFAULT]\nhost = node1\nstate_path = %s\nenabled_backends = lb\n"
        "[database]\nconnection = %s\n"
        "[lb]\nvolume_driver = loopback\nloopback_attach = file\n"
        "loopback_use_reflink = never\n" % (tmp_path, url))
    Database(url).create_schema()
    return str(conf_file)


def _prepare(manager, op):
    """Rows (and backend objects) as the API leaves them before casting ``op``."""
    directory = manager.driver.directory
    with manager.db.writer() as session:
        size = 0 if op == "manage_existing" else 2
        status = "managing" if op == "manage_existing" else "creating"
        vol = repository.create(session, models.Volume, status=status, size=size,
                                host=manager.host + "#lb", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        vid = vol.id
    if op == "create_volume":
        return [vid], {}
    if op == "manage_existing":
        with open(os.path.join(directory, "foreign-lv"), "wb") as f:
            f.truncate(GiB + 1)
        return [vid, {"source-name": "foreign-lv"}], {"foreign": "foreign-lv", "volume": vid}
    with manager.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          status="available")
        snap = repository.create(session, models.Snapshot, volume_id=vid, status="creating",
                                 volume_size=2, project_id=PROJECT)
        manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=2)
        sid = snap.id
    open(os.path.join(directory, "volume-%s" % vid), "wb").truncate(2 * GiB)
    foreign = "volume-%s@imported" % vid
    open(os.path.join(directory, foreign), "wb").truncate(GiB)
    return [sid, {"source-name": foreign}], {"foreign": foreign, "snapshot": sid}


def _check_backend_matches(manager, facts):
    files = set(os.listdir(manager.driver.directory))
    with manager.db.reader() as session:
        volumes = session.scalars(sa.select(models.Volume)).all()
        snapshots = session.scalars(sa.select(models.Snapshot)).all()
        for vol in volumes:
            if vol.status == "available":
                assert vol.name in files, "available volume without backend file"
        for snap in snapshots:
            if snap.status == "available":
                assert snap.name in files
    if "foreign" in facts:   # the imported data still exists exactly once, never deleted
        kept = [name for name in files if name == facts["foreign"]
                or name.startswith("unmanaged-")
                or name == "volume-%s" % facts.get("volume")
                or name == "snapshot-%s" % facts.get("snapshot")
                or (SNAP_SEP in name and name != facts["foreign"]
                    and name.endswith(facts.get("snapshot", "\0")))]
        assert len(kept) == 1, files


SNAP_SEP = "@"


@pytest.mark.parametrize("op,spec", CASES, ids=["%s-%s" % (op, spec.rpartition(".")[2])
                                                for op, spec in CASES])
def test_crash_at_boundary_then_recover(world, op, spec):
    manager = build_manager(world)
    args, facts = _prepare(manager, op)
    env = dict(os.environ, **{faults.ENV_VAR: spec})
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", WORKER,
                           json.dumps({"conf": world, "op": op, "args": args})],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == faults.EXIT_CODE, proc.stderr[-2000:]

    restarted = build_manager(world)
    restarted.init_host()

    with restarted.db.reader() as session:
        for model, kind in ((models.Volume, "volume"), (models.Snapshot, "snapshot")):
            stuck = session.scalars(sa.select(model).where(
                model.status.in_(sorted(states.TRANSITIONAL[kind])))).all()
            assert stuck == [], [(r.id, r.status) for r in stuck]
        live = session.scalars(sa.select(models.Reservation).where(
            models.Reservation.deleted.is_(False))).all()
        assert live == []
    assert restarted.quota.check() == []
    assert restarted.runner.backend.unfinished_flow_uuids() == set()
    _check_backend_matches(restarted, facts)
