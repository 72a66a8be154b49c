"""Bring an existing backend volume under management (seed 001, in the snapshot flow's shape).

extract volume ref -> notify start -> prepare for quota reservation (driver get_size) ->
quota reserve -> manage existing -> quota commit (and status ``available``, one
transaction) -> on finish (notify end).

The API created the row (``managing``, size 0) and counted ``volumes: +1``; this flow charges
``gigabytes: +size``. Failure: ``error_managing``, the reservation rolled back, the backend
object untouched -- if the driver had already bound it, the revert *unmanages* it (never
deletes) -- and a ``volume.manage_existing.error`` event.
Store: ``context``, ``volume_id``, ``manage_existing_ref``, ``flow_id``.

The row is read once, by the extract task; later tasks take the facts they need from its
result ``volume_ref`` (persisted in the logbook, so a resumed task sees the same facts). Only
this flow writes the row while it runs (the manager holds the volume's lock and the status
is ``managing``), so the facts cannot go stale before the manage task writes the binding.
The quota commit and the final status are one transaction (:class:`QuotaCommitTask`).
"""

from __future__ import annotations

import dataclasses

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


def _ref_view(volume_ref: dict) -> objects.VolumeView:
    """The driver's view of the volume as the extract task read it."""
    return objects.VolumeView(**volume_ref)


class ExtractVolumeRefTask(common.FlowTask):
    """Check the row exists and is being managed; provides ``volume_ref``: every
    :class:`~blockmgr.interface.objects.VolumeView` field (JSON), the only read of the row
    on the success path."""

    default_provides = "volume_ref"

    def execute(self, runtime, volume_id):
        view = _view(runtime, volume_id)
        if view.status not in (V.MANAGING, V.AVAILABLE):
            raise exception.InvalidVolume(
                reason="volume %s is %s, not managing" % (volume_id, view.status))
        return dataclasses.asdict(view)


class PrepareForQuotaReservationTask(common.FlowTask):
    """Ask the driver for the size (rounded up to GiB); provides ``size`` and
    ``quota_request``. Revert (whatever failed, here or later): ``error_managing``."""

    default_provides = ("size", "quota_request")

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref):
        size = int(runtime.driver.manage_existing_get_size(_ref_view(volume_ref),
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

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref, size):
        update = runtime.driver.manage_existing(_ref_view(volume_ref), manage_existing_ref)
        update = common.filter_model_update(update, common.VOLUME_MODEL_FIELDS,
                                            "volume %s" % volume_id)
        with runtime.db.writer() as session:
            row = repository.get(session, models.Volume, volume_id)
            repository.update(session, row, size=size, **update)
        return update

    def revert(self, runtime, volume_id, volume_ref, result, **kwargs):
        if common.manage_was_refused(result):
            return   # the driver refused: nothing was bound
        try:
            runtime.driver.unmanage(_view(runtime, volume_id))
        except Exception:  # best effort: the volume is error_managing either way
            common.LOG.exception("Could not unmanage volume %s while reverting", volume_id)
        with runtime.db.writer() as session:   # it no longer holds the backend's gigabytes
            repository.update(session, repository.get(session, models.Volume, volume_id),
                              size=volume_ref["size"])


class QuotaCommitTask(common.QuotaCommitTask):
    """Commit the flow's reservations and make the volume ``available`` (``launched_at``
    set) in ONE transaction; provides ``committed_quota`` like the shared task.

    Atomic on purpose: the project is charged the volume's gigabytes exactly when the
    volume becomes usable. With two transactions a crash between them left the usage
    committed on a ``managing`` volume until recovery resumed the flow. Idempotent on
    re-run: nothing of the flow is live any more and ``available`` -> ``available`` is
    allowed. If the status cannot be written (the row vanished or changed status), the
    commit rolls back with it; the task fails, and the reserve task's revert rolls the
    still-live reservation back, so the usage is never charged for a volume that did not
    become available. The inherited revert (give committed usage back) is reached only
    if a later task fails after this one succeeded.
    """

    def execute(self, runtime, flow_id, volume_id, quota_request, reservations):
        with runtime.db.writer() as session:
            runtime.quota.commit_owned(flow_id, session=session)
            repository.transition(session, models.Volume, volume_id, V.AVAILABLE,
                                  expected=(V.MANAGING, V.AVAILABLE),
                                  launched_at=models.utcnow(), status_reason=None)
        return {"project_id": quota_request["project_id"],
                "deltas": {k: v for k, v in quota_request["deltas"].items() if v}}


class ManageExistingOnFinishTask(common.FlowTask):
    """Sends ``volume.manage_existing.end``: the status was already made ``available``,
    together with the quota commit, by :class:`QuotaCommitTask`."""

    def __init__(self, event_suffix: str):
        super().__init__(addon=event_suffix)
        self.event_suffix = event_suffix

    def execute(self, runtime, context, volume_id, size):
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
        QuotaCommitTask(),
        ManageExistingOnFinishTask("manage_existing.end"),
    )
