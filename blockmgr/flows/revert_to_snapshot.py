"""Revert a volume to its latest snapshot (``revert`` volume action, microversion 3.40).

extract (check the volume is ``reverting``, the snapshot ``restoring``, the snapshot is the
volume's latest and of the volume's size) -> notify start -> revert on the backend -> on
finish (volume ``available``, snapshot ``available`` in one transaction, notify end).

The API moved the volume from ``available`` to ``reverting`` and the snapshot from
``available`` to ``restoring`` in the transaction that accepted the request; no quota changes
(the sizes are equal). A snapshot found ``available`` again (an operator reset it while the
request waited) is taken back to ``restoring`` here.

Failure: the volume ends ``error`` with the cause in ``status_reason`` and the snapshot
``available`` (the snapshot is never lost), a ``volume.revert.error`` is sent, as in Cinder.
Two failures change nothing on the backend and end ``available`` instead, with the reason
recorded: the extract checks refusing (the snapshot is no longer the latest one, its size
differs, it was deleted) and the driver raising ``Unsupported`` or ``VolumeIsBusy`` (its
contract: refused before touching the volume).
A crash resumes the flow: reverting a volume to a snapshot twice leaves the snapshot's data
(driver contract), and the finishing write happens only while the rows are still in their
in-progress statuses.
Store: ``context``, ``volume_id``, ``snapshot_id``, ``flow_id``.
"""

from __future__ import annotations

import sqlalchemy as sa
from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "volume:revert"
V, S = states.VolumeStatus, states.SnapshotStatus

#: Failures that leave the volume as it was: it goes back to ``available``, not ``error``.
_UNCHANGED = ("blockmgr.exception.Unsupported", "blockmgr.exception.VolumeIsBusy")


def latest_snapshot(session, volume_id: str):
    """The volume's newest live snapshot (any status), or None: Cinder's rule for which
    snapshot a volume may be reverted to (newest ``created_at``, then the largest id)."""
    stmt = (sa.select(models.Snapshot)
            .where(models.Snapshot.volume_id == volume_id, models.Snapshot.deleted.is_(False))
            .order_by(models.Snapshot.created_at.desc(), models.Snapshot.id.desc())
            .limit(1))
    return session.scalars(stmt).first()


def check_revertible(volume, snapshot, latest) -> None:
    """Raise the error the API and the flow give when ``volume`` may not be reverted to
    ``snapshot`` whatever the statuses: not its snapshot, not its latest, another size."""
    if snapshot.volume_id != volume.id:
        raise exception.InvalidSnapshot(
            reason="snapshot %s is a snapshot of volume %s, not of volume %s"
            % (snapshot.id, snapshot.volume_id, volume.id))
    if latest is None or latest.id != snapshot.id:
        raise exception.InvalidSnapshot(
            reason="snapshot %s is not the latest snapshot of volume %s (the latest is %s); "
                   "a volume can only be reverted to its latest snapshot"
            % (snapshot.id, volume.id, latest.id if latest is not None else "none"))
    if volume.size != snapshot.volume_size:
        raise exception.InvalidVolume(
            reason="volume %s is %d GiB and snapshot %s was taken at %d GiB; a volume can "
                   "only be reverted to a snapshot of its current size"
            % (volume.id, volume.size, snapshot.id, snapshot.volume_size))


