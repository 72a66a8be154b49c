"""VolumeManager: the volume worker's endpoints for one backend (``host@backend``).

Every endpoint is thin: validate the request, take the resource locks, run the operation's
persisted flow, map the error. Business rules live in the flows (``blockmgr.flows``), the
quota engine and the drivers. Endpoints take ids, never rows, and a context (a
``RequestContext`` or its dict form, as it arrives over RPC).
"""

from __future__ import annotations

import dataclasses
import logging

from taskflow import exceptions as tf_exc

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.drivers import contracts
from blockmgr.flows import attachments as attach_flow
from blockmgr.flows import common
from blockmgr.flows import create_group as create_group_flow
from blockmgr.flows import create_group_from_src as group_from_src_flow
from blockmgr.flows import create_group_snapshot as create_gsnap_flow
from blockmgr.flows import create_snapshot as create_snap_flow
from blockmgr.flows import create_volume as create_flow
from blockmgr.flows import delete_group as delete_group_flow
from blockmgr.flows import delete_group_snapshot as delete_gsnap_flow
from blockmgr.flows import delete_snapshot as delete_snap_flow
from blockmgr.flows import delete_volume as delete_flow
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import extend_volume as extend_flow
from blockmgr.flows import faults
from blockmgr.flows import manage_existing as manage_flow
from blockmgr.flows import manage_existing_snapshot as manage_snap_flow
from blockmgr.flows import revert_to_snapshot as revert_flow
from blockmgr.flows import update_group as update_group_flow
from blockmgr.interface import objects
from blockmgr.volume import capacity as bm_capacity
from blockmgr.volume import locks as bm_locks
from blockmgr.volume import recovery

LOG = logging.getLogger(__name__)

_KEEP = object()


