"""Attachments of the client library: the attachments API (create, show, list, update with
a connector, complete, delete) and the legacy volume actions built on the same rows
(``os-reserve``, ``os-unreserve``, ``os-begin_detaching``, ``os-roll_detaching``,
``os-attach``, ``os-detach``, ``os-initialize_connection``, ``os-terminate_connection``,
``os-force_detach``).

A volume's hold is an attachment row. Statuses (``docs/rest-api.md``, "Attachments"):

* attachments API: ``available`` -> ``reserved`` (create) -> ``attaching`` (update with a
  connector: the worker exports and connects, a *call*) -> ``in-use`` (complete) ->
  ``detaching`` (delete of a connected attachment: a ledger request, the worker ends the
  connection and removes the export) -> ``available`` once no attachment is left.
* legacy actions: ``os-reserve`` -> ``attaching``; ``os-initialize_connection`` connects
  (reserving the volume first when nobody did, see :meth:`AttachmentService.
  initialize_connection`); ``os-attach`` -> ``in-use``; ``os-begin_detaching`` ->
  ``detaching``; ``os-detach`` ends it like an attachment delete.

Every write checks the volume's and the attachment's transition tables
(:mod:`blockmgr.states`); an asynchronous detach is recorded with its status change in one
transaction and rung after the commit (:mod:`blockmgr.ledger`), as every other request.
"""

from __future__ import annotations

import json
import logging
import uuid as uuid_mod

import sqlalchemy as sa

from blockmgr import exception
from blockmgr import states
from blockmgr.api import common
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import attachments as rules

LOG = logging.getLogger(__name__)

V, A = states.VolumeStatus, states.AttachStatus
MODES = ("rw", "ro")
#: Volume statuses in which a new attachment may be made (``in-use``: multiattach only).
_RESERVABLE = frozenset({V.AVAILABLE})
_MULTI_RESERVABLE = frozenset({V.AVAILABLE, V.IN_USE, V.RESERVED, V.ATTACHING})
#: Attachment statuses a detach may start from.
_DETACHABLE = frozenset({A.RESERVED, A.ATTACHING, A.ATTACHED, A.ERROR_ATTACHING,
                         A.ERROR_DETACHING})
ATTACHMENT_FILTERS = ("volume_id", "instance_id", "status")


