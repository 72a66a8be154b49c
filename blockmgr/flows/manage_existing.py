"""Bring an existing backend volume under management (seed 001, in the snapshot flow's shape).

extract volume ref -> notify start -> prepare for quota reservation (driver get_size) ->
quota reserve -> manage existing -> quota commit -> on finish (``available``, notify end).

The API created the row (``managing``, size 0) and counted ``volumes: +1``; this flow charges
``gigabytes: +size``. Failure: ``error_managing``, the reservation rolled back, the backend
object untouched -- if the driver had already bound it, the revert *unmanages* it (never
deletes) -- and a ``volume.manage_existing.error`` event.
Store: ``context``, ``volume_id``, ``manage_existing_ref``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "volume:manage_existing"
V = states.VolumeStatus


def _view(runtime, volume_id: str) -> objects.VolumeView:
    with runtime.db.reader() as session:
        return objects.VolumeView.from_model(repository.get(session, models.Volume, volume_id))


class ExtractVolumeRefTask(common.FlowTask):
    """Check the row exists and is being managed; provides ``volume_ref`` (JSON facts)."""

    default_provides = "volume_ref"

    def execute(self, runtime, volume_id):
        view = _view(runtime, volume_id)
        if view.status not in (V.MANAGING, V.AVAILABLE):
            raise exception.InvalidVolume(
                reason="volume %s is %s, not managing" % (volume_id, view.status))
        return {"id": view.id, "project_id": view.project_id, "host": view.host,
                "size": view.size}


class PrepareForQuotaReservationTask(common.FlowTask):
    """Ask the driver for the size (rounded up to GiB); provides ``size`` and
    ``quota_request``. Revert (whatever failed, here or later): ``error_managing``."""

    default_provides = ("size", "quota_request")

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref):
        size = int(runtime.driver.manage_existing_get_size(_view(runtime, volume_id),
                                                           manage_existing_ref))
        return size, {"project_id": volume_ref["project_id"], "deltas": {"gigabytes": size}}

    def revert(self, runtime, volume_id, flow_failures=None, **kwargs):
        try:
            with runtime.db.writer() as session:
                repository.transition(session, models.Volume, volume_id, V.ERROR_MANAGING,
                                      expected=(V.MANAGING, V.ERROR_MANAGING),
                                      status_reason=common.failure_reason(flow_failures))
        except exception.VolumeNotFound:
            common.LOG.warning("Volume %s vanished while reverting its import", volume_id)


class ManageExistingTask(common.FlowTask):
    """Bind the backend object to the volume; record the size and model update.
    Revert: unmanage (never delete). Interrupted by a crash it is reverted, not repeated:
    a half-done rename cannot be told from a bad reference."""

    default_provides = "managed"
    on_crash = common.REVERT

    def execute(self, runtime, volume_id, manage_existing_ref, size):
        update = runtime.driver.manage_existing(_view(runtime, volume_id), manage_existing_ref)
        update = common.filter_model_update(update, common.VOLUME_MODEL_FIELDS,
                                            "volume %s" % volume_id)
        with runtime.db.writer() as session:
            row = repository.get(session, models.Volume, volume_id)
            repository.update(session, row, size=size, **update)
        return update

    def revert(self, runtime, volume_id, volume_ref, result, **kwargs):
        if common.is_failure(result) and not result.check(
                "blockmgr.exception.FlowInterrupted"):
            return   # the driver refused: nothing was bound
        try:
            runtime.driver.unmanage(_view(runtime, volume_id))
        except Exception:  # best effort: the volume is error_managing either way
            common.LOG.exception("Could not unmanage volume %s while reverting", volume_id)
        with runtime.db.writer() as session:   # it no longer holds the backend's gigabytes
            repository.update(session, repository.get(session, models.Volume, volume_id),
                              size=volume_ref["size"])


class ManageExistingOnFinishTask(common.FlowTask):
    """Status ``available`` with ``launched_at``, then ``volume.manage_existing.end``."""

    def __init__(self, event_suffix: str):
        super().__init__(addon=event_suffix)
        self.event_suffix = event_suffix

    def execute(self, runtime, context, volume_id, size):
        with runtime.db.writer() as session:
            repository.transition(session, models.Volume, volume_id, V.AVAILABLE,
                                  expected=(V.MANAGING, V.AVAILABLE),
                                  launched_at=models.utcnow(), status_reason=None)
        runtime.notifier.info(common.ctx(context), "volume.%s" % self.event_suffix,
                              {"volume_id": volume_id, "size": size, "host": runtime.host})


def get_flow() -> linear_flow.Flow:
    flow = linear_flow.Flow(ACTION.replace(":", "_") + "_manager")
    flow.blockmgr_action = ACTION
    return flow.add(
        ExtractVolumeRefTask(),
        common.NotifyStartTask("volume", "manage_existing", "volume_id"),
        PrepareForQuotaReservationTask(),
        common.QuotaReserveTask(),
        ManageExistingTask(),
        common.QuotaCommitTask(),
        ManageExistingOnFinishTask("manage_existing.end"),
    )
