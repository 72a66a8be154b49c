"""Take a snapshot of a volume on this backend.

extract snapshot -> notify start -> create on the backend -> on finish (``available``,
progress ``100%``, notify end).

The API created the row (``creating``) and already counted ``snapshots: +1, gigabytes:
+volume_size``; this flow does no quota work. Failure: the snapshot ends ``error`` and keeps
its usage until it is deleted (as in Cinder), a ``snapshot.create.error`` is sent. Whatever
the driver may have left on the backend under the snapshot's name goes with the user's delete
of the ``error`` snapshot (deleting is idempotent), never silently here.
A crash resumes the flow: creating a snapshot that exists already succeeds (driver contract).
Store: ``context``, ``snapshot_id``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "snapshot:create"
S = states.SnapshotStatus


def snapshot_view(runtime, snapshot_id: str) -> objects.SnapshotView:
    with runtime.db.reader() as session:
        return objects.SnapshotView.from_model(
            repository.get(session, models.Snapshot, snapshot_id))


class ExtractSnapshotTask(common.FlowTask):
    """Check the row is ``creating``; provides ``snapshot_ref`` (JSON facts).
    Revert (whatever failed after it): the snapshot goes to ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "snapshot_ref"

    def execute(self, runtime, snapshot_id):
        view = snapshot_view(runtime, snapshot_id)
        if view.status != S.CREATING:
            raise exception.InvalidSnapshot(
                reason="snapshot %s is %s, not creating" % (snapshot_id, view.status))
        return {"id": view.id, "volume_id": view.volume_id, "volume_size": view.volume_size,
                "project_id": view.project_id}

    def revert(self, runtime, snapshot_id, result, flow_failures=None, **kwargs):
        if common.is_failure(result):
            return   # the row was not ours to change
        common.finish(runtime, models.Snapshot, snapshot_id, S.ERROR, in_progress=S.CREATING,
                      status_reason=common.failure_reason(flow_failures))


class CreateSnapshotOnBackendTask(common.FlowTask):
    """Ask the driver for the snapshot and write its model update; provides
    ``model_update``. Safe to repeat after a crash (an existing snapshot is kept)."""

    default_provides = "model_update"

    def execute(self, runtime, snapshot_id):
        update = runtime.driver.create_snapshot(snapshot_view(runtime, snapshot_id))
        update = common.filter_model_update(update, common.SNAPSHOT_MODEL_FIELDS,
                                            "snapshot %s" % snapshot_id)
        if update:
            with runtime.db.writer() as session:
                repository.update(session,
                                  repository.get(session, models.Snapshot, snapshot_id),
                                  **update)
        return update


class CreateSnapshotOnFinishTask(common.OnFinishTask):
    """Status ``available``, progress ``100%``, then ``snapshot.create.end``."""

    kind = "snapshot"

    def execute(self, runtime, context, snapshot_id, snapshot_ref):
        common.finish(runtime, models.Snapshot, snapshot_id, S.AVAILABLE,
                      in_progress=S.CREATING, progress="100%", status_reason=None)
        self.notify_end(runtime, context,
                        {"snapshot_id": snapshot_id,
                         "volume_id": snapshot_ref["volume_id"],
                         "volume_size": snapshot_ref["volume_size"],
                         "host": runtime.host})


def lock_names(snapshot_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The snapshot, and its volume's delete lock: the source must not go away meanwhile."""
    volume_id = rows.snapshot_volume(snapshot_id)
    return [snapshot_id] + ([common.delete_volume_lock(volume_id)] if volume_id else [])


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractSnapshotTask(),
        common.NotifyStartTask("snapshot", "create", "snapshot_id"),
        CreateSnapshotOnBackendTask(),
        CreateSnapshotOnFinishTask("create.end"),
    )
