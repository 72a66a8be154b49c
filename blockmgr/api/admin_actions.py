"""The operator's way back, admin only: reset a resource's status (``os-reset_status``,
``blockmgr-manage volume|snapshot reset-state``) and force-delete a volume or a snapshot
(``os-force_delete``).

**Reset** writes the status an admin names (one of :data:`blockmgr.states.RESETTABLE`, from
any current status: it is the one write that does not follow the transition table, so it is
limited to statuses no flow owns), and in the same transaction clears what the resource held:

* every open request on it (``requests`` table) ends ``failed`` with the reason "reset to
  <status> by an admin";
* every reservation those requests owned (their flows' and the API's for them,
  :func:`blockmgr.quota.request_owner`) is rolled back;
* a volume reset to ``attach_status`` ``detached`` loses its attachment rows (the backend's
  connections, if any remain, are the operator's to end).

A flow still running for a cleared request is not stopped; its last write finds the resource
no longer in its in-progress status and writes nothing (``repository.finish``). The log says
what was cleared.

**Force delete** (``VolumeService.force_delete_volume``,
``SnapshotService.force_delete_snapshot``) is a reset to ``error`` followed by a delete, in
one transaction, and the delete is a ledger request like any other: a volume a consumer holds
is still refused (detach it first, ``os-force_detach``), and so is one with snapshots.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import states
from blockmgr.api import common
from blockmgr.db import models
from blockmgr.db import requests as db_requests
from blockmgr.flows import attachments as attach_rules

LOG = logging.getLogger(__name__)

V, S = states.VolumeStatus, states.SnapshotStatus
_MODELS = {"volume": models.Volume, "snapshot": models.Snapshot, "group": models.Group,
           "group_snapshot": models.GroupSnapshot}
_NOT_FOUND = {"volume": (exception.VolumeNotFound, "volume_id"),
              "snapshot": (exception.SnapshotNotFound, "snapshot_id"),
              "group": (exception.GroupNotFound, "group_id"),
              "group_snapshot": (exception.GroupSnapshotNotFound, "group_snapshot_id")}


def _require_admin(ctx) -> None:
    if not ctx.is_admin:
        raise exception.NotAuthorized(reason="only an admin may reset statuses or force a "
                                             "delete")


def clear_requests(session, quota, kind: str, resource_id: str, reason: str) -> dict:
    """End the resource's open requests as failed and roll back every reservation they and
    the API held for them; returns ``{"requests": [...ids], "reservations": n}``."""
    table = models.Request.__table__
    ids = list(session.execute(sa.select(table.c.id).where(
        table.c.resource_id == resource_id,
        table.c.state.in_(db_requests.OPEN))).scalars())
    db_requests.fail_open(session, resource_id, reason)
    released = 0
    for request_id in ids:
        released += quota.rollback_owned(request_id, session=session)
    for owner_kind, status in sorted(bm_quota.REQUEST_OWNERS):
        if owner_kind == kind:
            released += quota.rollback_owned(
                bm_quota.request_owner(kind, resource_id, status), session=session)
    return {"requests": ids, "reservations": released}


def reset_in(session, quota, kind: str, resource_id: str, status: str, *,
             attach_status: str | None = None, actor: str = "an admin") -> dict:
    """The reset itself, in the caller's transaction (see the module docstring)."""
    status = states.check_reset(kind, status)
    model = _MODELS[kind]
    table = model.__table__
    row = session.execute(sa.select(table.c.status).where(
        table.c.id == resource_id, table.c.deleted.is_(False)).with_for_update()).first()
    if row is None:
        cls, kwarg = _NOT_FOUND[kind]
        raise cls(**{kwarg: resource_id})
    values = {"status": status, "updated_at": models.utcnow()}
    if "status_reason" in table.c:
        values["status_reason"] = None if status in ("available", "in-use") else \
            ("status reset to %s by %s" % (status, actor))[:255]
    detached = []
    if attach_status is not None:
        values["attach_status"] = states.check_volume_attach_status(attach_status)
        if attach_status == states.AttachStatus.DETACHED:
            for attachment in attach_rules.live_attachments(session, resource_id):
                session.execute(sa.update(models.Attachment.__table__).where(
                    models.Attachment.__table__.c.id == attachment.id).values(
                    attach_status=states.AttachStatus.DETACHED, deleted=True,
                    deleted_at=models.utcnow(), detach_time=models.utcnow()))
                detached.append(attachment.id)
    # The one status write outside the transition table: checked by states.check_reset.
    session.execute(sa.update(table).where(table.c.id == resource_id).values(**values))
    session.expire_all()
    cleared = clear_requests(session, quota, kind, resource_id,
                             "%s reset to %s by %s" % (kind, status, actor))
    LOG.warning("%s %s reset from %s to %s%s by %s; cleared requests: %s; reservations "
                "rolled back: %d%s", kind, resource_id, row.status, status,
                "" if attach_status is None else " (attach_status %s)" % attach_status,
                actor, ", ".join(cleared["requests"]) or "none", cleared["reservations"],
                "; attachments removed: %s" % ", ".join(detached) if detached else "")
    return dict(cleared, previous=row.status, status=status, attachments_removed=detached)


