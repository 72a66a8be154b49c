"""Delete a volume, or unmanage it (``get_flow(unmanage_only=True)``), on this backend.

extract volume -> notify start -> delete (or unmanage) on the backend -> destroy the row and
return its quota in ONE transaction -> notify end.

The API moved the row to ``deleting`` (``unmanaging`` for an unmanage,
``error_managing_deleting`` for a volume whose import failed). Unmanage keeps the backend
object (the driver only lets go of it) and sends ``volume.unmanage.*`` instead of
``volume.delete.*``; otherwise it is the same flow, hence one module.

Quota, and why it cannot drift: the usage a volume holds is given back by a negative
reservation owned by the flow and committed in the *same* transaction that soft-deletes the
row (:class:`DestroyVolumeTask`), so no crash can leave the row gone with its usage still
counted, or the reverse. What is returned is what the volume is counted for:

* a normal volume: ``volumes: -1, gigabytes: -size``;
* an ``error_managing_deleting`` volume: ``volumes: -1`` only. The API counted ``volumes: +1``
  when the import was requested; the import's ``gigabytes`` were never charged (the manage
  flow rolls its reservation back, or compensates its commit, whenever it ends in
  ``error_managing``), so returning them would count them twice;
* with ``cascade``: also ``snapshots: -1, gigabytes: -volume_size`` (no gigabytes under
  ``[quota] no_snapshot_gb_quota``) per snapshot, soft-deleted in the same transaction;
* a volume with ``use_quota = False`` (temporary/migration): nothing, and no notifications.

A volume whose import failed (``error_managing_deleting``) is never deleted on the backend:
the object it was bound to is the user's, and the failed manage gave it its original name
back (``restore_managed_name``); if that could not be done, the object still carries the
volume's name, so the flow *unmanages* it instead of deleting it. Only the row goes.

Failure (any task): the volume goes back to ``available`` if the driver said
:class:`~blockmgr.exception.VolumeIsBusy` (nothing was deleted); otherwise to
``error_deleting`` (``error_unmanaging``; ``error_managing`` for a failed import's delete).
With ``cascade``, every snapshot the flow took (all ``deleting``) that is still there goes
to ``error_deleting`` with the same ``status_reason``, so each can be deleted again; when the
cascade is refused because one snapshot is no longer ``deleting``, the volume's snapshots that
are go to ``error_deleting`` too (the manager holds every snapshot's delete lock meanwhile).
The quota is unchanged and a ``volume.delete.error`` (``volume.unmanage.error``) is sent.
A crash anywhere resumes the flow: every task is idempotent (deleting what is gone succeeds).
Store: ``context``, ``volume_id``, ``cascade``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "volume:delete"
UNMANAGE_ACTION = "volume:unmanage"
V, S = states.VolumeStatus, states.SnapshotStatus

#: Status the flow expects at the start -> status it leaves on failure (busy aside).
_FAILED = {V.DELETING: V.ERROR_DELETING, V.UNMANAGING: V.ERROR_UNMANAGING,
           V.ERROR_MANAGING_DELETING: V.ERROR_MANAGING}
_STARTS = {False: (V.DELETING, V.ERROR_MANAGING_DELETING), True: (V.UNMANAGING,)}


def _is_busy(flow_failures) -> bool:
    return any(f.check("blockmgr.exception.VolumeIsBusy")
               for f in (flow_failures or {}).values())


class ExtractVolumeTask(common.FlowTask):
    """Check the volume may be deleted here; provides ``volume_ref`` (JSON facts).

    Refuses an attached volume (:class:`VolumeAttached`), an unmanage with cascade, and a
    cascade over snapshots that are not all ``deleting`` (:class:`InvalidSnapshot`).
    Revert (whatever failed): the status the module docstring names.
    """

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "volume_ref"

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.unmanage_only = unmanage_only

    def execute(self, runtime, volume_id, cascade):
        with runtime.db.reader() as session:
            row = repository.get(session, models.Volume, volume_id)
            snapshots = [(s.id, s.status) for s in repository.snapshots_of_volume(session,
                                                                                 volume_id)]
            ref = {"id": row.id, "project_id": row.project_id, "size": row.size,
                   "status": row.status, "host": row.host, "use_quota": row.use_quota,
                   "attach_status": row.attach_status}
        if ref["status"] not in _STARTS[self.unmanage_only]:
            raise exception.InvalidVolume(
                reason="volume %s is %s, not %s" % (volume_id, ref["status"], " or ".join(
                    _STARTS[self.unmanage_only])))
        if ref["attach_status"] == "attached":
            raise exception.VolumeAttached(volume_id=volume_id)
        if cascade and self.unmanage_only:
            raise exception.InvalidVolume(reason="unmanage cannot cascade to snapshots")
        if cascade:
            pending = sorted(sid for sid, status in snapshots if status != S.DELETING)
            if pending:
                raise exception.InvalidSnapshot(
                    reason="cascade delete of volume %s needs every snapshot 'deleting'; "
                           "not: %s" % (volume_id, ", ".join(pending)))
        ref["snapshot_ids"] = sorted(sid for sid, _status in snapshots) if cascade else []
        return ref

    def revert(self, runtime, volume_id, cascade, result, flow_failures=None, **kwargs):
        busy = _is_busy(flow_failures)
        reason = common.failure_reason(flow_failures)
        if isinstance(result, dict) and result.get("snapshot_ids"):
            _fail_snapshots(runtime, volume_id, result["snapshot_ids"], reason)
        elif cascade and common.is_failure(result) and result.check(
                "blockmgr.exception.InvalidSnapshot"):
            # The cascade was refused (a snapshot is no longer deleting): the others the API
            # moved to deleting for it must not stay deleting without a flow.
            with runtime.db.reader() as session:
                pending = [s.id for s in repository.snapshots_of_volume(session, volume_id)
                           if s.status == S.DELETING]
            _fail_snapshots(runtime, volume_id, pending, reason)
        for start in _STARTS[self.unmanage_only]:
            target = V.AVAILABLE if busy and start != V.ERROR_MANAGING_DELETING \
                else _FAILED[start]
            try:
                with runtime.db.writer() as session:
                    repository.transition(session, models.Volume, volume_id, target,
                                          expected=(start, target), status_reason=reason)
                return
            except exception.InvalidStatusTransition:
                continue   # not in this start status (or never was ours to change)
            except exception.VolumeNotFound:
                common.LOG.warning("Volume %s vanished while its delete failed", volume_id)
                return


def _fail_snapshots(runtime, volume_id: str, snapshot_ids: list[str], reason: str) -> None:
    """Move the cascade's snapshots that are still ``deleting`` to ``error_deleting`` with
    ``reason`` (one transaction); the ones already gone or moved on are left alone."""
    moved = []
    with runtime.db.writer() as session:
        for snapshot_id in snapshot_ids:
            try:
                repository.transition(session, models.Snapshot, snapshot_id,
                                      S.ERROR_DELETING, expected=(S.DELETING,),
                                      fetch=False, status_reason=reason)
                moved.append(snapshot_id)
            except (exception.SnapshotNotFound, exception.InvalidStatusTransition):
                continue
    if moved:
        common.LOG.warning("Cascade delete of volume %s failed; snapshot(s) %s are "
                           "error_deleting: %s", volume_id, ", ".join(moved), reason)


class NotifyDeleteStartTask(common.NotifyStartTask):
    """``volume.<delete|unmanage>.start`` (``.error`` on revert), only for volumes that
    count against quota: temporary volumes send nothing, as in Cinder."""

    durable_start = False   # reads / notifies only (FlowTask)

    def execute(self, runtime, context, volume_ref, **kwargs):
        if volume_ref["use_quota"]:
            super().execute(runtime, context, **kwargs)

    def revert(self, runtime, context, volume_ref, **kwargs):
        if volume_ref["use_quota"]:
            super().revert(runtime, context, **kwargs)


class DeleteVolumeOnBackendTask(common.FlowTask):
    """Remove the export, then (cascade: delete each snapshot and) delete the volume, or
    unmanage it. A volume whose import failed (``error_managing_deleting``) is unmanaged,
    never deleted: its object is the user's. Idempotent by the driver contract (deleting
    what is gone succeeds), so a crash resumes it. Nothing to undo on revert: a deleted
    object cannot come back."""

    def __init__(self, unmanage_only: bool):
        super().__init__()
        self.unmanage_only = unmanage_only

    def execute(self, runtime, context, volume_id, volume_ref):
        view = _volume_view(runtime, volume_id)
        runtime.driver.remove_export(common.ctx(context), view)
        if self.unmanage_only or volume_ref["status"] == V.ERROR_MANAGING_DELETING:
            runtime.driver.unmanage(view)
            return
        if volume_ref["snapshot_ids"]:
            with runtime.db.reader() as session:
                snapshots = [objects.SnapshotView.from_model(s)
                             for s in repository.snapshots_of_volume(session, volume_id)
                             if s.id in volume_ref["snapshot_ids"]]
            for snapshot in snapshots:
                runtime.driver.delete_snapshot(snapshot)
        runtime.driver.delete_volume(view)


class DestroyVolumeTask(common.FlowTask):
    """In one transaction: give back the quota (a negative reservation owned by the flow,
    committed at once) and soft-delete the row (and, cascading, its snapshots). A repeat
    finds the row deleted and does nothing. Then ``volume.<delete|unmanage>.end``."""

    def __init__(self, event: str):
        super().__init__(addon=event)
        self.event = event

    def execute(self, runtime, context, flow_id, volume_id, volume_ref):
        def destroy(session):
            row = repository.get(session, models.Volume, volume_id, read_deleted=True,
                                 for_update=True)
            if row.deleted:
                return False
            snapshots = [s for s in repository.snapshots_of_volume(session, volume_id)
                         if s.id in volume_ref["snapshot_ids"]]
            by_type = {row.volume_type_id: _volume_deltas(row)}
            for snapshot in snapshots:
                bm_quota.add_for_type(by_type, snapshot.volume_type_id,
                                      **snapshot_deltas(runtime.conf, snapshot))
            if any(any(deltas.values()) for deltas in by_type.values()):
                runtime.quota.commit(runtime.quota.reserve(
                    row.project_id, owner=flow_id, session=session, by_type=by_type),
                    session=session)
            for snapshot in snapshots:
                repository.soft_delete(session, snapshot)
            row.terminated_at = models.utcnow()
            row.status_reason = None
            repository.soft_delete(session, row)
            return True

        if runtime.quota.run_in_transaction(destroy) and volume_ref["use_quota"]:
            runtime.notifier.info(common.ctx(context), "volume.%s" % self.event,
                                  {"volume_id": volume_id, "size": volume_ref["size"],
                                   "host": runtime.host})


def _volume_view(runtime, volume_id: str) -> objects.VolumeView:
    with runtime.db.reader() as session:
        return objects.VolumeView.from_model(repository.get(session, models.Volume, volume_id))


def _volume_deltas(row: models.Volume) -> dict[str, int]:
    if not row.use_quota:
        return {}
    if row.status == V.ERROR_MANAGING_DELETING:
        return {"volumes": -1}
    return {"volumes": -1, "gigabytes": -row.size}


def snapshot_deltas(conf, snapshot: models.Snapshot) -> dict[str, int]:
    """The usage a live snapshot row holds, negated (what deleting it gives back)."""
    if not snapshot.use_quota:
        return {}
    deltas = {"snapshots": -1}
    if not (conf is not None and conf.quota.no_snapshot_gb_quota):
        deltas["gigabytes"] = -snapshot.volume_size
    return deltas


def lock_names(volume_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The volume and its delete lock; with ``cascade``, the delete locks of the snapshots
    deleted with it."""
    names = [volume_id, common.delete_volume_lock(volume_id)]
    if store.get("cascade"):
        names += [common.delete_snapshot_lock(s) for s in rows.volume_snapshots(volume_id)]
    return names


def get_flow(unmanage_only: bool = False) -> linear_flow.Flow:
    action = UNMANAGE_ACTION if unmanage_only else ACTION
    verb = action.partition(":")[2]
    return common.declare_flow(
        action,
        ExtractVolumeTask(unmanage_only),
        NotifyDeleteStartTask("volume", verb, "volume_id"),
        DeleteVolumeOnBackendTask(unmanage_only),
        DestroyVolumeTask(verb + ".end"),
    )