class VolumeManager:
    """Endpoints of one backend.

    :param reschedule: ``reschedule(context, volume_id, request_spec, filter_properties)``
        casting a failed create back to the scheduler; None disables rescheduling.
    :param runner: a :class:`~blockmgr.flows.engine.FlowRunner`; by default one on the
        ``[flows]`` persistence for this host.
    :param host: the backend host served, default ``conf.host@backend_name``; a cluster
        member serves ``cluster@backend_name`` (``docs/cluster.md``).
    """

    def __init__(self, conf, backend_name: str, *, db, driver, quota, notifier,
                 reschedule=None, runner=None, locks=None, host=None):
        self.conf = conf
        self.host = host or "%s@%s" % (conf.host, backend_name)
        self.db, self.driver, self.quota, self.notifier = db, driver, quota, notifier
        self.reschedule = reschedule
        self.runner = runner or flow_engine.FlowRunner(
            flow_engine.open_persistence(conf, db), self.host,
            fault=faults.configured(conf), idle_flows=conf.rpc_worker_threads)
        self.locks = locks or bm_locks.LockRegistry()
        self.capacity = bm_capacity.AllocatedCapacity()
        #: What the driver implements, recorded when its class loaded (checked then): ask
        #: this, not the driver object, before an optional operation.
        self.driver_capabilities = contracts.capabilities_of(driver)

    def runtime(self, reschedule=_KEEP) -> common.FlowRuntime:
        return common.FlowRuntime(
            db=self.db, quota=self.quota, driver=self.driver, notifier=self.notifier,
            host=self.host, conf=self.conf,
            reschedule=self.reschedule if reschedule is _KEEP else reschedule,
            close=self.runner.close_in)

    def init_host(self) -> recovery.RecoveryReport:
        """Count allocated capacity, then recover everything left in flight (recovery.py)."""
        with self.db.reader() as session:
            self.capacity.load(session, self.host)
        report = recovery.recover(self)
        with self.db.reader() as session:
            self.capacity.load(session, self.host)
        return report

    # --- endpoints ----------------------------------------------------------------------

    def create_volume(self, context, volume_id: str, request_spec: dict | None = None,
                      filter_properties: dict | None = None,
                      allow_reschedule: bool = True) -> str:
        """Create scheduled volume ``volume_id`` (status ``creating``) on this backend."""
        request_spec = dict(request_spec or {})
        _check_id(volume_id, "volume")
        with self.locks.hold(create_flow.lock_names(volume_id, {"request_spec": request_spec},
                                                    common.LockRows())):
            # Read under the lock, so the flow may start from this view (not logbooked: a
            # resumed flow reads the row again).
            volume = self._own_volume(volume_id)
            self.capacity.add(volume.host, volume.size)
            outcome = self._run(create_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "request_spec": request_spec, "filter_properties": dict(filter_properties or {}),
                "allow_reschedule": bool(allow_reschedule)},
                transient={"volume_row": dataclasses.asdict(volume)})
        if isinstance(outcome.failure, exception.RequestNotClaimed):
            self.capacity.subtract(volume.host, volume.size)   # nothing was written
            raise outcome.failure
        if not outcome.succeeded:
            # Refused, failed or rescheduled: count again from the rows rather than guess
            # which of those the flow's outcome was.
            with self.db.reader() as session:
                self.capacity.load(session, self.host)
            raise _map_error(outcome.failure)
        return volume_id

    def manage_existing(self, context, volume_id: str, ref: dict) -> str:
        """Adopt backend object ``ref`` as volume ``volume_id`` (status ``managing``)."""
        _check_ref(ref)
        volume = self._own_volume(volume_id)
        with self.locks.hold(common.lock_names_of(manage_flow, volume_id, {}, common.LockRows())):
            outcome = self._run(manage_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "manage_existing_ref": dict(ref)})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        # The size the flow recorded on the row is its ``size`` result; the host is unchanged.
        self.capacity.add(volume.host, _flow_result(outcome, "size"))
        return volume_id

    def manage_existing_snapshot(self, context, snapshot_id: str, ref: dict) -> str:
        """Adopt backend snapshot ``ref`` as snapshot ``snapshot_id`` (status ``creating``)."""
        _check_ref(ref)
        self._own_snapshot(snapshot_id)
        with self.locks.hold(manage_snap_flow.lock_names(snapshot_id, {}, common.LockRows())):
            outcome = self._run(manage_snap_flow, "snapshot", snapshot_id, {
                "context": _context_dict(context), "snapshot_id": snapshot_id,
                "manage_existing_ref": dict(ref)})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return snapshot_id

    def delete_volume(self, context, volume_id: str, unmanage_only: bool = False,
                      cascade: bool = False) -> bool:
        """Delete (``unmanage_only``: unmanage) volume ``volume_id`` (status ``deleting``,
        ``unmanaging`` or ``error_managing_deleting``); ``cascade`` deletes its snapshots
        (all ``deleting``) too. True once the volume is gone (also if it already was);
        False if the driver said it is busy: it is ``available`` again, nothing deleted."""
        try:
            volume = self._own_volume(volume_id)
        except exception.VolumeNotFound:
            LOG.info("Volume %s is already gone; nothing to delete", volume_id)
            return True
        with self.locks.hold(delete_flow.lock_names(volume_id, {"cascade": cascade},
                                                    common.LockRows(self.db))):
            outcome = self.runner.run(
                delete_flow.get_flow, factory_kwargs={"unmanage_only": bool(unmanage_only)},
                store={"context": _context_dict(context), "volume_id": volume_id,
                       "cascade": bool(cascade)},
                runtime=self.runtime(), kind="volume", resource_id=volume_id,
                flow_id=ledger.current_id())
        if not outcome.succeeded:
            error = _map_error(outcome.failure)
            if isinstance(error, exception.VolumeIsBusy):
                return False
            raise error
        self.capacity.subtract(volume.host, volume.size)
        return True

    def create_snapshot(self, context, snapshot_id: str) -> str:
        """Take snapshot ``snapshot_id`` (status ``creating``) of its volume on this backend;
        the volume's ``-delete_volume`` lock keeps the source from going away meanwhile."""
        volume_id = self._own_snapshot(snapshot_id)
        with self.locks.hold(create_snap_flow.lock_names(
                snapshot_id, {}, common.LockRows(snapshot_volume=volume_id))):
            outcome = self._run(create_snap_flow, "snapshot", snapshot_id, {
                "context": _context_dict(context), "snapshot_id": snapshot_id})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return snapshot_id

    def delete_snapshot(self, context, snapshot_id: str, unmanage_only: bool = False) -> bool:
        """Delete (``unmanage_only``: unmanage) snapshot ``snapshot_id`` (status ``deleting``,
        ``unmanaging``, or ``error_managing_deleting``: a failed import, only unmanaged). True once it is gone (also if it already was); False if the
        driver said it is busy: it is ``available`` again, nothing deleted."""
        try:
            self._own_snapshot(snapshot_id)
        except exception.SnapshotNotFound:
            LOG.info("Snapshot %s is already gone; nothing to delete", snapshot_id)
            return True
        with self.locks.hold(delete_snap_flow.lock_names(snapshot_id, {}, common.LockRows())):
            outcome = self.runner.run(
                delete_snap_flow.get_flow,
                factory_kwargs={"unmanage_only": bool(unmanage_only)},
                store={"context": _context_dict(context), "snapshot_id": snapshot_id},
                runtime=self.runtime(), kind="snapshot", resource_id=snapshot_id,
                flow_id=ledger.current_id())
        if not outcome.succeeded:
            error = _map_error(outcome.failure)
            if isinstance(error, exception.SnapshotIsBusy):
                return False
            raise error
        return True

    def extend_volume(self, context, volume_id: str, new_size: int,
                      reservations: list[str] | None = None) -> None:
        """Grow volume ``volume_id`` (status ``extending``) to ``new_size`` GiB.
        ``reservations``: the API's ``gigabytes`` reservation uuids, adopted by the flow."""
        if reservations is not None and (isinstance(reservations, str) or not all(
                isinstance(r, str) for r in reservations)):
            raise exception.InvalidInput(reason="reservations must be a list of uuids")
        volume = self._own_volume(volume_id)
        with self.locks.hold(common.lock_names_of(extend_flow, volume_id, {}, common.LockRows())):
            outcome = self._run(extend_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "new_size": new_size, "api_reservations": list(reservations or [])})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        self.capacity.add(volume.host, new_size - volume.size)

    def revert_to_snapshot(self, context, volume_id: str, snapshot_id: str) -> str:
        """Revert volume ``volume_id`` (status ``reverting``) to its latest snapshot
        ``snapshot_id`` (status ``restoring``). The snapshot's ``-delete_snapshot`` lock keeps
        it from being deleted meanwhile, the volume's ``-delete_volume`` lock keeps snapshots
        and clones from reading the volume half-reverted."""
        _check_id(snapshot_id, "snapshot")
        self._own_volume(volume_id)
        with self.locks.hold(revert_flow.lock_names(volume_id, {"snapshot_id": snapshot_id},
                                                    common.LockRows())):
            outcome = self._run(revert_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "snapshot_id": snapshot_id})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return volume_id

    # --- attachments (rules: blockmgr/flows/attachments.py) -----------------------------

    def connect_attachment(self, context, volume_id: str, attachment_id: str,
                           connector: dict) -> dict:
        """Export volume ``volume_id`` and connect its attachment ``attachment_id`` for
        ``connector`` (a call: the caller waits); returns the connection info."""
        _check_id(attachment_id, "attachment")
        self._own_volume(volume_id)
        with self.locks.hold([volume_id]):
            outcome = self.runner.run(
                attach_flow.get_connect_flow,
                store={"context": _context_dict(context), "volume_id": volume_id,
                       "attachment_id": attachment_id, "connector": dict(connector)},
                runtime=self.runtime(), kind="volume", resource_id=volume_id)
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return _flow_result(outcome, "recorded_connection")

    def detach_volume(self, context, volume_id: str, attachment_id: str,
                      force: bool = False) -> str | None:
        """End attachment ``attachment_id`` (``detaching``) of ``volume_id``: the
        connection, the export when no other attachment is connected, the row; returns the
        volume's status after it (None if the attachment was already gone)."""
        _check_id(attachment_id, "attachment")
        try:
            self._own_volume(volume_id)
        except exception.VolumeNotFound:
            LOG.info("Volume %s is gone; nothing to detach", volume_id)
            return None
        with self.db.reader() as session:
            try:
                attach_flow.get_attachment(session, attachment_id)
            except exception.AttachmentNotFound:
                LOG.info("Attachment %s of volume %s is already detached", attachment_id,
                         volume_id)
                return None
        with self.locks.hold([volume_id]):
            outcome = self.runner.run(
                attach_flow.get_detach_flow,
                store={"context": _context_dict(context), "volume_id": volume_id,
                       "attachment_id": attachment_id, "force": bool(force)},
                runtime=self.runtime(), kind="volume", resource_id=volume_id,
                flow_id=ledger.current_id())
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return _flow_result(outcome, "detached_status")

    # --- consistency groups (rules: blockmgr/flows/group_updates.py) --------------------

    def create_group(self, context, group_id: str) -> str:
        """Create consistency group ``group_id`` (status ``creating``) on this backend."""
        self._own_group(group_id)
        return self._run_group(create_group_flow, "group", group_id, common.lock_names_of(
                                   create_group_flow, group_id, {}, common.LockRows()),
                               {"context": _context_dict(context), "group_id": group_id})

    def delete_group(self, context, group_id: str) -> str:
        """Delete group ``group_id`` (``deleting``) with its volumes, returning their quota."""
        self._own_group(group_id)
        return self._run_group(delete_group_flow, "group", group_id, common.lock_names_of(
                                   delete_group_flow, group_id, {}, common.LockRows()),
                               {"context": _context_dict(context), "group_id": group_id})

    def update_group(self, context, group_id: str, add_volumes=None, remove_volumes=None):
        """Add/remove volumes (id lists or comma-separated ids) to/from ``updating`` group."""
        self._own_group(group_id)
        add, remove = _id_list(add_volumes), _id_list(remove_volumes)
        return self._run_group(update_group_flow, "group", group_id, update_group_flow.lock_names(
                                   group_id, {"add_volumes": add, "remove_volumes": remove},
                                   common.LockRows()),
                               {"context": _context_dict(context), "group_id": group_id,
                                "add_volumes": add, "remove_volumes": remove})

    def create_group_snapshot(self, context, group_snapshot_id: str) -> str:
        """Snapshot every volume of the group of ``group_snapshot_id`` (``creating``)."""
        group_id, _members = self._own_group_snapshot(group_snapshot_id)
        return self._run_group(create_gsnap_flow, "group_snapshot", group_snapshot_id,
                               create_gsnap_flow.lock_names(
                                   group_snapshot_id, {},
                                   common.LockRows(group_snapshot_group=group_id)),
                               {"context": _context_dict(context),
                                "group_snapshot_id": group_snapshot_id})

    def delete_group_snapshot(self, context, group_snapshot_id: str) -> str:
        """Delete group snapshot ``group_snapshot_id`` (``deleting``) and its snapshots."""
        _group_id, members = self._own_group_snapshot(group_snapshot_id)
        return self._run_group(delete_gsnap_flow, "group_snapshot", group_snapshot_id,
                               delete_gsnap_flow.lock_names(
                                   group_snapshot_id, {},
                                   common.LockRows(group_snapshot_members=members)),
                               {"context": _context_dict(context),
                                "group_snapshot_id": group_snapshot_id})

    def create_group_from_src(self, context, group_id: str, group_snapshot_id: str | None = None,
                              source_group_id: str | None = None) -> str:
        """Create group ``group_id``'s volumes from a group snapshot or a source group."""
        self._own_group(group_id)
        if bool(group_snapshot_id) == bool(source_group_id):
            raise exception.InvalidInput(
                reason="give exactly one of group_snapshot_id and source_group_id")
        return self._run_group(group_from_src_flow, "group", group_id,
                               group_from_src_flow.lock_names(
                                   group_id, {"group_snapshot_id": group_snapshot_id,
                                              "source_group_id": source_group_id},
                                   common.LockRows()),
                               {"context": _context_dict(context), "group_id": group_id,
                                "group_snapshot_id": group_snapshot_id,
                                "source_group_id": source_group_id})

    # --- helpers ------------------------------------------------------------------------

    def _run_group(self, flow_module, kind: str, resource_id: str, locks: list, store: dict):
        with self.locks.hold(locks):
            outcome = self._run(flow_module, kind, resource_id, store)
        with self.db.reader() as session:   # members may have been created or destroyed
            self.capacity.load(session, self.host)
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return resource_id

    def _own_group(self, group_id: str) -> None:
        if not isinstance(group_id, str) or not group_id:
            raise exception.InvalidInput(reason="group id must be a non-empty string")
        with self.db.reader() as session:
            host = repository.get(session, models.Group, group_id).host
        if (host or "").partition("#")[0] != self.host:
            raise exception.InvalidGroup(reason="group %s is on %s, not on this backend %s"
                                         % (group_id, host, self.host))

    def _own_group_snapshot(self, group_snapshot_id: str) -> tuple[str, list[str]]:
        """``(group id, member snapshot ids)``; the group must live on this backend."""
        if not isinstance(group_snapshot_id, str) or not group_snapshot_id:
            raise exception.InvalidInput(reason="group snapshot id must be a non-empty string")
        with self.db.reader() as session:
            group_id = repository.get(session, models.GroupSnapshot, group_snapshot_id).group_id
            members = [s.id for s in repository.snapshots_of_group_snapshot(
                session, group_snapshot_id)]
        self._own_group(group_id)
        return group_id, members


    def _run(self, flow_module, kind: str, resource_id: str, store: dict,
             transient: dict | None = None):
        """Run the operation's flow; inside a ledger request the flow is keyed by the
        request id, so a request taken over after a crash finds its own flow."""
        return self.runner.run(flow_module.get_flow, store=store, runtime=self.runtime(),
                               kind=kind, resource_id=resource_id, transient=transient,
                               flow_id=ledger.current_id())

    def _own_volume(self, volume_id: str) -> objects.VolumeView:
        """The live volume, which must be on this backend, as a view (a Core row: no ORM
        object is built for a read the request only looks at)."""
        _check_id(volume_id, "volume")
        with self.db.read_connection() as conn:
            row = repository.get_columns(conn, models.Volume, volume_id,
                                         objects.VOLUME_VIEW_COLUMNS)
        volume = objects.VolumeView.from_model(row)
        self._check_volume_host(volume)
        return volume

    def _check_volume_host(self, volume: objects.VolumeView | models.Volume) -> None:
        backend = (volume.host or "").partition("#")[0]
        if backend != self.host:
            raise exception.InvalidVolume(
                reason="volume %s is on %s, not on this backend %s"
                % (volume.id, volume.host, self.host))

    def _own_snapshot(self, snapshot_id: str) -> str:
        """The id of the snapshot's volume, which must live on this backend."""
        if not isinstance(snapshot_id, str) or not snapshot_id:
            raise exception.InvalidInput(reason="snapshot id must be a non-empty string")
        with self.db.reader() as session:   # one read transaction for both rows
            volume_id = repository.get(session, models.Snapshot, snapshot_id).volume_id
            volume = repository.get(session, models.Volume, volume_id)
            self._check_volume_host(volume)
        return volume_id


