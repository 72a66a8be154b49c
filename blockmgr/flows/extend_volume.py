"""Grow a volume to ``new_size`` GiB.

extract volume -> notify start -> reserve ``gigabytes: +delta`` (adopting the API's
reservations) -> extend on the backend -> on finish (commit, size, status, notify end).

The API moved the row from ``available``/``in-use`` to ``extending`` (``previous_status``
saved) and may have reserved ``gigabytes: +delta`` already, passing the uuids
(``api_reservations``). Those reservations have no owner, so nothing but expiry would resolve
them if this worker died. The flow therefore *adopts* them: in one transaction it rolls them
back and reserves the same delta owned by itself (:class:`ReserveExtendQuotaTask`), so from
then on recovery commits or rolls back exactly what the flow holds. Without API reservations
the flow simply reserves. The commit, the new size and the final status are one transaction.

Failure: ``error_extending``, every reservation (the flow's and the API's) rolled back, a
``volume.resize.error`` event. A crash resumes the flow: extending to the size a volume
already has is a no-op (driver contract).
Store: ``context``, ``volume_id``, ``new_size``, ``api_reservations``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

ACTION = "volume:extend"
V = states.VolumeStatus


class ExtractVolumeTask(common.FlowTask):
    """Check the row is ``extending`` and ``new_size`` grows it; provides ``volume_ref``.
    Revert (whatever failed): the API's reservations rolled back; ``error_extending``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "volume_ref"

    def execute(self, runtime, volume_id, new_size):
        with runtime.db.reader() as session:
            row = repository.get(session, models.Volume, volume_id)
            ref = {"id": row.id, "project_id": row.project_id, "size": row.size,
                   "host": row.host, "use_quota": row.use_quota,
                   "previous_status": row.previous_status,
                   "attached": row.attach_status == "attached",
                   "volume_type_id": row.volume_type_id}
            status = row.status
        if status != V.EXTENDING:
            raise exception.InvalidVolume(
                reason="volume %s is %s, not extending" % (volume_id, status))
        if isinstance(new_size, bool) or not isinstance(new_size, int) \
                or new_size <= ref["size"]:
            raise exception.InvalidInput(
                reason="new size %r of volume %s must be an integer larger than its "
                       "current %d GiB" % (new_size, volume_id, ref["size"]))
        return ref

    def revert(self, runtime, volume_id, api_reservations, result, flow_failures=None,
               **kwargs):
        runtime.quota.rollback(api_reservations or [])
        if common.is_failure(result) and not result.check("blockmgr.exception.InvalidInput"):
            return   # the row was not ours to change
        try:
            with runtime.db.writer() as session:
                repository.transition(session, models.Volume, volume_id, V.ERROR_EXTENDING,
                                      expected=(V.EXTENDING, V.ERROR_EXTENDING),
                                      status_reason=common.failure_reason(flow_failures))
        except (exception.VolumeNotFound, exception.InvalidStatusTransition) as exc:
            common.LOG.warning("Volume %s not set to error_extending: %s", volume_id, exc)


class ReserveExtendQuotaTask(common.FlowTask):
    """Swap the API's reservations for ``gigabytes: +delta`` owned by the flow, atomically;
    provides ``reservations``. A repeat finds the flow's reservations and returns them.
    Revert: roll back everything the flow owns (the API's were rolled back in the swap, or
    are by :class:`ExtractVolumeTask`'s revert)."""

    default_provides = "reservations"

    def execute(self, runtime, flow_id, new_size, volume_ref, api_reservations):
        live = runtime.quota.reservations_of(flow_id)
        if live:
            return live
        delta = new_size - volume_ref["size"]
        if not volume_ref["use_quota"]:
            runtime.quota.rollback(api_reservations or [])
            return []

        def swap(session):
            runtime.quota.rollback(api_reservations or [], session=session)
            return runtime.quota.reserve(volume_ref["project_id"], owner=flow_id,
                                         session=session, gigabytes=delta,
                                         volume_type_id=volume_ref.get("volume_type_id"))

        return runtime.quota.run_in_transaction(swap)

    def revert(self, runtime, flow_id, **kwargs):
        runtime.quota.rollback_owned(flow_id)


class ExtendVolumeOnBackendTask(common.FlowTask):
    """``driver.extend_volume``. Repeating it after a crash is a no-op; nothing to undo
    (volumes never shrink)."""

    def execute(self, runtime, volume_id, new_size):
        with runtime.db.reader() as session:
            view = objects.VolumeView.from_model(
                repository.get(session, models.Volume, volume_id))
        runtime.driver.extend_volume(view, new_size)


class ExtendVolumeOnFinishTask(common.OnFinishTask):
    """In one transaction: commit the flow's reservations, write the size and the status
    (``in-use`` when attached, else ``available``). Then ``volume.resize.end`` with the new
    size. A repeat after a crash that followed the commit writes nothing: a second extend
    the API accepted meanwhile must keep its status and its size."""

    kind = "volume"

    def execute(self, runtime, context, flow_id, volume_id, new_size, volume_ref):
        target = V.IN_USE if volume_ref["attached"] else V.AVAILABLE

        # A second extend can make the row ``extending`` again once this one finished; the
        # size tells the two apart (only this write sets it to ``new_size``).
        common.finish_and_commit(runtime, flow_id, models.Volume, volume_id, target,
                                 in_progress=V.EXTENDING,
                                 pending=(models.Volume.size < new_size,), size=new_size,
                                 previous_status=None, status_reason=None)
        self.notify_end(runtime, context,
                        {"volume_id": volume_id, "size": new_size,
                         "previous_size": volume_ref["size"], "host": runtime.host})


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractVolumeTask(),
        common.NotifyStartTask("volume", "resize", "volume_id"),
        ReserveExtendQuotaTask(),
        ExtendVolumeOnBackendTask(),
        ExtendVolumeOnFinishTask("resize.end"),
    )
