"""Bring an existing backend snapshot under management (Cinder's task order, exactly).

extract snapshot ref -> notify start -> record manage source (driver
``manage_existing_snapshot_source``) -> prepare for quota reservation (driver get_size) ->
quota reserve -> manage existing -> quota commit (and status ``available``, one transaction)
-> on finish (notify end).

The API already created the row (``creating``, ``volume_size`` = parent size) and counted
``snapshots: +1, gigabytes: +volume_size``; this flow charges only the difference between the
real size and that. Failure: the reservation is rolled back and a ``.error`` event is sent;
the snapshot ends

* ``error_managing`` once the manage task ran and the driver did not refuse: the driver may
  have renamed or bound the object the user named, so the manage is undone by giving the
  object its original name back (``restore_managed_snapshot_name`` with the reference
  recorded before the first rename; never a delete), or else by releasing it
  (``unmanage_snapshot``). Deleting an ``error_managing`` snapshot only unmanages it
  (``delete_snapshot`` flow), so even an object whose name could not be given back is never
  deleted;
* ``error`` when the manage failed before the driver was asked to bind anything (a bad size
  answer, over quota) or the driver refused the reference
  (:data:`~blockmgr.flows.common.MANAGE_REFUSALS`): nothing was touched, as in Cinder, where
  every failed snapshot manage ends ``error``.

A request for a snapshot that is not ``creating`` is refused by the first task, before the
driver is asked anything, and changes nothing.
Store: ``context``, ``snapshot_id``, ``manage_existing_ref``, ``flow_id``.

The row is read once, by the extract task; later tasks take the driver's view from its
result ``snapshot_ref`` (persisted in the logbook, so a resumed task sees the same facts).
Only this flow writes the row while it runs (the manager holds the snapshot's locks), so the
facts cannot go stale before the manage task writes the binding. The quota commit and the
final status are one transaction (:class:`QuotaCommitTask`).
"""

from __future__ import annotations

import dataclasses
import json

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import SnapshotManagementDriver
from blockmgr.interface import objects

ACTION = "snapshot:manage_existing"
S = states.SnapshotStatus


def _view(runtime, snapshot_id: str) -> objects.SnapshotView:
    with runtime.db.reader() as session:
        return objects.SnapshotView.from_model(
            repository.get(session, models.Snapshot, snapshot_id))


def _driver_call(driver, name: str, *args):
    """``driver.<name>(*args)``; a driver object that predates the method (one that does not
    inherit the interface) gets the interface's default behaviour."""
    method = getattr(driver, name, None)
    if method is None:
        return getattr(SnapshotManagementDriver, name)(driver, *args)
    return method(*args)


def _ref_view(snapshot_ref: dict) -> objects.SnapshotView:
    """The driver's view of the snapshot as the extract task read it."""
    return objects.SnapshotView(**snapshot_ref)


def _error_out(runtime, snapshot_id: str, reason: str) -> None:
    common.finish(runtime, models.Snapshot, snapshot_id, S.ERROR, in_progress=S.CREATING,
                  status_reason=reason[:255])


