"""Delete a group snapshot and its member snapshots (driver: ``delete_cgsnapshot``).

extract group snapshot -> notify start -> mark members ``deleting`` -> driver delete ->
apply the model update (destroy rows, return quota) -> notify end.

The API moved the group snapshot to ``deleting``. Rules
(``group_updates.RULES['delete_group_snapshot']``): success destroys every member snapshot
and the group snapshot, returning per member ``snapshots: -1`` and ``gigabytes:
-volume_size`` (unless ``[quota] no_snapshot_gb_quota``) in the SAME transaction as the soft
deletes. An ``error``/``error_deleting`` entry promotes the model status; failure writes the
entries (members whose entry says ``deleted`` are destroyed, quota returned), the group
snapshot becomes ``error``, members still ``deleting`` become ``error``, and
:class:`VolumeDriverException` is raised. ANY exception -> the same via the extract revert.
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

ACTION = "group_snapshot:delete"
GS, S = states.GroupSnapshotStatus, states.SnapshotStatus
RULE = group_updates.RULES["delete_group_snapshot"]
DELETABLE = states.allowed_sources("snapshot", S.DELETING)


class ExtractGroupSnapshotTask(common.FlowTask):
    """Check the group snapshot (``deleting``) and its members; provides ``members``.
    Revert: group snapshot ``deleting`` -> ``error``, members ``deleting`` -> ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "members"

    def execute(self, runtime, group_snapshot_id):
        with runtime.db.reader() as session:
            gsnap = repository.get(session, models.GroupSnapshot, group_snapshot_id)
            if gsnap.status != GS.DELETING:
                raise exception.InvalidGroup(
                    reason="group snapshot %s is %s, not deleting"
                    % (group_snapshot_id, gsnap.status))
            snapshots = repository.snapshots_of_group_snapshot(session, group_snapshot_id)
            for snap in snapshots:
                if snap.status not in DELETABLE:
                    raise exception.InvalidSnapshot(
                        reason="snapshot %s of group snapshot %s is %s; it can be deleted "
                               "only from %s" % (snap.id, group_snapshot_id, snap.status,
                                                 ", ".join(sorted(DELETABLE))))
            return [snap.id for snap in snapshots]

    def revert(self, runtime, group_snapshot_id, flow_failures=None, **kwargs):
        reason = common.failure_reason(flow_failures)
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.GroupSnapshot, [group_snapshot_id],
                                    {GS.DELETING})
            members = [s.id for s in repository.snapshots_of_group_snapshot(
                session, group_snapshot_id)]
            group_updates.error_out(session, models.Snapshot, members, {S.DELETING}, reason)


class MarkMembersDeletingTask(common.FlowTask):
    """Every member snapshot -> ``deleting`` (compare-and-swap; a repeat is a no-op)."""

    def execute(self, runtime, members):
        with runtime.db.writer() as session:
            for snapshot_id in members:
                repository.transition(session, models.Snapshot, snapshot_id, S.DELETING,
                                      expected=DELETABLE)


class DeleteGroupSnapshotTask(group_tasks.GroupSnapshotDriverTask):
    """Call the driver; provides ``driver_result``. Idempotent by the driver contract."""

    operation, driver_method, rule = "delete group snapshot", "delete_cgsnapshot", RULE


class ApplyDeleteGroupSnapshotTask(common.FlowTask):
    """One transaction: entries, destroyed rows and their quota; then raise on failure."""

    def execute(self, runtime, flow_id, group_snapshot_id, members, driver_result):
        outcome = group_updates.decide(RULE, driver_result["model"],
                                       driver_result["entries"], members)
        count_gb = not (runtime.conf is not None and runtime.conf.quota.no_snapshot_gb_quota)
        with runtime.db.writer() as session:
            gsnap = repository.get(session, models.GroupSnapshot, group_snapshot_id,
                                   read_deleted=True)
            if gsnap.deleted:
                return   # done before a crash: the transaction below committed
            deltas: dict = {}
            for snapshot_id in outcome.destroy:
                snap = repository.get(session, models.Snapshot, snapshot_id,
                                      read_deleted=True)
                if snap.deleted:
                    continue
                repository.soft_delete(session, snap)
                if snap.use_quota:
                    group_tasks.add_deltas(deltas, snap.project_id, snap.volume_type_id,
                                           snapshots=-1,
                                           gigabytes=-snap.volume_size if count_gb else 0)
            group_updates.write_members(session, models.Snapshot, outcome,
                                        reason=outcome.reason)
            if outcome.destroy_parent:
                repository.soft_delete(session, gsnap)
            else:
                group_updates.set_status(session, models.GroupSnapshot, group_snapshot_id,
                                         outcome.parent_status, expected=(GS.DELETING,))
            group_tasks.return_quota(runtime, session, flow_id, deltas)
        if outcome.failed:
            raise group_updates.failure_error(RULE, outcome)


def lock_names(group_snapshot_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The group snapshot and the delete locks of its member snapshots."""
    return [group_snapshot_id] + [common.delete_snapshot_lock(s)
                                  for s in rows.group_snapshot_members(group_snapshot_id)]


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupSnapshotTask(),
        group_tasks.GroupNotifyTask("group_snapshot", "delete", "group_snapshot_id",
                                    "snapshot", "start"),
        MarkMembersDeletingTask(),
        DeleteGroupSnapshotTask(),
        ApplyDeleteGroupSnapshotTask(),
        group_tasks.GroupNotifyTask("group_snapshot", "delete", "group_snapshot_id",
                                    "snapshot", "end"),
    )
