"""Attach (connect) and detach a volume on this backend, and the rules both share.

**Connect** (``get_connect_flow``; an RPC *call*, the caller waits for the connection info):
extract the attachment -> create the export -> initialize the connection -> record it
(attachment ``attaching`` with its connector and connection info; volume ``attaching``).
The API wrote the attachment (``reserved``) and the volume's hold before the call. Failure:
the connection and the export made by this flow are undone (the export only when no other
attachment of the volume is connected) and the attachment stays as it was, so the caller may
try again or delete it. A crash resumes the flow at the next start (every step is idempotent).

**Detach** (``get_detach_flow``; a ledger request, :mod:`blockmgr.ledger`): extract -> end
the attachment's connection -> remove the export when no other attachment of the volume is
connected -> finish: the attachment is deleted as ``detached`` and the volume settles
(:func:`settled`) in one transaction. The API moved the attachment to ``detaching`` and the
volume to ``detaching``. Failure: the attachment goes to ``error_detaching`` and the volume
settles (``in-use``: the consumer may still hold it). With ``force`` (an admin's
``os-force_detach``) a failure to end the connection is logged and the detach goes on.
Store: ``context``, ``volume_id``, ``attachment_id``, ``connector`` (connect), ``force``
(detach).
"""

from __future__ import annotations

import dataclasses
import json
import logging

import sqlalchemy as sa
from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import objects

LOG = logging.getLogger(__name__)

ACTION = "volume:attach"
DETACH_ACTION = "volume:detach"
V, A = states.VolumeStatus, states.AttachStatus

#: Columns a driver's export model update may set.
_EXPORT_COLUMNS = frozenset({"provider_location", "provider_auth", "provider_id"})
#: Attachments that hold a connection on the backend (an export may serve them).
CONNECTED = frozenset({A.ATTACHING, A.ATTACHED, A.DETACHING, A.ERROR_DETACHING})


# --- rules shared with the API --------------------------------------------------------------

def live_attachments(session, volume_id: str, *, exclude=()) -> list[models.Attachment]:
    rows = session.scalars(
        sa.select(models.Attachment).where(models.Attachment.volume_id == volume_id,
                                           models.Attachment.deleted.is_(False))
        .order_by(models.Attachment.created_at, models.Attachment.id)).all()
    return [row for row in rows if row.id not in set(exclude)]


def settled(attachments) -> tuple[str, str]:
    """``(status, attach_status)`` of a volume with these live attachments."""
    found = {a.attach_status for a in attachments}
    if A.DETACHING in found:
        return V.DETACHING, A.DETACHING
    if found & {A.ATTACHED, A.ERROR_DETACHING}:
        return V.IN_USE, A.ATTACHED
    if found & {A.ATTACHING, A.ERROR_ATTACHING}:
        return V.ATTACHING, A.ATTACHING
    if A.RESERVED in found:
        return V.RESERVED, A.DETACHED
    return V.AVAILABLE, A.DETACHED


def settle_volume(session, volume_id: str, *, exclude=(), status: str | None = None) -> str:
    """Write the volume's status from its live attachments (``status`` overrides the
    computed one); returns the status written. Checked against the transition table."""
    table = models.Volume.__table__
    # A Core read: the session may hold an older copy of the row.
    current = session.execute(
        sa.select(table.c.status, table.c.attach_status)
        .where(table.c.id == volume_id, table.c.deleted.is_(False)).with_for_update()).first()
    if current is None:
        raise exception.VolumeNotFound(volume_id=volume_id)
    new_status, attach_status = settled(live_attachments(session, volume_id, exclude=exclude))
    new_status = status or new_status
    if current.status != new_status:
        repository.transition(session, models.Volume, volume_id, new_status,
                              expected=(current.status,), fetch=False)
    if current.attach_status != attach_status:
        repository.update_by_id(session, models.Volume, volume_id,
                                attach_status=states.check_volume_attach_status(attach_status))
    return new_status


def finish_detach(session, attachment: models.Attachment) -> str:
    """Delete ``attachment`` as ``detached`` and settle its volume; returns its status."""
    repository.update(session, attachment, attach_status=A.DETACHED,
                      detach_time=models.utcnow())
    repository.soft_delete(session, attachment)
    return settle_volume(session, attachment.volume_id, exclude=(attachment.id,))


