"""Recovery at worker start and a revert: a volume left ``reverting`` and its snapshot left
``restoring`` without a flow or a request are orphans, settled to ``error`` (the data may
have changed) and ``available`` (a revert never loses its snapshot)."""

from __future__ import annotations

from blockmgr.db import models
from blockmgr.volume import recovery
from tests.unit.flows.test_delete_volume import build_env, get, make_snapshot, make_volume, \
    set_status


def test_orphaned_revert_statuses_are_settled_at_start(sqlite_database, conf):
    env = build_env(sqlite_database, conf)
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")

    build_env(sqlite_database, conf)        # a new worker: init_host runs recovery

    assert get(env, models.Volume, vid).status == "error"
    assert "left reverting" in get(env, models.Volume, vid).status_reason
    assert get(env, models.Snapshot, sid).status == "available"


def test_every_transitional_status_has_an_orphan_status():
    from blockmgr import states

    for kind, statuses in states.TRANSITIONAL.items():
        assert set(statuses) <= set(recovery.ORPHAN_STATUS[kind]), kind