def _check_uuid(value, what: str) -> str:
    try:
        return str(uuid_mod.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise exception.InvalidInput(reason="%s must be a UUID, not %r" % (what, value)) \
            from None


def _check_connector(connector) -> dict:
    if not isinstance(connector, dict):
        raise exception.InvalidInput(reason="connector must be a dict of connector "
                                            "properties (os-brick's get_connector_properties)")
    try:
        json.dumps(connector)
    except (TypeError, ValueError):
        raise exception.InvalidInput(reason="connector must be JSON") from None
    return dict(connector)


def _check_mode(mode) -> str:
    if mode is None:
        return "rw"
    if mode not in MODES:
        raise exception.InvalidInput(reason="mode must be rw or ro, not %r" % (mode,))
    return mode


def view(row: models.Attachment) -> dict:
    """The attachment as the library returns it (JSON columns decoded)."""
    out = common.row_dict(row)
    out["connector"] = rules.loads(row.connector)
    out["connection_info"] = rules.loads(row.connection_info)
    return out


class AttachmentService(common.ServiceBase):

    # --- helpers --------------------------------------------------------------------------

    def _attachment(self, session, ctx, attachment_id, *, for_update=False):
        common.check_id(attachment_id, "attachment")
        return rules.get_attachment(session, attachment_id, for_update=for_update,
                                    project_id=None if ctx.is_admin else ctx.project_id)

    def _reserve(self, session, ctx, volume, *, instance_uuid=None, mode="rw",
                 volume_status=V.RESERVED) -> models.Attachment:
        """A ``reserved`` attachment and the volume's hold (``volume_status``)."""
        if not volume.host:
            raise exception.InvalidVolume(reason="volume %s is %s and not placed on a "
                                                 "backend yet" % (volume.id, volume.status))
        allowed = _MULTI_RESERVABLE if volume.multiattach else _RESERVABLE
        if volume.status not in allowed:
            holders = rules.live_attachments(session, volume.id)
            if instance_uuid and any(a.instance_uuid == instance_uuid for a in holders) \
                    and volume.status in states.VOLUME_HELD:
                pass   # the same instance again (a move between hosts), as Cinder allows
            elif volume.status in states.VOLUME_HELD and not volume.multiattach:
                raise exception.InvalidVolume(
                    reason="volume %s is %s and not multiattach; it can have one attachment "
                           "only" % (volume.id, volume.status))
            else:
                raise exception.InvalidVolume(
                    reason="volume %s is %s; it must be %s to be attached"
                    % (volume.id, volume.status, " or ".join(sorted(allowed))))
        attachment = repository.create(
            session, models.Attachment, volume_id=volume.id, project_id=volume.project_id,
            user_id=ctx.user_id, instance_uuid=instance_uuid, attach_mode=mode,
            attach_status=A.RESERVED)
        if volume.status == V.AVAILABLE:
            # A volume already held (multiattach) keeps its status: its other attachments
            # say what it is.
            repository.transition(session, models.Volume, volume.id, volume_status,
                                  expected=(V.AVAILABLE,), fetch=False)
        return attachment

    def _connect(self, ctx, volume_id: str, attachment_id: str, host: str,
                 connector: dict) -> dict:
        """The worker's connect flow (a call): the connection info."""
        return self.volume_rpcapi.connect_attachment(ctx, host, volume_id, attachment_id,
                                                     connector)

    def _drop_hold(self, attachment_id: str) -> None:
        """Give back a hold this request made when its connection failed."""
        def work(session):
            try:
                attachment = rules.get_attachment(session, attachment_id, for_update=True)
            except exception.AttachmentNotFound:
                return
            if attachment.attach_status == A.RESERVED and attachment.connection_info is None:
                rules.finish_detach(session, attachment)

        try:
            self._write(work)
        except Exception:
            LOG.warning("Could not give back the hold of attachment %s after a failed "
                        "connection; delete the attachment", attachment_id, exc_info=True)

    def _begin_detach(self, session, ctx, attachment, *, force=False):
        """Start detaching ``attachment``: one never connected is deleted at once (returns
        None); a connected one goes ``detaching`` with its volume and a detach request is
        recorded (returns the doorbell)."""
        volume = repository.get(session, models.Volume, attachment.volume_id, for_update=True)
        if attachment.attach_status == A.DETACHING:
            raise exception.InvalidAttachment(reason="attachment %s is already detaching"
                                                     % attachment.id)
        if attachment.attach_status not in _DETACHABLE:
            raise exception.InvalidAttachment(
                reason="attachment %s is %s; it can be detached when one of %s"
                % (attachment.id, attachment.attach_status, ", ".join(sorted(_DETACHABLE))))
        if attachment.connection_info is None:
            rules.finish_detach(session, attachment)
            return None
        if volume.status not in states.VOLUME_HELD:
            raise exception.InvalidVolume(
                reason="volume %s is %s; reset its status to in-use before detaching"
                % (volume.id, volume.status))
        repository.update(session, attachment, attach_status=A.DETACHING)
        rules.settle_volume(session, volume.id)
        return self._request(session, ctx, "volume", volume.id, volume.host, "detach_volume",
                             volume_id=volume.id, attachment_id=attachment.id,
                             force=bool(force))

    def _volume(self, session, ctx, volume_id, *, for_update=True):
        return self._get(session, models.Volume, volume_id, ctx, for_update=for_update)

    # --- attachments API (3.27, 3.44) -----------------------------------------------------

    def create(self, ctx, volume_id: str, *, instance_uuid: str | None = None,
               connector: dict | None = None, mode: str | None = None) -> dict:
        """Reserve ``volume_id`` for a consumer: a ``reserved`` attachment, the volume
        ``reserved``. With ``connector`` the attachment is connected at once (as
        :meth:`update`) and carries the connection info.

        :raises InvalidVolume: the volume is not ``available`` (multiattach: also
            ``in-use``, ``reserved``, ``attaching``) or not placed.
        """
        ctx = common.check_context(ctx)
        common.check_id(volume_id, "volume")
        if instance_uuid is not None:
            instance_uuid = _check_uuid(instance_uuid, "instance_uuid")
        if connector is not None:
            connector = _check_connector(connector)
        mode = _check_mode(mode)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            attachment = self._reserve(session, ctx, volume, instance_uuid=instance_uuid,
                                       mode=mode)
            return attachment.id, volume.host

        attachment_id, host = self._write(work)
        if connector is not None:
            try:
                self._connect(ctx, volume_id, attachment_id, host, connector)
            except exception.BlockmgrError:
                self._drop_hold(attachment_id)
                raise
        return self.get(ctx, attachment_id)

    def get(self, ctx, attachment_id: str) -> dict:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            return view(self._attachment(session, ctx, attachment_id))

    def list(self, ctx, *, filters: dict | None = None, all_projects: bool = False,
             limit: int | None = None, marker: str | None = None) -> list[dict]:
        """The caller's live attachments, oldest first; filters ``volume_id``,
        ``instance_id``, ``status``; ``limit`` and ``marker`` (the last id of a page)."""
        ctx = common.check_context(ctx)
        filters = dict(filters or {})
        unknown = sorted(set(filters) - set(ATTACHMENT_FILTERS))
        if unknown:
            raise exception.InvalidInput(reason="unknown attachment filter(s) %s; accepted: "
                                                "%s" % (", ".join(unknown),
                                                        ", ".join(ATTACHMENT_FILTERS)))
        if all_projects and not ctx.is_admin:
            all_projects = False
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise exception.InvalidInput(reason="limit must be an integer >= 0")
        table = models.Attachment
        stmt = sa.select(table).where(table.deleted.is_(False))
        if not all_projects:
            stmt = stmt.where(table.project_id == common.owning_project(ctx))
        for key, column in (("volume_id", table.volume_id),
                            ("instance_id", table.instance_uuid),
                            ("status", table.attach_status)):
            if key in filters:
                if not isinstance(filters[key], str):
                    raise exception.InvalidInput(reason="filter %s must be a string" % key)
                stmt = stmt.where(column == filters[key])
        stmt = stmt.order_by(table.created_at, table.id)
        with self.db.reader() as session:
            rows = list(session.scalars(stmt).all())
        if marker is not None:
            ids = [r.id for r in rows]
            if marker not in ids:
                raise exception.InvalidInput(reason="marker %s is not an attachment of this "
                                                    "listing" % (marker,))
            rows = rows[ids.index(marker) + 1:]
        if limit is not None:
            rows = rows[:limit]
        return [view(r) for r in rows]

    def update(self, ctx, attachment_id: str, connector: dict) -> dict:
        """Connect a reserved attachment for ``connector``: the worker exports the volume
        and initializes the connection (a call); returns the attachment with its
        ``connection_info``; attachment and volume ``attaching``.

        :raises InvalidAttachment: the attachment is not reserved or attaching.
        """
        ctx = common.check_context(ctx)
        connector = _check_connector(connector)
        with self.db.reader() as session:
            attachment = self._attachment(session, ctx, attachment_id)
            if attachment.attach_status not in (A.RESERVED, A.ATTACHING, A.ERROR_ATTACHING):
                raise exception.InvalidAttachment(
                    reason="attachment %s is %s; only a reserved attachment can be updated "
                           "with a connector" % (attachment.id, attachment.attach_status))
            volume = repository.get(session, models.Volume, attachment.volume_id)
            host = common.volume_backend(volume)
            volume_id = volume.id
        self._connect(ctx, volume_id, attachment_id, host, connector)
        return self.get(ctx, attachment_id)

    def complete(self, ctx, attachment_id: str) -> dict:
        """The consumer is attached: attachment ``attached``, volume ``in-use``.

        :raises InvalidAttachment: the attachment has no connection yet.
        """
        ctx = common.check_context(ctx)

        def work(session):
            attachment = self._attachment(session, ctx, attachment_id, for_update=True)
            repository.get(session, models.Volume, attachment.volume_id, for_update=True)
            if attachment.attach_status == A.ATTACHED:
                return view(attachment)
            if attachment.attach_status != A.ATTACHING or attachment.connection_info is None:
                raise exception.InvalidAttachment(
                    reason="attachment %s is %s; update it with a connector before "
                           "completing it" % (attachment.id, attachment.attach_status))
            repository.update(session, attachment, attach_status=A.ATTACHED,
                              attach_time=models.utcnow())
            rules.settle_volume(session, attachment.volume_id)
            return view(attachment)

        return self._write(work)

    def delete(self, ctx, attachment_id: str, *, force: bool = False) -> list[dict]:
        """Detach: an attachment never connected is deleted at once; a connected one goes
        ``detaching`` (its volume too) and the worker ends the connection, removes the
        export when no other attachment is connected, deletes the attachment and settles
        the volume (``available`` when none is left). Returns the volume's other
        attachments."""
        ctx = common.check_context(ctx)

        def work(session):
            attachment = self._attachment(session, ctx, attachment_id, for_update=True)
            return attachment.volume_id, self._begin_detach(session, ctx, attachment,
                                                            force=force)

        volume_id, bell = self._write(work)
        if bell is not None:
            self._ring(ctx, bell)
        with self.db.reader() as session:
            return [view(a) for a in rules.live_attachments(session, volume_id,
                                                            exclude=(attachment_id,))]

    def volume_view_attachments(self, ctx, volume_ids) -> dict[str, list[dict]]:
        """The ``attachments`` of Cinder's volume view for each of ``volume_ids`` (one
        query): ``{volume_id: [{"id", "attachment_id", "volume_id", "server_id",
        "host_name", "device", "attached_at"}]}``, attached attachments only, oldest first.
        Ids the caller may not see (another project's) get an empty list."""
        ctx = common.check_context(ctx)
        ids = sorted({common.check_id(v, "volume") for v in volume_ids})
        out: dict[str, list[dict]] = {vid: [] for vid in ids}
        if not ids:
            return out
        table = models.Attachment
        stmt = (sa.select(table).where(table.volume_id.in_(ids), table.deleted.is_(False),
                                       table.attach_status == A.ATTACHED)
                .order_by(table.created_at, table.id))
        if not ctx.is_admin:
            stmt = stmt.where(table.project_id == ctx.project_id)
        with self.db.reader() as session:
            for row in session.scalars(stmt):
                out[row.volume_id].append({
                    "id": row.volume_id, "attachment_id": row.id, "volume_id": row.volume_id,
                    "server_id": row.instance_uuid, "host_name": row.attached_host,
                    "device": row.mountpoint,
                    "attached_at": row.attach_time.isoformat() if row.attach_time else None})
        return out

    def list_for_volume(self, ctx, volume_id: str) -> list[dict]:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            self._get(session, models.Volume, volume_id, ctx)
            return [view(a) for a in rules.live_attachments(session, volume_id)]

    # --- legacy volume actions ----------------------------------------------------------

    def reserve(self, ctx, volume_id: str) -> None:
        """``os-reserve``: the volume ``attaching`` with an attachment ``reserved``."""
        ctx = common.check_context(ctx)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            self._reserve(session, ctx, volume, volume_status=V.ATTACHING)

        self._write(work)

    def unreserve(self, ctx, volume_id: str) -> None:
        """``os-unreserve``: give back the holds never connected; the volume settles
        (``available``, or ``in-use`` while another attachment is attached)."""
        ctx = common.check_context(ctx)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            if volume.status not in (V.ATTACHING, V.RESERVED):
                raise exception.InvalidVolume(reason="volume %s is %s; only an attaching "
                                                     "volume can be unreserved"
                                                     % (volume.id, volume.status))
            for attachment in rules.live_attachments(session, volume.id):
                if attachment.attach_status == A.RESERVED and attachment.connection_info is None:
                    rules.finish_detach(session, attachment)
            rules.settle_volume(session, volume.id)

        self._write(work)

    def begin_detaching(self, ctx, volume_id: str) -> None:
        """``os-begin_detaching``: an ``in-use`` volume ``detaching`` (a consumer's hold
        before it calls ``os-detach``)."""
        ctx = common.check_context(ctx)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            if volume.status != V.IN_USE or volume.attach_status != A.ATTACHED:
                raise exception.InvalidVolume(reason="volume %s is %s (%s); only an in-use, "
                                                     "attached volume can begin detaching"
                                                     % (volume.id, volume.status,
                                                        volume.attach_status))
            repository.transition(session, models.Volume, volume.id, V.DETACHING,
                                  expected=(V.IN_USE,), fetch=False)

        self._write(work)

    def roll_detaching(self, ctx, volume_id: str) -> None:
        """``os-roll_detaching``: a ``detaching`` volume back to ``in-use`` unless a
        detach is running."""
        ctx = common.check_context(ctx)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            if volume.status != V.DETACHING:
                return   # nothing to roll back, as Cinder
            if any(a.attach_status == A.DETACHING
                   for a in rules.live_attachments(session, volume.id)):
                raise exception.InvalidVolume(reason="volume %s is being detached; wait for "
                                                     "the detach to finish" % volume.id)
            rules.settle_volume(session, volume.id)

        self._write(work)

    def attach(self, ctx, volume_id: str, *, instance_uuid: str | None = None,
               host_name: str | None = None, mountpoint: str | None = None,
               mode: str | None = None) -> dict:
        """``os-attach``: record the consumer (instance or host, mountpoint, mode); the
        volume's hold becomes ``attached`` and the volume ``in-use``."""
        ctx = common.check_context(ctx)
        if instance_uuid is not None:
            instance_uuid = _check_uuid(instance_uuid, "instance_uuid")
        host_name = common.check_text(host_name, "host_name")
        mountpoint = common.check_text(mountpoint, "mountpoint")
        if instance_uuid is None and host_name is None:
            raise exception.InvalidInput(reason="give instance_uuid or host_name")
        mode = _check_mode(mode)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            holds = [a for a in rules.live_attachments(session, volume.id)
                     if a.attach_status in (A.RESERVED, A.ATTACHING)
                     and a.instance_uuid in (None, instance_uuid)]
            if holds:
                attachment = holds[0]
            elif volume.status == V.AVAILABLE or (volume.multiattach
                                                  and volume.status == V.IN_USE):
                attachment = self._reserve(session, ctx, volume, instance_uuid=instance_uuid,
                                           mode=mode, volume_status=V.ATTACHING)
            else:
                raise exception.InvalidVolume(reason="volume %s is %s; it must be available "
                                                     "or reserved (os-reserve) to be "
                                                     "attached" % (volume.id, volume.status))
            repository.update(session, attachment, attach_status=A.ATTACHED,
                              instance_uuid=instance_uuid,
                              attached_host=host_name or attachment.attached_host,
                              mountpoint=mountpoint, attach_mode=mode,
                              attach_time=models.utcnow())
            rules.settle_volume(session, volume.id)
            return view(attachment)

        return self._write(work)

    def detach(self, ctx, volume_id: str, attachment_id: str | None = None, *,
               force: bool = False, connector: dict | None = None) -> None:
        """``os-detach`` (``force``: ``os-force_detach``, admin): end the attachment
        (the one connected for ``connector``'s host, or the only one, when
        ``attachment_id`` is not given) as an attachment delete does.

        :raises InvalidVolume: no attachment, or several and none named.
        """
        ctx = common.check_context(ctx)
        if attachment_id is not None:
            common.check_id(attachment_id, "attachment")
        if connector is not None:
            connector = _check_connector(connector)

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            live = rules.live_attachments(session, volume.id)
            if attachment_id is not None:
                chosen = [a for a in live if a.id == attachment_id]
                if not chosen:
                    raise exception.AttachmentNotFound(attachment_id=attachment_id)
            else:
                chosen = [a for a in live if a.attach_status != A.DETACHING]
                if connector is not None and connector.get("host"):
                    chosen = [a for a in chosen if (rules.loads(a.connector) or {})
                              .get("host") == connector["host"]] or chosen
                if not chosen:
                    raise exception.InvalidVolume(reason="volume %s has no attachment to "
                                                         "detach" % volume.id)
                if len(chosen) > 1:
                    raise exception.InvalidVolume(
                        reason="volume %s has %d attachments; name the attachment_id to "
                               "detach" % (volume.id, len(chosen)))
            if not force and volume.status not in (V.IN_USE, V.DETACHING, V.ATTACHING,
                                                   V.RESERVED):
                raise exception.InvalidVolume(reason="volume %s is %s; only an attached "
                                                     "volume can be detached"
                                                     % (volume.id, volume.status))
            return self._begin_detach(session, ctx, chosen[0], force=force)

        bell = self._write(work)
        if bell is not None:
            self._ring(ctx, bell)

    def initialize_connection(self, ctx, volume_id: str, connector: dict) -> dict:
        """``os-initialize_connection``: the connection info for ``connector``.

        The connection is recorded on an attachment, so the volume is held while a
        connector has it: the volume's unconnected hold (``os-reserve``) is used, or the
        attachment already connected to the same connector host is connected again; when
        nobody reserved the volume, it is reserved here (``attaching``, as ``os-reserve``
        does). Until ``os-terminate_connection`` or a detach the volume cannot be deleted,
        extended offline, unmanaged or managed over.
        """
        ctx = common.check_context(ctx)
        connector = _check_connector(connector)
        made = False

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            live = rules.live_attachments(session, volume.id)
            same = [a for a in live if a.connection_info is not None
                    and (rules.loads(a.connector) or {}).get("host") == connector.get("host")
                    and a.attach_status in (A.ATTACHING, A.ATTACHED)]
            if same:
                return same[0].id, volume.host, False
            holds = [a for a in live if a.attach_status == A.RESERVED]
            if holds:
                return holds[0].id, volume.host, False
            attachment = self._reserve(session, ctx, volume, volume_status=V.ATTACHING)
            return attachment.id, volume.host, True

        attachment_id, host, made = self._write(work)
        try:
            return self._connect(ctx, volume_id, attachment_id, host, connector)
        except exception.BlockmgrError:
            if made:
                self._drop_hold(attachment_id)
            raise

    def terminate_connection(self, ctx, volume_id: str, connector: dict,
                             force: bool = False) -> None:
        """``os-terminate_connection``: end ``connector``'s connection. An attached
        attachment stays until ``os-detach`` (the worker only ends the connection, a
        call); one never attached (``os-initialize_connection`` alone) is detached: the
        export goes and the volume's hold is given back."""
        ctx = common.check_context(ctx)
        connector = _check_connector(connector)
        if not isinstance(force, bool):
            raise exception.InvalidInput(reason="force must be a boolean")

        def work(session):
            volume = self._volume(session, ctx, volume_id)
            live = [a for a in rules.live_attachments(session, volume.id)
                    if a.connection_info is not None]
            mine = [a for a in live
                    if (rules.loads(a.connector) or {}).get("host") == connector.get("host")]
            chosen = mine or (live if len(live) == 1 else [])
            if not chosen:
                if volume.status not in (V.AVAILABLE, V.IN_USE) or not volume.host:
                    raise exception.InvalidVolume(reason="volume %s is %s and has no "
                                                         "connection for this connector"
                                                         % (volume.id, volume.status))
                return volume.host, None   # nothing recorded: end it on the backend anyway
            attachment = chosen[0]
            if attachment.attach_status == A.ATTACHED:
                return volume.host, None
            if attachment.attach_status == A.DETACHING:
                return None, None   # already being detached: nothing more to do
            return None, self._begin_detach(session, ctx, attachment, force=force)

        host, bell = self._write(work)
        if bell is not None:
            self._ring(ctx, bell)
        elif host is not None:
            self.volume_rpcapi.terminate_connection(ctx, host, volume_id, connector,
                                                    force=force)