class ExtractRevertTask(common.FlowTask):
    """Check the volume is ``reverting``, the snapshot ``restoring`` (an ``available`` one is
    taken back to ``restoring``), the snapshot is the volume's latest and of its size;
    provides ``revert_ref``.

    Revert (whatever failed, while the volume is still ``reverting``): the snapshot back to
    ``available``; the volume ``available`` if nothing was changed (these checks refused, or
    the driver raised ``Unsupported`` / ``VolumeIsBusy``), else ``error``; the cause in
    ``status_reason``."""

    default_provides = "revert_ref"

    def execute(self, runtime, volume_id, snapshot_id):
        with runtime.db.writer() as session:
            volume = repository.get(session, models.Volume, volume_id)
            if volume.status != V.REVERTING:
                raise exception.InvalidVolume(
                    reason="volume %s is %s, not reverting" % (volume_id, volume.status))
            snapshot = repository.get(session, models.Snapshot, snapshot_id)
            check_revertible(volume, snapshot, latest_snapshot(session, volume_id))
            if snapshot.status == S.AVAILABLE:
                repository.transition(session, models.Snapshot, snapshot_id, S.RESTORING,
                                      expected=(S.AVAILABLE,), fetch=False)
            elif snapshot.status != S.RESTORING:
                raise exception.InvalidSnapshot(
                    reason="snapshot %s is %s, not restoring" % (snapshot_id, snapshot.status))
            return {"volume_id": volume.id, "snapshot_id": snapshot.id, "size": volume.size,
                    "project_id": volume.project_id}

    def revert(self, runtime, volume_id, snapshot_id, result, flow_failures=None, **kwargs):
        failures = list((flow_failures or {}).values())
        unchanged = common.is_failure(result) or any(f.check(*_UNCHANGED) for f in failures)
        reason = common.failure_reason(flow_failures)
        with runtime.db.writer() as session:
            try:
                current = repository.get(session, models.Volume, volume_id).status
            except exception.VolumeNotFound:
                return
            if current != V.REVERTING:
                return   # not ours to change (a stray message, or already settled)
            common.finish_in(session, models.Snapshot, snapshot_id, S.AVAILABLE,
                             in_progress=S.RESTORING)
            common.finish_in(session, models.Volume, volume_id,
                             V.AVAILABLE if unchanged else V.ERROR,
                             in_progress=V.REVERTING, status_reason=reason)


class RevertOnBackendTask(common.FlowTask):
    """``driver.revert_to_snapshot``: the volume's data becomes the snapshot's. Repeating it
    after a crash gives the same data (driver contract); nothing to undo here (the flow's
    revert records the failure)."""

    def execute(self, runtime, context, volume_id, snapshot_id):
        with runtime.db.reader() as session:
            volume = objects.VolumeView.from_model(
                repository.get(session, models.Volume, volume_id))
            snapshot = objects.SnapshotView.from_model(
                repository.get(session, models.Snapshot, snapshot_id))
        runtime.driver.revert_to_snapshot(common.ctx(context), volume, snapshot)


class RevertOnFinishTask(common.OnFinishTask):
    """In one transaction: the volume ``reverting`` -> ``available`` and the snapshot
    ``restoring`` -> ``available`` (each only from its in-progress status, so a repeat after
    a crash writes nothing). Then ``volume.revert.end``."""

    kind = "volume"

    def execute(self, runtime, context, volume_id, snapshot_id, revert_ref):
        with runtime.db.writer() as session:
            common.finish_in(session, models.Snapshot, snapshot_id, S.AVAILABLE,
                             in_progress=S.RESTORING)
            common.finish_in(session, models.Volume, volume_id, V.AVAILABLE,
                             in_progress=V.REVERTING, status_reason=None)
        self.notify_end(runtime, context,
                        {"volume_id": volume_id, "snapshot_id": snapshot_id,
                         "size": revert_ref["size"], "host": runtime.host})


def lock_names(volume_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The volume; the snapshot's delete lock, so it is not deleted meanwhile; the volume's
    delete lock, so snapshots and clones do not read the volume half-reverted
    (``snapshot_id``)."""
    names = [volume_id, common.delete_volume_lock(volume_id)]
    if store.get("snapshot_id"):
        names.append(common.delete_snapshot_lock(store["snapshot_id"]))
    return names


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractRevertTask(),
        common.NotifyStartTask("volume", "revert", "volume_id"),
        RevertOnBackendTask(),
        RevertOnFinishTask("revert.end"),
    )