class ExtractSnapshotRefTask(common.FlowTask):
    """Check the row is ours to manage (``creating``, as the API left it); provides
    ``snapshot_ref``: every :class:`~blockmgr.interface.objects.SnapshotView` field (JSON),
    the only read of the row on the success path. A snapshot in any other status is refused
    with :class:`~blockmgr.exception.InvalidSnapshot` before the driver is asked anything,
    and nothing is changed. Revert: the snapshot goes to ``error``, unless the manage task's
    revert already moved it to ``error_managing``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "snapshot_ref"

    def execute(self, runtime, snapshot_id):
        view = _view(runtime, snapshot_id)
        if view.status != S.CREATING:
            raise exception.InvalidSnapshot(
                reason="snapshot %s is %s, not creating: a manage request is only served "
                       "for a snapshot the API has just created for it; nothing was changed"
                       % (snapshot_id, view.status))
        return dataclasses.asdict(view)

    def revert(self, runtime, snapshot_id, result, flow_failures=None, **kwargs):
        if not common.is_failure(result):
            _error_out(runtime, snapshot_id, common.failure_reason(flow_failures))


class RecordManageSourceTask(common.FlowTask):
    """Ask the driver what the reference names before anything is renamed
    (``manage_existing_snapshot_source``); provides ``manage_source``. In the logbook before
    :class:`ManageExistingTask` starts, so a revert after a crash mid-rename still knows the
    original name. Reads only (no logbook commit of its own); nothing to revert (the extract
    task's revert puts the snapshot in ``error``, the manage task's ``error_managing``)."""

    durable_start = False   # reads the backend only (FlowTask)

    default_provides = "manage_source"

    def execute(self, runtime, snapshot_id, snapshot_ref, manage_existing_ref):
        return _driver_call(runtime.driver, "manage_existing_snapshot_source",
                            _ref_view(snapshot_ref), manage_existing_ref)


class PrepareForQuotaReservationTask(common.FlowTask):
    """Ask the driver for the snapshot's size; provides ``size`` and ``quota_request``
    (``gigabytes: size - volume_size``, possibly negative; none with no_snapshot_gb_quota)."""

    default_provides = ("size", "quota_request")

    def execute(self, runtime, snapshot_id, snapshot_ref, manage_existing_ref):
        size = int(runtime.driver.manage_existing_snapshot_get_size(
            _ref_view(snapshot_ref), manage_existing_ref))
        no_gb = runtime.conf is not None and runtime.conf.quota.no_snapshot_gb_quota
        deltas = {} if no_gb else {"gigabytes": size - snapshot_ref["volume_size"]}
        return size, {"project_id": snapshot_ref["project_id"], "deltas": deltas,
                      "volume_type_id": snapshot_ref.get("volume_type_id")}


class ManageExistingTask(common.FlowTask):
    """Bind the backend snapshot; record the real size and the driver's model update.
    Provides ``new_status``. Revert (unless the driver refused the reference): give the
    object its original name back (``restore_managed_snapshot_name`` with ``manage_source``;
    never a delete), else release it (``unmanage_snapshot``), then put the API's size back
    and move the snapshot to ``error_managing`` in one transaction, so that deleting it
    later only unmanages. Interrupted by a crash, it is reverted, not repeated: a half-done
    rename cannot be told from a bad reference."""

    default_provides = "new_status"
    on_crash = common.REVERT

    def execute(self, runtime, snapshot_id, snapshot_ref, manage_existing_ref, size,
                manage_source):
        update = runtime.driver.manage_existing_snapshot(_ref_view(snapshot_ref),
                                                         manage_existing_ref)
        update = common.filter_model_update(update, common.SNAPSHOT_MODEL_FIELDS,
                                            "snapshot %s" % snapshot_id)
        with runtime.db.writer() as session:
            row = repository.get(session, models.Snapshot, snapshot_id)
            repository.update(session, row, volume_size=size, **update)
        return S.AVAILABLE.value

    def revert(self, runtime, snapshot_id, snapshot_ref, manage_source, result,
               flow_failures=None, **kwargs):
        if common.manage_was_refused(result):
            return   # the driver refused: nothing was managed (the snapshot ends error)
        view = None
        try:
            view = _view(runtime, snapshot_id)
            _driver_call(runtime.driver, "restore_managed_snapshot_name", view, manage_source)
        except Exception:  # best effort: the snapshot ends error_managing either way
            common.LOG.exception(
                "Could not give the object of snapshot %s its original name %s back while "
                "reverting its manage; releasing it with unmanage_snapshot instead",
                snapshot_id, json.dumps(manage_source, sort_keys=True))
            try:
                if view is not None:
                    runtime.driver.unmanage_snapshot(view)
            except Exception:
                common.LOG.exception(
                    "Could not unmanage snapshot %s either; its object may still carry the "
                    "snapshot's name. Deleting the snapshot (error_managing) only unmanages "
                    "it; rename the object back by hand", snapshot_id)
        # Back to the size the API charged and, in the same transaction, error_managing (not
        # error): a later delete must release the object, never delete it. The status is
        # left alone if an earlier run of this revert already moved the snapshot on.
        with runtime.db.writer() as session:
            repository.update(session, repository.get(session, models.Snapshot, snapshot_id),
                              volume_size=snapshot_ref["volume_size"])
            common.finish_in(session, models.Snapshot, snapshot_id, S.ERROR_MANAGING,
                             in_progress=S.CREATING,
                             status_reason=common.failure_reason(flow_failures))


class QuotaCommitTask(common.QuotaCommitTask):
    """Commit the flow's reservations and move the snapshot to ``new_status``
    (``available``, progress 100 %) in ONE transaction; provides ``committed_quota``.

    Atomic for the reasons given in ``manage_existing.QuotaCommitTask``: the usage is
    charged exactly when the snapshot becomes usable; a re-run after a crash that followed
    the commit writes nothing, whatever the API did to the snapshot since
    (:func:`~blockmgr.flows.common.finish_and_commit`); a status write that fails rolls the
    commit back with it, and the reserve task's revert then rolls the reservation back.
    """

    def execute(self, runtime, flow_id, snapshot_id, new_status, quota_request,
                reservations):
        common.finish_and_commit(runtime, flow_id, models.Snapshot, snapshot_id, new_status,
                                 in_progress=S.CREATING, progress="100%")
        return common.committed_quota(quota_request)


class CreateSnapshotOnFinishTask(common.FlowTask):
    """Sends the ``.end`` event: the status was already set, together with the quota
    commit, by :class:`QuotaCommitTask`."""

    durable_start = False   # reads / notifies only (FlowTask)

    def __init__(self, event_suffix: str):
        super().__init__(addon=event_suffix)
        self.event_suffix = event_suffix

    def execute(self, runtime, context, snapshot_id, size):
        runtime.notifier.info(common.ctx(context), "snapshot.%s" % self.event_suffix,
                              {"snapshot_id": snapshot_id, "volume_size": size,
                               "host": runtime.host})


def lock_names(snapshot_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The snapshot and its delete lock."""
    return [snapshot_id, common.delete_snapshot_lock(snapshot_id)]


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractSnapshotRefTask(),
        common.NotifyStartTask("snapshot", "manage_existing_snapshot", "snapshot_id"),
        RecordManageSourceTask(),
        PrepareForQuotaReservationTask(),
        common.QuotaReserveTask(),
        ManageExistingTask(),
        QuotaCommitTask(),
        CreateSnapshotOnFinishTask("manage_existing_snapshot.end"),
    )
