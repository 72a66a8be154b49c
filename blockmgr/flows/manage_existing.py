"""Bring an existing backend volume under management (Cinder's manage_existing flow, in the
snapshot flow's shape).

extract volume ref -> notify start -> record manage source (driver
``manage_existing_source``) -> prepare for quota reservation (driver get_size) -> quota
reserve -> manage existing (driver only) -> quota commit (with the size, the driver's model
update and status ``available``: one transaction) -> on finish (notify end).

The API created the row (``managing``, size 0) and counted ``volumes: +1``; this flow charges
``gigabytes: +size``. Failure: ``error_managing``, the reservation rolled back, the backend
object given back under the name it had -- if the driver had already bound it, the revert
calls ``restore_managed_name`` with the reference :class:`RecordManageSourceTask` recorded
before the first rename (never a delete) -- and a ``volume.manage_existing.error`` event. A
request for a volume that is not ``managing`` is refused by the first task, before the
driver is asked anything, and changes nothing (neither the row nor the backend).
Store: ``context``, ``volume_id``, ``manage_existing_ref``, ``flow_id``.

The row is read once, by the extract task; later tasks take the facts they need from its
result ``volume_ref`` (persisted in the logbook, so a resumed task sees the same facts). Only
this flow writes the row while it runs (the manager holds the volume's lock and the status
is ``managing``), so the facts cannot go stale before the commit task writes the binding.
The binding (size, driver model update), the quota commit and the final status are one
transaction (:class:`QuotaCommitTask`): two write transactions per flow (reserve, commit).
"""

from __future__ import annotations

import dataclasses
import json
import re

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import VolumeManagementDriver
from blockmgr.interface import objects

ACTION = "volume:manage_existing"
V = states.VolumeStatus


#: The row's columns a :class:`~blockmgr.interface.objects.VolumeView` is made of (its
#: ``name`` derives from the id, as the model's does).
_VIEW_COLUMNS = tuple(f.name for f in dataclasses.fields(objects.VolumeView) if f.name != "name")


def _view(runtime, volume_id: str) -> objects.VolumeView:
    with runtime.db.reader() as session:
        row = repository.get_columns(session, models.Volume, volume_id, _VIEW_COLUMNS)
    return objects.VolumeView(**row._mapping)


def _driver_call(driver, name: str, *args):
    """``driver.<name>(*args)``; a driver object that predates the method (one that does not
    inherit the interface) gets the interface's default behaviour."""
    method = getattr(driver, name, None)
    if method is None:
        return getattr(VolumeManagementDriver, name)(driver, *args)
    return method(*args)


def _ref_view(volume_ref: dict) -> objects.VolumeView:
    """The driver's view of the volume as the extract task read it."""
    return objects.VolumeView(**volume_ref)


#: The name a managed volume's backend object gets (``VolumeView.name``).
_MANAGED_NAME = re.compile(r"^volume-([0-9a-fA-F-]{36})$")


def _managed_already(session, backend_host: str, volume_id: str, ref: dict) -> list[str]:
    """Other live volumes of this backend that ``ref`` names: by their managed name
    (``source-name`` ``volume-<id>``) or their ``provider_id`` (``source-id``)."""
    match = _MANAGED_NAME.match(str(ref.get("source-name") or ""))
    source_id = ref.get("source-id")
    if not match and source_id is None:
        return []   # the common case costs no query
    owners = repository.live_ids_on_host(
        session, models.Volume, backend_host, ids=[match.group(1)] if match else [],
        provider_id=str(source_id) if source_id is not None else None)
    return [owner for owner in owners if owner != volume_id]   # a re-run names itself


