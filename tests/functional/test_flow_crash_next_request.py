"""Crash right after a flow's last write, while the API accepts the next request.

A worker that dies after a flow's finishing transaction committed, but before its logbook
recorded it, runs that step again at its next start. The resource is usable from the
moment the transaction committed, so while the worker is down the API may already have
accepted the next request on it -- a delete, an extend, a group update -- and moved its
status on. The repeated step must see that its work is done and write nothing: before the
fix it either failed (a manage flow then *unmanaged* the volume and reset its size, so the
delete gave back 0 GiB and the project stayed charged -- the 1 GiB drift the crash-under-load
test found) or overwrote the next request (a second extend lost its size and status).

Each case: prepare the operation (as its crash test module does), kill the worker
``after:`` the flow's finishing task, apply the next request's API-side change to the rows
(status, an extend's request-owned reservation, and the request in the ledger, which keeps
recovery from taking the row for an orphan), start a worker that recovers, serve the next
request, then check the shared invariants and that the next request took effect.
"""

from __future__ import annotations

import pytest

from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import (create_group, create_group_from_src, create_group_snapshot,
                            create_snapshot, create_volume, extend_volume, manage_existing,
                            manage_existing_snapshot, update_group)
from tests.functional import crash_harness as harness
from tests.functional import test_flow_crash
from tests.functional import test_flow_crash_groups
from tests.functional import test_flow_crash_single
from tests.functional.crash_harness import (CTX, PROJECT, crash_databases,  # noqa: F401
                                            crash_world)

pytestmark = [pytest.mark.functional, pytest.mark.slow]

#: op -> (flow module, its finishing task, what the operation works on)
FINISHERS = {
    "create_volume": (create_volume, create_volume.CreateVolumeOnFinishTask, "volume"),
    "manage_existing": (manage_existing, manage_existing.QuotaCommitTask, "volume"),
    "extend_volume": (extend_volume, extend_volume.ExtendVolumeOnFinishTask, "volume"),
    "create_snapshot": (create_snapshot, create_snapshot.CreateSnapshotOnFinishTask,
                        "snapshot"),
    "manage_existing_snapshot": (manage_existing_snapshot,
                                 manage_existing_snapshot.QuotaCommitTask, "snapshot"),
    "update_group": (update_group, update_group.ApplyUpdateGroupTask, "group"),
    "create_group": (create_group, create_group.ApplyCreateGroupTask, "group"),
    "create_group_from_src": (create_group_from_src,
                              create_group_from_src.ApplyCreateGroupFromSrcTask, "group"),
    "create_group_snapshot": (create_group_snapshot,
                              create_group_snapshot.ApplyCreateGroupSnapshotTask,
                              "group_snapshot"),
}
#: (op, next request)
CASES = ([(op, nxt) for op in ("create_volume", "manage_existing", "extend_volume")
          for nxt in ("delete_volume", "extend_volume")]
         + [(op, "delete_snapshot") for op in ("create_snapshot", "manage_existing_snapshot")]
         + [("update_group", "update_group"), ("create_group", "delete_group"),
            ("create_group_from_src", "delete_group"),
            ("create_group_snapshot", "delete_group_snapshot")])


#: delete request -> the model it deletes
DELETED = {"delete_volume": models.Volume, "delete_snapshot": models.Snapshot,
           "delete_group": models.Group, "delete_group_snapshot": models.GroupSnapshot}


def _spec(op: str) -> str:
    module, task, _kind = FINISHERS[op]
    for atom in module.get_flow():
        if isinstance(atom, task):
            return "after:%s/%s" % (module.get_flow().name, atom.name)
    raise AssertionError("%s has no %s" % (op, task.__name__))


def _prepare(manager, op):
    """``(worker arguments, id of the resource the next request acts on)``."""
    if op in ("create_volume", "manage_existing", "manage_existing_snapshot"):
        args, facts = test_flow_crash._prepare(manager, op)
        return args, facts.get("snapshot", args[0])
    if op in ("extend_volume", "create_snapshot"):
        args, (_kind, resource_id) = test_flow_crash_single._prepare(manager, op)
        return args, resource_id
    args = test_flow_crash_groups._prepare(manager, op)
    return args, args[0]


def _accept(manager, nxt: str, resource_id: str):
    """What the API writes when it accepts ``nxt``; returns the worker's arguments."""
    with manager.db.writer() as session:
        db_requests.add(session, kind="volume", resource_id=resource_id, action=nxt,
                        arguments={}, context=CTX.to_dict(), target=manager.host)
        if nxt in DELETED:
            repository.transition(session, DELETED[nxt], resource_id, "deleting")
            return [resource_id]
        if nxt == "extend_volume":
            row = repository.get(session, models.Volume, resource_id)
            new_size = row.size + 1
            owner = bm_quota.request_owner("volume", resource_id, "extending")
            reservations = manager.quota.reserve(PROJECT, session=session, owner=owner,
                                                 gigabytes=1)
            repository.transition(session, models.Volume, resource_id, "extending",
                                  previous_status=row.status)
            return [resource_id, new_size, reservations]
        group = repository.get(session, models.Group, resource_id)
        repository.transition(session, models.Group, resource_id, "updating")
        members = [v.id for v in repository.volumes_in_group(session, group.id)]
        return [resource_id, [], members[-1:]]      # remove a member (the one just added)


def _served(manager, nxt: str, args) -> None:
    with manager.db.reader() as session:
        if nxt in DELETED:
            assert repository.get(session, DELETED[nxt], args[0], read_deleted=True).deleted
        elif nxt == "extend_volume":
            row = repository.get(session, models.Volume, args[0])
            assert (row.status, row.size) == ("available", args[1])
        else:
            group = repository.get(session, models.Group, args[0])
            members = {v.id for v in repository.volumes_in_group(session, group.id)}
            assert group.status == "available" and not members & set(args[2]), members


@pytest.mark.parametrize("op,nxt", CASES, ids=["%s-then-%s" % c for c in CASES])
def test_a_request_accepted_while_the_worker_was_down_survives_the_resumed_flow(
        crash_world, op, nxt):  # noqa: F811
    args, resource_id = _prepare(crash_world.manager(), op)
    crash = harness.crash_worker(crash_world, _spec(op), op, *args)
    next_args = _accept(crash_world.manager(), nxt, resource_id)

    restarted = crash_world.manager()
    report = restarted.init_host()
    assert report.failed == [] and report.orphans == [], report
    getattr(restarted, nxt)(CTX, *next_args)

    harness.assert_invariants(restarted, crash, report)
    _served(restarted, nxt, next_args)
