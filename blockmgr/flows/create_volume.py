"""Create a volume on this backend (the tasks of Cinder's manager create flow, in its order).

extract volume ref -> reschedule-on-failure -> extract spec (raw / from snapshot / from
source volume) -> notify start -> create from spec -> on finish (``available``, notify end).

Quota was reserved and committed by the API; this flow does no quota work (a volume that ends
in ``error`` keeps its usage until deleted, as in Cinder).
Failure: :class:`OnFailureRescheduleTask` either sends the request back to the scheduler
(status stays ``creating``, ``host`` cleared) or errors the volume out. Unlike Cinder, a
failed reschedule cast errors the volume out too: it never stays ``creating``.
Store: ``context``, ``volume_id``, ``request_spec``, ``filter_properties``,
``allow_reschedule``, ``flow_id``.

On the success path the row is read once, by the extract task; the create task gives the
driver the view from its result ``refreshed`` (persisted in the logbook). Nothing else writes
the row while the flow runs (the manager holds the volume's lock, the status is
``creating``). A create re-run after a crash therefore sees the view of the first attempt,
without the provider fields that attempt may have written: creating an existing volume
succeeds whatever the view's provider fields (driver contract), and the re-run writes the
driver's model update again.
"""

from __future__ import annotations

import dataclasses
import traceback

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "volume:create"
V = states.VolumeStatus
SPEC_TYPES = ("raw", "snap", "source_vol")


def _view(runtime, volume_id: str) -> objects.VolumeView:
    with runtime.db.reader() as session:
        return objects.VolumeView.from_model(repository.get(session, models.Volume, volume_id))


def _error_out(runtime, volume_id: str, reason: str, **values) -> None:
    common.finish(runtime, models.Volume, volume_id, V.ERROR, in_progress=V.CREATING,
                  status_reason=reason[:255], **values)


class ExtractVolumeRefTask(common.FlowTask):
    """Check the row exists and is ``creating``; provides ``refreshed``: every
    :class:`~blockmgr.interface.objects.VolumeView` field (JSON).

    ``volume_row``: the row as the manager read it under the volume's lock, just before the
    run (a transient value: a resumed run does not have it and reads the row)."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "refreshed"

    def execute(self, runtime, volume_id, volume_row=None):
        if volume_row is not None and volume_row.get("id") == volume_id:
            view = objects.VolumeView(**volume_row)
        else:
            view = _view(runtime, volume_id)
        if view.status != V.CREATING:
            raise exception.InvalidVolume(
                reason="volume %s is %s, not creating" % (volume_id, view.status))
        return dataclasses.asdict(view)


class OnFailureRescheduleTask(common.FlowTask):
    """No-op forward. Revert: reschedule the create, or error the volume out.

    Rescheduled when rescheduling is allowed, the filter properties carry ``retry`` info, a
    reschedule path exists, and no failure is of a non-reschedulable kind
    (``BlockmgrError.reschedulable``; interrupted-by-crash included). Then: ``host`` cleared,
    ``scheduled_at`` set, the scheduler cast (``request_spec['volume_id']``,
    ``retry['exc']``), and the partial backend object deleted, best effort. Returns True iff
    rescheduled. A failing cast errors the volume out (Cinder leaves it ``creating``).
    """

    durable_start = False   # reads / notifies only (FlowTask)

    def execute(self, runtime, volume_id):
        return None

    def revert(self, runtime, context, volume_id, request_spec, filter_properties,
               allow_reschedule, flow_failures=None, **kwargs):
        reason = common.failure_reason(flow_failures)
        failures = list((flow_failures or {}).values())
        can = (allow_reschedule and request_spec is not None and runtime.reschedule is not None
               and (filter_properties or {}).get("retry") is not None
               and all(common.failure_reschedulable(f) for f in failures))
        if not can:
            _error_out(runtime, volume_id, reason)
            _notify_error(runtime, context, volume_id, reason)
            return False
        view = _view(runtime, volume_id)
        with runtime.db.writer() as session:
            row = repository.get(session, models.Volume, volume_id)
            repository.update(session, row, host=None, scheduled_at=models.utcnow())
        spec = dict(request_spec, volume_id=volume_id)
        props = dict(filter_properties)
        props["retry"] = dict(props["retry"], exc=_format_failure(failures))
        try:
            runtime.reschedule(common.ctx(context), volume_id, spec, props)
        except Exception as exc:
            common.LOG.exception("Rescheduling volume %s failed", volume_id)
            reason = "%s; reschedule failed: %s" % (reason, exc)
            _error_out(runtime, volume_id, reason, host=view.host)
            _notify_error(runtime, context, volume_id, reason)
            return False
        try:
            runtime.driver.delete_volume(view)
        except Exception:
            common.LOG.warning("Could not delete the partial volume %s after rescheduling",
                               volume_id, exc_info=True)
        return True


def _notify_error(runtime, context, volume_id: str, reason: str) -> None:
    runtime.notifier.error(common.ctx(context), "volume.create.error",
                           {"volume_id": volume_id, "host": runtime.host, "reason": reason})


def _format_failure(failures) -> str:
    if not failures:
        return ""
    failure = failures[0]
    if failure.exc_info:
        return "".join(traceback.format_exception(*failure.exc_info))
    return failure.pformat(traceback=True)


class ExtractVolumeSpecTask(common.FlowTask):
    """Provides ``volume_spec``: ``type`` (raw | snap | source_vol), size, name, and the
    source id. Precedence: snapshot, then source volume, else raw."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "volume_spec"

    def execute(self, runtime, volume_id, request_spec, refreshed):
        request_spec = request_spec or {}
        spec = {"volume_id": volume_id, "volume_name": "volume-%s" % volume_id,
                "volume_size": refreshed["size"], "status": V.CREATING.value}
        if request_spec.get("image_id") or request_spec.get("backup_id"):
            raise exception.Unsupported(operation="create volume from image or backup",
                                        what="this blockmgr release")
        if request_spec.get("snapshot_id"):
            spec.update(type="snap", snapshot_id=request_spec["snapshot_id"])
        elif request_spec.get("source_volid"):
            spec.update(type="source_vol", source_volid=request_spec["source_volid"])
        else:
            spec["type"] = "raw"
        return spec