def fail_detach(db, volume_id: str, attachment_id: str, reason: str) -> None:
    """A detach that cannot finish: its attachment ``error_detaching`` (still connected,
    detach can be asked again), the volume's status settled from its attachments. Used by
    the detach flow's revert and when its request is settled as failed."""
    try:
        with db.writer() as session:
            attachment = get_attachment(session, attachment_id, for_update=True)
            if attachment.attach_status == A.DETACHING:
                repository.update(session, attachment, attach_status=A.ERROR_DETACHING)
                settle_volume(session, volume_id)
    except exception.NotFound:
        return
    LOG.error("Detach of attachment %s of volume %s failed: %s", attachment_id, volume_id,
              reason)


def get_attachment(session, attachment_id: str, *, for_update: bool = False,
                   project_id: str | None = None) -> models.Attachment:
    stmt = sa.select(models.Attachment).where(models.Attachment.id == attachment_id,
                                              models.Attachment.deleted.is_(False))
    if project_id is not None:
        stmt = stmt.where(models.Attachment.project_id == project_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise exception.AttachmentNotFound(attachment_id=attachment_id)
    return row


def loads(text: str | None):
    return json.loads(text) if text else None


# --- connect --------------------------------------------------------------------------------

class ExtractConnectTask(common.FlowTask):
    """The volume (on this backend, held for this attachment) as a JSON view."""

    durable_start = False
    default_provides = "volume_ref"

    def execute(self, runtime, volume_id, attachment_id):
        with runtime.db.reader() as session:
            volume = repository.get(session, models.Volume, volume_id)
            attachment = get_attachment(session, attachment_id)
            if attachment.volume_id != volume_id:
                raise exception.InvalidAttachment(
                    reason="attachment %s is not an attachment of volume %s"
                    % (attachment_id, volume_id))
            if attachment.attach_status not in (A.RESERVED, A.ATTACHING, A.ERROR_ATTACHING,
                                                A.ATTACHED):
                raise exception.InvalidAttachment(
                    reason="attachment %s is %s; only a reserved or attaching attachment "
                           "can be connected" % (attachment_id, attachment.attach_status))
            if volume.status not in states.VOLUME_HELD:
                raise exception.InvalidVolume(
                    reason="volume %s is %s; reserve it (create an attachment) before "
                           "connecting" % (volume_id, volume.status))
            backend = (volume.host or "").partition("#")[0]
            if backend != runtime.host:
                raise exception.InvalidVolume(reason="volume %s is on %s, not on this "
                                                     "backend %s"
                                                     % (volume_id, volume.host, runtime.host))
            return _view_dict(volume)


def _view_dict(volume) -> dict:
    return dataclasses.asdict(objects.VolumeView.from_model(volume))


def _view(volume_ref: dict) -> objects.VolumeView:
    return objects.VolumeView(**volume_ref)


class CreateExportTask(common.FlowTask):
    """``driver.create_export``; its model update is written. Revert: remove the export
    unless another attachment of the volume is connected."""

    default_provides = "export_ref"

    def execute(self, runtime, context, volume_ref, connector):
        view = _view(volume_ref)
        update = runtime.driver.create_export(common.ctx(context), view, connector) or {}
        unknown = set(update) - _EXPORT_COLUMNS
        if unknown:
            raise exception.VolumeDriverException(
                reason="create_export returned columns it may not set: %s"
                % ", ".join(sorted(unknown)))
        if update:
            with runtime.db.writer() as session:
                repository.update_by_id(session, models.Volume, view.id, **update)
        return dict(volume_ref, **update)

    def revert(self, runtime, context, volume_ref, attachment_id, result, **kwargs):
        if common.is_failure(result):
            return
        with runtime.db.reader() as session:
            others = [a for a in live_attachments(session, volume_ref["id"],
                                                  exclude=(attachment_id,))
                      if a.attach_status in CONNECTED]
        if others:
            return
        try:
            runtime.driver.remove_export(common.ctx(context), _view(volume_ref))
        except Exception:
            LOG.warning("remove_export of %s failed after a failed connect", volume_ref["id"],
                        exc_info=True)


class InitializeConnectionTask(common.FlowTask):
    """``driver.initialize_connection``: the connection info. Revert: terminate it."""

    default_provides = "connection_info"

    def execute(self, runtime, export_ref, connector, attachment_id):
        view = _view(export_ref)
        info = runtime.driver.initialize_connection(view, connector)
        if (not isinstance(info, dict) or not info.get("driver_volume_type")
                or not isinstance(info.get("data"), dict)):
            raise exception.VolumeDriverException(
                reason="initialize_connection must return {'driver_volume_type': str, "
                       "'data': dict}, got %r" % (info,))
        data = dict(info["data"])
        data.setdefault("volume_id", view.id)
        data.setdefault("attachment_id", attachment_id)
        return {"driver_volume_type": info["driver_volume_type"], "data": data}

    def revert(self, runtime, export_ref, connector, result, **kwargs):
        if common.is_failure(result):
            return
        try:
            runtime.driver.terminate_connection(_view(export_ref), connector, force=True)
        except Exception:
            LOG.warning("terminate_connection of %s failed after a failed connect",
                        export_ref["id"], exc_info=True)


class RecordConnectionTask(common.FlowTask):
    """Attachment ``attaching`` with its connector and connection info (``access_mode``
    from its mode); volume ``attaching`` unless it is already in use."""

    default_provides = "recorded_connection"

    def execute(self, runtime, volume_id, attachment_id, connector, connection_info):
        with runtime.db.writer() as session:
            attachment = get_attachment(session, attachment_id, for_update=True)
            info = dict(connection_info, data=dict(connection_info["data"],
                                                   access_mode=attachment.attach_mode))
            values = {"connector": json.dumps(connector), "connection_info": json.dumps(info),
                      "attached_host": connector.get("host") or attachment.attached_host}
            if connector.get("mountpoint"):
                values["mountpoint"] = str(connector["mountpoint"])[:255]
            if attachment.attach_status != A.ATTACHED:
                values["attach_status"] = A.ATTACHING
            repository.update(session, attachment, **values)
            settle_volume(session, volume_id)
        return info


def get_connect_flow():
    return linear_flow.Flow(ACTION).add(
        ExtractConnectTask(), CreateExportTask(), InitializeConnectionTask(),
        RecordConnectionTask())


# --- detach ---------------------------------------------------------------------------------

class ExtractDetachTask(common.FlowTask):
    """The volume and the attachment (``detaching``) as JSON facts.

    Revert (whatever failed): attachment ``error_detaching``, volume settled."""

    durable_start = False
    default_provides = "detach_ref"

    def execute(self, runtime, volume_id, attachment_id):
        with runtime.db.reader() as session:
            volume = repository.get(session, models.Volume, volume_id)
            attachment = get_attachment(session, attachment_id)
            if attachment.attach_status != A.DETACHING:
                raise exception.InvalidAttachment(
                    reason="attachment %s is %s, not detaching"
                    % (attachment_id, attachment.attach_status))
            others = [a.id for a in live_attachments(session, volume_id,
                                                     exclude=(attachment_id,))
                      if a.attach_status in CONNECTED]
            return {"volume": _view_dict(volume), "connector": loads(attachment.connector),
                    "connected": attachment.connection_info is not None,
                    "others_connected": others}

    def revert(self, runtime, volume_id, attachment_id, flow_failures=None, **kwargs):
        fail_detach(runtime.db, volume_id, attachment_id,
                    common.failure_reason(flow_failures))


class TerminateConnectionTask(common.FlowTask):
    """``driver.terminate_connection`` for the attachment's connector (forced: errors are
    logged and ignored)."""

    def execute(self, runtime, detach_ref, force):
        if not detach_ref["connected"]:
            return
        view = objects.VolumeView(**detach_ref["volume"])
        try:
            runtime.driver.terminate_connection(view, detach_ref["connector"],
                                                force=bool(force))
        except Exception as exc:
            if not force:
                raise
            LOG.warning("Forced detach of %s: terminate_connection failed (%s: %s); going on",
                        view.id, type(exc).__name__, exc)


class RemoveExportTask(common.FlowTask):
    """``driver.remove_export`` once no other attachment of the volume is connected."""

    def execute(self, runtime, context, detach_ref, force):
        if detach_ref["others_connected"] or not detach_ref["connected"]:
            return
        view = objects.VolumeView(**detach_ref["volume"])
        try:
            runtime.driver.remove_export(common.ctx(context), view)
        except Exception as exc:
            if not force:
                raise
            LOG.warning("Forced detach of %s: remove_export failed (%s: %s); going on",
                        view.id, type(exc).__name__, exc)


class FinishDetachTask(common.FlowTask):
    """The attachment deleted as ``detached`` and the volume settled, in one transaction.
    Repeated after a crash it finds the attachment gone and writes nothing."""

    default_provides = "detached_status"

    def execute(self, runtime, volume_id, attachment_id):
        with runtime.db.writer() as session:
            try:
                attachment = get_attachment(session, attachment_id, for_update=True)
            except exception.AttachmentNotFound:
                return None
            if attachment.attach_status != A.DETACHING:
                return None
            status = finish_detach(session, attachment)
        LOG.info("Attachment %s of volume %s detached; volume now %s", attachment_id,
                 volume_id, status)
        return status


def get_detach_flow():
    return linear_flow.Flow(DETACH_ACTION).add(
        ExtractDetachTask(), TerminateConnectionTask(), RemoveExportTask(), FinishDetachTask())
