"""VolumeManager: the volume worker's endpoints for one backend (``host@backend``).

Every endpoint is thin: validate the request, take the resource locks, run the operation's
persisted flow, map the error. Business rules live in the flows (``blockmgr.flows``), the
quota engine and the drivers. Endpoints take ids, never rows, and a context (a
``RequestContext`` or its dict form, as it arrives over RPC).
"""

from __future__ import annotations

import logging

from taskflow import exceptions as tf_exc

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import create_volume as create_flow
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import faults
from blockmgr.flows import manage_existing as manage_flow
from blockmgr.flows import manage_existing_snapshot as manage_snap_flow
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
    """

    def __init__(self, conf, backend_name: str, *, db, driver, quota, notifier,
                 reschedule=None, runner=None, locks=None):
        self.conf = conf
        self.host = "%s@%s" % (conf.host, backend_name)
        self.db, self.driver, self.quota, self.notifier = db, driver, quota, notifier
        self.reschedule = reschedule
        self.runner = runner or flow_engine.FlowRunner(
            flow_engine.open_persistence(conf, db), self.host,
            fault=faults.configured(conf))
        self.locks = locks or bm_locks.LockRegistry()
        self.capacity = bm_capacity.AllocatedCapacity()

    def runtime(self, reschedule=_KEEP) -> common.FlowRuntime:
        return common.FlowRuntime(
            db=self.db, quota=self.quota, driver=self.driver, notifier=self.notifier,
            host=self.host, conf=self.conf,
            reschedule=self.reschedule if reschedule is _KEEP else reschedule)

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
        volume = self._own_volume(volume_id)
        names = [volume_id]
        if request_spec.get("snapshot_id"):
            names.append("%s-delete_snapshot" % request_spec["snapshot_id"])
        elif request_spec.get("source_volid"):
            names.append("%s-delete_volume" % request_spec["source_volid"])
        self.capacity.add(volume.host, volume.size)
        with self.locks.hold(names):
            outcome = self._run(create_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "request_spec": request_spec, "filter_properties": dict(filter_properties or {}),
                "allow_reschedule": bool(allow_reschedule)})
        if not outcome.succeeded:
            if outcome.revert_result(create_flow.OnFailureRescheduleTask().name):
                self.capacity.subtract(volume.host, volume.size)
            raise _map_error(outcome.failure)
        return volume_id

    def manage_existing(self, context, volume_id: str, ref: dict) -> str:
        """Adopt backend object ``ref`` as volume ``volume_id`` (status ``managing``)."""
        _check_ref(ref)
        self._own_volume(volume_id)
        with self.locks.hold([volume_id]):
            outcome = self._run(manage_flow, "volume", volume_id, {
                "context": _context_dict(context), "volume_id": volume_id,
                "manage_existing_ref": dict(ref)})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        volume = self._own_volume(volume_id)
        self.capacity.add(volume.host, volume.size)
        return volume_id

    def manage_existing_snapshot(self, context, snapshot_id: str, ref: dict) -> str:
        """Adopt backend snapshot ``ref`` as snapshot ``snapshot_id`` (status ``creating``)."""
        _check_ref(ref)
        with self.db.reader() as session:
            snapshot = repository.get(session, models.Snapshot, snapshot_id)
            volume_id = snapshot.volume_id
        self._own_volume(volume_id)
        with self.locks.hold([snapshot_id, "%s-delete_snapshot" % snapshot_id]):
            outcome = self._run(manage_snap_flow, "snapshot", snapshot_id, {
                "context": _context_dict(context), "snapshot_id": snapshot_id,
                "manage_existing_ref": dict(ref)})
        if not outcome.succeeded:
            raise _map_error(outcome.failure)
        return snapshot_id

    # --- helpers ------------------------------------------------------------------------

    def _run(self, flow_module, kind: str, resource_id: str, store: dict):
        return self.runner.run(flow_module.get_flow, store=store, runtime=self.runtime(),
                               kind=kind, resource_id=resource_id)

    def _own_volume(self, volume_id: str) -> models.Volume:
        if not isinstance(volume_id, str) or not volume_id:
            raise exception.InvalidInput(reason="volume id must be a non-empty string")
        with self.db.reader() as session:
            volume = repository.get(session, models.Volume, volume_id)
            session.expunge(volume)
        backend = (volume.host or "").partition("#")[0]
        if backend != self.host:
            raise exception.InvalidVolume(
                reason="volume %s is on %s, not on this backend %s"
                % (volume_id, volume.host, self.host))
        return volume


def _context_dict(context) -> dict:
    if isinstance(context, bm_context.RequestContext):
        return context.to_dict()
    if isinstance(context, dict):
        return bm_context.RequestContext.from_dict(context).to_dict()
    raise exception.InvalidInput(reason="context must be a RequestContext or its dict")


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