class ExtractVolumeRefTask(common.FlowTask):
    """Check the row exists and is being managed, and that the reference does not name a
    volume this backend already manages; provides ``volume_ref``: every
    :class:`~blockmgr.interface.objects.VolumeView` field (JSON), the only read of the row
    on the success path.

    The ownership check is the flow's, before the driver is asked anything: a driver
    cannot see the database, so it cannot tell a ``volume-<id>`` object whose volume still
    exists from a leftover one. The API checks names at request time; this check also
    covers ``source-id`` and a volume created since. Revert: a refused reference makes the
    volume ``error_managing`` (any other failure here leaves the row alone: it was not
    ``managing`` or is gone).
    """

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "volume_ref"

    def execute(self, runtime, volume_id, manage_existing_ref):
        with runtime.db.reader() as session:
            row = repository.get_columns(session, models.Volume, volume_id, _VIEW_COLUMNS)
            view = objects.VolumeView(**row._mapping)
            if view.status != V.MANAGING:
                # A second manage message for a volume already managed (or one an operator
                # moved on) must not reach the driver: its failure would be reverted by
                # releasing the object the volume now owns.
                raise exception.InvalidVolume(
                    reason="volume %s is %s, not managing: a manage request is only "
                           "served for a volume the API has just created for it; nothing "
                           "was changed" % (volume_id, view.status))
            owners = _managed_already(session, runtime.host, volume_id, manage_existing_ref)
        if owners:
            raise exception.ManageExistingAlreadyManaged(
                reason="%s (volume %s on %s)" % (
                    json.dumps(manage_existing_ref, sort_keys=True), ", ".join(owners),
                    runtime.host))
        return dataclasses.asdict(view)

    def revert(self, runtime, volume_id, result, flow_failures=None, **kwargs):
        if not (common.is_failure(result)
                and result.check("blockmgr.exception.ManageExistingAlreadyManaged")):
            return
        common.finish(runtime, models.Volume, volume_id, V.ERROR_MANAGING,
                      in_progress=V.MANAGING,
                      status_reason=common.failure_reason(flow_failures))


class RecordManageSourceTask(common.FlowTask):
    """Ask the driver what the reference names before anything is renamed
    (``manage_existing_source``); provides ``manage_source``, the reference that gives the
    object its original name back. Its result is in the logbook before
    :class:`ManageExistingTask` starts (every later start is a logbook boundary), so a revert
    after a crash mid-rename still knows the original name. Reads only (no logbook commit of
    its own). Revert (whatever failed, here or later): ``error_managing``, as
    :class:`PrepareForQuotaReservationTask`'s.
    """

    durable_start = False   # reads the backend only (FlowTask)

    default_provides = "manage_source"

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref):
        return _driver_call(runtime.driver, "manage_existing_source", _ref_view(volume_ref),
                            manage_existing_ref)

    def revert(self, runtime, volume_id, flow_failures=None, **kwargs):
        common.finish(runtime, models.Volume, volume_id, V.ERROR_MANAGING,
                      in_progress=V.MANAGING,
                      status_reason=common.failure_reason(flow_failures))


class PrepareForQuotaReservationTask(common.FlowTask):
    """Ask the driver for the size (rounded up to GiB) and check it against the project's
    ``per_volume_gigabytes`` (a managed volume is a volume like a created one); provides
    ``size`` and ``quota_request``. Revert (whatever failed, here or later):
    ``error_managing``. Nothing is bound to the backend object yet when this refuses."""

    default_provides = ("size", "quota_request")

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref):
        size = int(runtime.driver.manage_existing_get_size(_ref_view(volume_ref),
                                                           manage_existing_ref))
        if volume_ref.get("use_quota", True):
            runtime.quota.limit_check(volume_ref["project_id"], per_volume_gigabytes=size)
        return size, {"project_id": volume_ref["project_id"], "deltas": {"gigabytes": size},
                      "volume_type_id": volume_ref.get("volume_type_id")}

    def revert(self, runtime, volume_id, flow_failures=None, **kwargs):
        common.finish(runtime, models.Volume, volume_id, V.ERROR_MANAGING,
                      in_progress=V.MANAGING,
                      status_reason=common.failure_reason(flow_failures))