class CreateVolumeFromSpecTask(common.FlowTask):
    """Ask the driver to create the volume as the spec says; write its model update.
    Repeating it after a crash is safe: creating an existing volume succeeds (driver
    contract). Provides ``model_update``."""

    default_provides = "model_update"

    def execute(self, runtime, volume_id, volume_spec, refreshed):
        view = objects.VolumeView(**refreshed)
        extra = {}
        if volume_spec["type"] == "raw":
            update = runtime.driver.create_volume(view)
        elif volume_spec["type"] == "snap":
            with runtime.db.reader() as session:
                snap = repository.get(session, models.Snapshot, volume_spec["snapshot_id"])
                origin = repository.get(session, models.Volume, snap.volume_id,
                                        read_deleted=True)
                snap_view = objects.SnapshotView.from_model(snap)
                extra["bootable"] = origin.bootable
            update = runtime.driver.create_volume_from_snapshot(view, snap_view)
        elif volume_spec["type"] == "source_vol":
            with runtime.db.reader() as session:
                src = repository.get(session, models.Volume, volume_spec["source_volid"])
                src_view = objects.VolumeView.from_model(src)
                extra["bootable"] = src.bootable
            update = runtime.driver.create_cloned_volume(view, src_view)
        else:
            raise exception.InvalidInput(reason="unknown volume spec type %r"
                                         % volume_spec["type"])
        update = common.filter_model_update(update, common.VOLUME_MODEL_FIELDS,
                                            "volume %s" % volume_id)
        if update or extra:
            with runtime.db.writer() as session:
                repository.update_by_id(session, models.Volume, volume_id, **update, **extra)
        return update


class CreateVolumeOnFinishTask(common.OnFinishTask):
    """Status ``available`` with ``launched_at``, then ``volume.create.end``."""

    kind = "volume"
    closes_flow = True

    def execute(self, runtime, context, volume_id, volume_spec, flow_id):
        common.close(runtime, flow_id, models.Volume, volume_id, V.AVAILABLE,
                     in_progress=V.CREATING, launched_at=models.utcnow(), status_reason=None)
        self.notify_end(runtime, context,
                        {"volume_id": volume_id, "size": volume_spec["volume_size"],
                         "host": runtime.host})


def lock_names(volume_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The volume, and the delete lock of its source (a snapshot or a volume being cloned),
    which must not be deleted while the new volume is made from it (``request_spec``)."""
    spec = store.get("request_spec") or {}
    if spec.get("snapshot_id"):
        return [volume_id, common.delete_snapshot_lock(spec["snapshot_id"])]
    if spec.get("source_volid"):
        return [volume_id, common.delete_volume_lock(spec["source_volid"])]
    return [volume_id]


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractVolumeRefTask(),
        OnFailureRescheduleTask(),
        ExtractVolumeSpecTask(),
        # The error event is OnFailureRescheduleTask's: a rescheduled create has not failed.
        common.NotifyStartTask("volume", "create", "volume_id", error_on_revert=False),
        CreateVolumeFromSpecTask(),
        CreateVolumeOnFinishTask("create.end"),
        # Where the runner puts the volume if the flow cannot be finished (logbook down).
        error_status=(models.Volume, V.ERROR, (V.CREATING,)),
    )
