"""Snapshot every volume of a consistency group (driver: ``create_cgsnapshot``).

extract group snapshot -> notify start -> driver create -> apply the model update -> notify
end.

The API wrote the group snapshot and one member snapshot per volume (all ``creating``) and
counted the member snapshots' quota; this flow does no quota work. Rules
(``group_updates.RULES['create_group_snapshot']``): ``(None, None)`` or no error -> the
group snapshot and every snapshot ``available`` (progress ``100%``); an entry ``error``
promotes the model status; model ``error`` -> group snapshot ``error``, snapshots keep the
driver's statuses, the others ``error``, :class:`VolumeDriverException`. ANY exception (not
only blockmgr's, unlike Cinder) -> group snapshot and snapshots ``error``.
Store: ``context``, ``group_snapshot_id``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import group_tasks
from blockmgr.flows import group_updates

ACTION = "group_snapshot:create"
GS, S = states.GroupSnapshotStatus, states.SnapshotStatus
RULE = group_updates.RULES["create_group_snapshot"]


class ExtractGroupSnapshotTask(common.FlowTask):
    """Check the group snapshot (``creating``) and its members (``creating``); provides
    ``members`` (snapshot ids). Revert: whatever is still ``creating`` -> ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "members"

    def execute(self, runtime, group_snapshot_id):
        with runtime.db.reader() as session:
            gsnap = repository.get(session, models.GroupSnapshot, group_snapshot_id)
            if gsnap.status != GS.CREATING:
                raise exception.InvalidGroup(
                    reason="group snapshot %s is %s, not creating"
                    % (group_snapshot_id, gsnap.status))
            snapshots = repository.snapshots_of_group_snapshot(session, group_snapshot_id)
            for snap in snapshots:
                if snap.status != S.CREATING:
                    raise exception.InvalidSnapshot(
                        reason="snapshot %s of group snapshot %s is %s, not creating"
                        % (snap.id, group_snapshot_id, snap.status))
            return [snap.id for snap in snapshots]

    def revert(self, runtime, group_snapshot_id, flow_failures=None, **kwargs):
        reason = common.failure_reason(flow_failures)
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.GroupSnapshot, [group_snapshot_id],
                                    {GS.CREATING})
            members = [s.id for s in repository.snapshots_of_group_snapshot(
                session, group_snapshot_id)]
            group_updates.error_out(session, models.Snapshot, members, {S.CREATING}, reason)


class CreateGroupSnapshotTask(group_tasks.GroupSnapshotDriverTask):
    """Call the driver; provides ``driver_result``. Repeated after a crash (the driver
    contract makes creating an existing member snapshot a no-op or a retake)."""

    operation, driver_method, rule = "create group snapshot", "create_cgsnapshot", RULE


class ApplyCreateGroupSnapshotTask(common.FlowTask):
    """Write entries and statuses; raise when the rules say the operation failed."""

    def execute(self, runtime, group_snapshot_id, members, driver_result):
        outcome = group_updates.decide(RULE, driver_result["model"],
                                       driver_result["entries"], members)
        with runtime.db.writer() as session:
            # The group snapshot first: if it has left ``creating``, an earlier run of this
            # task wrote everything (one transaction) and the API may have moved on since.
            if common.finish_in(session, models.GroupSnapshot, group_snapshot_id,
                                outcome.parent_status, in_progress=GS.CREATING):
                group_updates.write_members(session, models.Snapshot, outcome,
                                            success_values={"progress": "100%"},
                                            reason=outcome.reason)
        if outcome.failed:
            raise group_updates.failure_error(RULE, outcome)


def lock_names(group_snapshot_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The group snapshot and its group."""
    group_id = rows.group_snapshot_group(group_snapshot_id)
    return [group_snapshot_id] + ([group_id] if group_id else [])


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupSnapshotTask(),
        group_tasks.GroupNotifyTask("group_snapshot", "create", "group_snapshot_id",
                                    "snapshot", "start"),
        CreateGroupSnapshotTask(),
        ApplyCreateGroupSnapshotTask(),
        group_tasks.GroupNotifyTask("group_snapshot", "create", "group_snapshot_id",
                                    "snapshot", "end"),
    )