class ManageExistingTask(common.FlowTask):
    """Bind the backend object to the volume; provides ``managed``, the driver's (filtered)
    model update, which :class:`QuotaCommitTask` writes with the size -- the result is in
    the logbook before that task runs, so a resumed commit writes the same binding.
    Revert: give the object its original name back (``restore_managed_name`` with
    ``manage_source``; never a delete). Interrupted by a crash it is reverted, not
    repeated: a half-done rename cannot be told from a bad reference."""

    default_provides = "managed"
    on_crash = common.REVERT

    def execute(self, runtime, volume_id, volume_ref, manage_existing_ref, size,
                manage_source):
        update = runtime.driver.manage_existing(_ref_view(volume_ref), manage_existing_ref)
        return common.filter_model_update(update, common.VOLUME_MODEL_FIELDS,
                                          "volume %s" % volume_id)

    def revert(self, runtime, volume_id, volume_ref, manage_source, result, **kwargs):
        if common.manage_was_refused(result):
            return   # the driver refused: nothing was bound
        try:
            view = _view(runtime, volume_id)
            if isinstance(result, dict):   # the binding, whether or not the row got it
                view = view.with_changes(**result)
            _driver_call(runtime.driver, "restore_managed_name", view, manage_source)
        except Exception:  # best effort: the volume is error_managing either way, and
            # deleting an error_managing volume only unmanages it (delete_volume flow)
            common.LOG.exception(
                "Could not give the object of volume %s its original name %s back while "
                "reverting its manage; its data is kept", volume_id,
                json.dumps(manage_source, sort_keys=True))
        with runtime.db.writer() as session:   # it no longer holds the backend's gigabytes
            repository.update(session, repository.get(session, models.Volume, volume_id),
                              size=volume_ref["size"])


class QuotaCommitTask(common.QuotaCommitTask):
    """Commit the flow's reservations and write the binding (``size``, the ``managed``
    model update) and status ``available`` (``launched_at`` set) in ONE transaction;
    provides ``committed_quota`` like the shared task.

    Atomic on purpose: the project is charged the volume's gigabytes exactly when the
    volume gets its size and becomes usable (a separate write of the size by the manage
    task cost a transaction and let the row's size run ahead of the usage). With two
    transactions a crash between them left the usage committed on a ``managing``
    volume until recovery resumed the flow. A re-run after a crash that followed the
    commit writes nothing (:func:`~blockmgr.flows.common.finish_and_commit`): the volume has
    left ``managing``, and by then the API may have accepted a delete or an extend of it,
    which rewriting the row -- or failing and unmanaging it -- would undo. If the status
    cannot be written while the flow still holds its reservation (the row vanished or an
    operator moved it), the commit rolls back with it; the task fails, and the reserve
    task's revert rolls the still-live reservation back, so the usage is never charged
    for a volume that did not become available. The inherited revert (give committed usage
    back) is reached only if a later task fails after this one succeeded.
    """

    def execute(self, runtime, flow_id, volume_id, quota_request, reservations, size,
                managed):
        binding = common.filter_model_update(managed, common.VOLUME_MODEL_FIELDS,
                                             "volume %s" % volume_id)
        common.finish_and_commit(runtime, flow_id, models.Volume, volume_id, V.AVAILABLE,
                                 in_progress=V.MANAGING, launched_at=models.utcnow(),
                                 status_reason=None, size=size, **binding)
        return common.committed_quota(quota_request)


class ManageExistingOnFinishTask(common.FlowTask):
    """Sends ``volume.manage_existing.end``: the status was already made ``available``,
    together with the quota commit, by :class:`QuotaCommitTask`."""

    durable_start = False   # reads / notifies only (FlowTask)

    def __init__(self, event_suffix: str):
        super().__init__(addon=event_suffix)
        self.event_suffix = event_suffix

    def execute(self, runtime, context, volume_id, size):
        runtime.notifier.info(common.ctx(context), "volume.%s" % self.event_suffix,
                              {"volume_id": volume_id, "size": size, "host": runtime.host})


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractVolumeRefTask(),
        common.NotifyStartTask("volume", "manage_existing", "volume_id"),
        RecordManageSourceTask(),
        PrepareForQuotaReservationTask(),
        common.QuotaReserveTask(),
        ManageExistingTask(),
        QuotaCommitTask(),
        ManageExistingOnFinishTask("manage_existing.end"),
        # Where the runner puts the volume if the flow cannot be finished (logbook down).
        error_status=(models.Volume, V.ERROR_MANAGING, (V.MANAGING,)),
    )