def _check_id(resource_id, kind: str) -> None:
    if not isinstance(resource_id, str) or not resource_id:
        raise exception.InvalidInput(reason="%s id must be a non-empty string" % kind)


def _context_dict(context) -> dict:
    if isinstance(context, bm_context.RequestContext):
        return context.to_dict()
    if isinstance(context, dict):
        return bm_context.RequestContext.from_dict(context).to_dict()
    raise exception.InvalidInput(reason="context must be a RequestContext or its dict")


def _id_list(ids) -> list[str]:
    """Volume ids as a list, from a list or Cinder's comma-separated string (None: [])."""
    if ids is None:
        return []
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",")]
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise exception.InvalidInput(reason="volume ids must be a list or comma-separated ids")
    return list(dict.fromkeys(i for i in ids if i))


def _flow_result(outcome, name: str):
    """A result the finished flow provided, from its engine's storage (no database read)."""
    return outcome.engine.storage.fetch(name)


def _check_ref(ref) -> None:
    if not isinstance(ref, dict) or not (ref.get("source-name") or ref.get("source-id")):
        raise exception.ManageExistingInvalidReference(
            existing_ref=ref, reason="a reference needs 'source-name' or 'source-id'")


def _map_error(failure: BaseException) -> BaseException:
    """The error a caller sees: the flow's first failure, as a blockmgr error."""
    if isinstance(failure, tf_exc.WrappedFailure):
        failure = next(iter(failure)).exception or failure
    if isinstance(failure, exception.BlockmgrError):
        return failure
    wrapped = exception.VolumeBackendAPIException(reason="%s: %s"
                                                  % (type(failure).__name__, failure))
    wrapped.__cause__ = failure
    return wrapped
