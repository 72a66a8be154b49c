"""Delete a snapshot, or unmanage it (``get_flow(unmanage_only=True)``).

extract snapshot -> notify start -> delete (or unmanage) on the backend -> destroy the row and
return its quota in ONE transaction -> notify end.

The API moved the row to ``deleting`` (``unmanaging``; ``error_managing_deleting`` for a
snapshot whose manage failed). A snapshot whose manage failed is never deleted on the
backend: the object it was bound to is the user's, and the failed manage gave it its original
name back (``restore_managed_snapshot_name``) or released it; if neither could be done, the
object still carries the snapshot's name, so the flow *unmanages* it instead of deleting it.

Events are ``snapshot.delete.*`` for all three, as in Cinder (which has no snapshot unmanage
event); the ``.end`` payload says ``unmanaged`` (true also for a failed manage's delete: the
object was released). Quota: ``snapshots: -1, gigabytes: -volume_size`` (no gigabytes under
``[quota] no_snapshot_gb_quota``; nothing for ``use_quota = False``), a negative reservation
owned by the flow and committed in the transaction that soft-deletes the row, so a crash can
never separate the two. A failed manage's snapshot holds exactly that too: the API charged
it when the manage was requested, and the manage flow rolled its own reservation back and
put ``volume_size`` back to what the API charged.

Failure: :class:`~blockmgr.exception.SnapshotIsBusy` -> back to ``available`` (nothing was
deleted); anything else -> ``error_deleting``; a failed manage's delete goes back to
``error_managing`` whatever failed; quota unchanged; ``snapshot.delete.error``.
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


#: Status the flow expects at the start -> status it leaves on failure (busy aside).
_FAILED = {S.DELETING: S.ERROR_DELETING, S.UNMANAGING: S.ERROR_DELETING,
           S.ERROR_MANAGING_DELETING: S.ERROR_MANAGING}
_STARTS = {False: (S.DELETING, S.ERROR_MANAGING_DELETING), True: (S.UNMANAGING,)}


def _releases_only(snapshot_ref: dict) -> bool:
    """Whether the delete of ``snapshot_ref`` must unmanage instead of delete: its manage
    failed, so its object is the user's."""
    return snapshot_ref.get("status") == S.ERROR_MANAGING_DELETING


class ExtractSnapshotTask(common.FlowTask):
    """Check the row is ``deleting`` or ``error_managing_deleting`` (``unmanaging``);
    provides ``snapshot_ref`` (with the status it started from). Revert (whatever failed
    after it): ``available`` if busy, else ``error_deleting``; ``error_managing`` for a
    failed manage's delete, busy or not."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "snapshot_ref"

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.starts = _STARTS[unmanage_only]

    def execute(self, runtime, snapshot_id):
        view = create_snapshot.snapshot_view(runtime, snapshot_id)
        if view.status not in self.starts:
            raise exception.InvalidSnapshot(
                reason="snapshot %s is %s, not %s" % (snapshot_id, view.status,
                                                      " or ".join(self.starts)))
        return {"id": view.id, "volume_id": view.volume_id, "volume_size": view.volume_size,
                "project_id": view.project_id, "status": str(view.status)}

    def revert(self, runtime, snapshot_id, result, flow_failures=None, **kwargs):
        if common.is_failure(result):
            return   # the row was not ours to change
        busy = any(f.check("blockmgr.exception.SnapshotIsBusy")
                   for f in (flow_failures or {}).values())
        start = result.get("status") if isinstance(result, dict) else None
        starts = (start,) if start in self.starts else self.starts
        for start in starts:
            target = S.AVAILABLE if busy and start != S.ERROR_MANAGING_DELETING \
                else _FAILED[start]
            try:
                with runtime.db.writer() as session:
                    repository.transition(session, models.Snapshot, snapshot_id, target,
                                          expected=(start, target),
                                          status_reason=common.failure_reason(flow_failures))
                return
            except exception.InvalidStatusTransition as exc:
                failed = exc
                continue   # not in this start status (or never was ours to change)
            except exception.SnapshotNotFound as exc:
                failed = exc
                break
        common.LOG.warning("Snapshot %s not moved out of %s after its delete failed: %s",
                           snapshot_id, " or ".join(starts), failed)


class DeleteSnapshotOnBackendTask(common.FlowTask):
    """``driver.delete_snapshot`` (or ``unmanage_snapshot``). A snapshot whose manage failed
    (``error_managing_deleting``, as the extract task read it) is unmanaged, never deleted:
    its object is the user's. Idempotent; nothing to undo."""

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.unmanage_only = unmanage_only

    def execute(self, runtime, snapshot_id, snapshot_ref):
        view = create_snapshot.snapshot_view(runtime, snapshot_id)
        if self.unmanage_only or _releases_only(snapshot_ref):
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
                    row.project_id, owner=flow_id, session=session,
                    volume_type_id=row.volume_type_id, **deltas),
                    session=session)
            row.status_reason = None
            repository.soft_delete(session, row)

        runtime.quota.run_in_transaction(destroy)
        runtime.notifier.info(common.ctx(context), "snapshot.delete.end",
                              {"snapshot_id": snapshot_id,
                               "volume_id": snapshot_ref["volume_id"],
                               "volume_size": snapshot_ref["volume_size"],
                               "unmanaged": (self.unmanage_only
                                             or _releases_only(snapshot_ref)),
                               "host": runtime.host})


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
