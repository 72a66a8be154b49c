"""Delete a snapshot, or unmanage it (``get_flow(unmanage_only=True)``).

extract snapshot -> notify start -> delete (or unmanage) on the backend -> destroy the row and
return its quota in ONE transaction -> notify end.

The API moved the row to ``deleting`` (``unmanaging``). Events are ``snapshot.delete.*`` for
both, as in Cinder (which has no snapshot unmanage event); the ``.end`` payload says
``unmanaged``. Quota: ``snapshots: -1, gigabytes: -volume_size`` (no gigabytes under
``[quota] no_snapshot_gb_quota``; nothing for ``use_quota = False``), a negative reservation
owned by the flow and committed in the transaction that soft-deletes the row, so a crash can
never separate the two.

Failure: :class:`~blockmgr.exception.SnapshotIsBusy` -> back to ``available`` (nothing was
deleted); anything else -> ``error_deleting``; quota unchanged; ``snapshot.delete.error``.
A crash resumes the flow (deleting what is gone succeeds; unmanaging twice is harmless).
Store: ``context``, ``snapshot_id``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import create_snapshot
from blockmgr.flows import delete_volume

ACTION = "snapshot:delete"
UNMANAGE_ACTION = "snapshot:unmanage"
S = states.SnapshotStatus


class ExtractSnapshotTask(common.FlowTask):
    """Check the row is ``deleting`` (``unmanaging``); provides ``snapshot_ref``.
    Revert (whatever failed after it): ``available`` if busy, else ``error_deleting``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "snapshot_ref"

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.start = S.UNMANAGING if unmanage_only else S.DELETING

    def execute(self, runtime, snapshot_id):
        view = create_snapshot.snapshot_view(runtime, snapshot_id)
        if view.status != self.start:
            raise exception.InvalidSnapshot(
                reason="snapshot %s is %s, not %s" % (snapshot_id, view.status, self.start))
        return {"id": view.id, "volume_id": view.volume_id, "volume_size": view.volume_size,
                "project_id": view.project_id}

    def revert(self, runtime, snapshot_id, result, flow_failures=None, **kwargs):
        if common.is_failure(result):
            return   # the row was not ours to change
        busy = any(f.check("blockmgr.exception.SnapshotIsBusy")
                   for f in (flow_failures or {}).values())
        target = S.AVAILABLE if busy else S.ERROR_DELETING
        try:
            with runtime.db.writer() as session:
                repository.transition(session, models.Snapshot, snapshot_id, target,
                                      expected=(self.start, target),
                                      status_reason=common.failure_reason(flow_failures))
        except (exception.SnapshotNotFound, exception.InvalidStatusTransition) as exc:
            common.LOG.warning("Snapshot %s not moved to %s after its delete failed: %s",
                               snapshot_id, target, exc)


class DeleteSnapshotOnBackendTask(common.FlowTask):
    """``driver.delete_snapshot`` (or ``unmanage_snapshot``). Idempotent; nothing to undo."""

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.unmanage_only = unmanage_only

    def execute(self, runtime, snapshot_id):
        view = create_snapshot.snapshot_view(runtime, snapshot_id)
        if self.unmanage_only:
            runtime.driver.unmanage_snapshot(view)
        else:
            runtime.driver.delete_snapshot(view)


class DestroySnapshotTask(common.FlowTask):
    """In one transaction: return the quota (negative reservation owned by the flow,
    committed at once) and soft-delete the row; a repeat finds it deleted and does nothing.
    Then ``snapshot.delete.end``."""

    def __init__(self, unmanage_only: bool):
        super().__init__(addon="delete.end")
        self.unmanage_only = unmanage_only

    def execute(self, runtime, context, flow_id, snapshot_id, snapshot_ref):
        def destroy(session):
            row = repository.get(session, models.Snapshot, snapshot_id, read_deleted=True,
                                 for_update=True)
            if row.deleted:
                return
            deltas = delete_volume.snapshot_deltas(runtime.conf, row)
            if deltas:
                runtime.quota.commit(runtime.quota.reserve(
                    row.project_id, owner=flow_id, session=session, **deltas),
                    session=session)
            row.status_reason = None
            repository.soft_delete(session, row)

        runtime.quota.run_in_transaction(destroy)
        runtime.notifier.info(common.ctx(context), "snapshot.delete.end",
                              {"snapshot_id": snapshot_id,
                               "volume_id": snapshot_ref["volume_id"],
                               "volume_size": snapshot_ref["volume_size"],
                               "unmanaged": self.unmanage_only, "host": runtime.host})


def lock_names(snapshot_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The snapshot and its delete lock (no volume is created from it meanwhile)."""
    return [snapshot_id, common.delete_snapshot_lock(snapshot_id)]


def get_flow(unmanage_only: bool = False) -> linear_flow.Flow:
    action = UNMANAGE_ACTION if unmanage_only else ACTION
    return common.declare_flow(
        action,
        ExtractSnapshotTask(unmanage_only),
        common.NotifyStartTask("snapshot", "delete", "snapshot_id"),
        DeleteSnapshotOnBackendTask(unmanage_only),
        DestroySnapshotTask(unmanage_only),
    )