class AdminActionService(common.ServiceBase):
    """Admin-only resets (module docstring)."""

    def reset_status(self, ctx, kind: str, resource_id: str, status: str | None = None, *,
                     attach_status: str | None = None,
                     migration_status: str | None = None) -> dict:
        """Reset ``kind`` (``volume``, ``snapshot``, ``group``, ``group_snapshot``)
        ``resource_id`` to ``status`` (and, for volumes, ``attach_status``).

        ``migration_status``: blockmgr does not migrate volumes, so only ``none`` (or
        null) is accepted and nothing is written for it.

        :raises NotAuthorized: not an admin.
        :raises InvalidInput: an unknown kind, a status that cannot be reset to, nothing
            to reset, ``attach_status`` for another kind than a volume.
        """
        ctx = common.check_context(ctx)
        _require_admin(ctx)
        if kind not in _MODELS:
            raise exception.InvalidInput(reason="cannot reset a %r; kinds: %s"
                                                % (kind, ", ".join(sorted(_MODELS))))
        common.check_id(resource_id, kind)
        if migration_status not in (None, "none", ""):
            raise exception.InvalidInput(reason="migration_status can only be reset to none: "
                                                "blockmgr does not migrate volumes")
        if attach_status is not None and kind != "volume":
            raise exception.InvalidInput(reason="attach_status belongs to volumes only")
        if status is None and attach_status is None:
            if migration_status is not None and kind == "volume":
                return self._current(kind, resource_id)
            raise exception.InvalidInput(reason="give a status to reset to")
        if status is not None:
            states.check_reset(kind, status)
        if attach_status is not None:
            states.check_volume_attach_status(attach_status)

        def work(session):
            self._visible(session, ctx, kind, resource_id)
            new = status or self._current(kind, resource_id, session=session)["status"]
            return reset_in(session, self.quota, kind, resource_id, new,
                            attach_status=attach_status,
                            actor="admin %s" % (ctx.user_id or ctx.project_id or "?"))

        return self._write(work)

    # --- helpers --------------------------------------------------------------------------

    def _visible(self, session, ctx, kind, resource_id):
        return self._get(session, _MODELS[kind], resource_id, ctx)

    def _current(self, kind, resource_id, session=None) -> dict:
        if session is None:
            with self.db.reader() as session:
                return self._current(kind, resource_id, session)
        table = _MODELS[kind].__table__
        row = session.execute(sa.select(table.c.status).where(
            table.c.id == resource_id, table.c.deleted.is_(False))).first()
        if row is None:
            cls, kwarg = _NOT_FOUND[kind]
            raise cls(**{kwarg: resource_id})
        return {"status": row.status}
