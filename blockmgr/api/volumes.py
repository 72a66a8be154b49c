"""Volume operations of the client library: create, delete, extend, manage, unmanage, attach
info, manageable listings, capabilities. Rules shared by every operation: ``common``."""

from __future__ import annotations

import re

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import states
from blockmgr.api import common
from blockmgr.api import listing
from blockmgr.db import models
from blockmgr.db import repository

V, S = states.VolumeStatus, states.SnapshotStatus

_VOLUME_NAME_RE = re.compile(r"^volume-([0-9a-fA-F-]{36})$")
_DELETABLE = frozenset({V.AVAILABLE, V.ERROR, V.ERROR_DELETING, V.ERROR_EXTENDING,
                        V.ERROR_UNMANAGING, V.ERROR_MANAGING})
_NO_HOST_DELETABLE = frozenset({V.CREATING, V.ERROR, V.ERROR_MANAGING})
_FAILED_OR_RUNNING_MANAGE = frozenset({V.MANAGING, V.ERROR_MANAGING_DELETING})
_EXTENDABLE = frozenset({V.AVAILABLE, V.IN_USE})
_SNAPSHOT_DELETABLE = frozenset({S.AVAILABLE, S.ERROR, S.ERROR_DELETING})
MANAGEABLE_SORT_KEYS = ("size", "reference")


class VolumeService(common.ServiceBase):

    # --- create ---------------------------------------------------------------------------

    def create_volume(self, ctx, size: int | None = None, *, name: str | None = None,
                      description: str | None = None, snapshot_id: str | None = None,
                      source_volid: str | None = None,
                      volume_type: str | dict | None = None,
                      availability_zone: str | None = None, group_id: str | None = None,
                      scheduler_hints: dict | None = None) -> dict:
        """Create a volume: raw (``size``), from a snapshot, or from a source volume.

        The row (``creating``) and ``volumes: +1, gigabytes: +size`` are written in one
        transaction, then the scheduler is cast. A volume from a snapshot or a volume lands
        on its source's backend; ``size`` defaults to the source's and may not be smaller.
        Returns the new row as a dict.

        ``volume_type``: a type's name or id, or None for the default type
        (``__DEFAULT__``); its extra specs go to the scheduler in the request spec.

        :raises InvalidInput: bad size/name; both sources given.
        :raises InvalidVolumeType: an unknown type, or a private one the project may not use.
        :raises SnapshotNotFound, VolumeNotFound, GroupNotFound: unknown (or other
            project's) source or group.
        :raises InvalidSnapshot, InvalidVolume, InvalidGroup: a source in the wrong status.
        :raises VolumeSizeExceedsLimit, OverQuota: quota.
        """
        ctx = common.check_context(ctx)
        project_id = common.owning_project(ctx)
        if snapshot_id is not None and source_volid is not None:
            raise exception.InvalidInput(reason="give at most one of snapshot_id and "
                                                "source_volid")
        if size is not None or (snapshot_id is None and source_volid is None):
            common.check_size(size)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        availability_zone = common.check_text(availability_zone, "availability_zone")
        # A type is named by its name or id (None: the default type) and resolved in the
        # writing transaction; a dict is a type spec the caller built itself, used as given.
        types = None
        if isinstance(volume_type, dict):
            volume_type = common.check_volume_type(volume_type)
        else:
            from blockmgr.api.volume_types import VolumeTypeService

            types = VolumeTypeService(self.conf, self.db, self.quota)
        if scheduler_hints is not None and not isinstance(scheduler_hints, dict):
            raise exception.InvalidInput(reason="scheduler_hints must be a dict")
        # The source's size is needed for the limit check; look it up read-only first and
        # check everything again inside the writing transaction.
        with self.db.reader() as session:
            size = self._effective_size(session, ctx, size, snapshot_id, source_volid)
        self.quota.limit_check(project_id, per_volume_gigabytes=size)
        props = {"scheduler_hints": dict(scheduler_hints)} if scheduler_hints else {}

        def work(session):
            chosen = (volume_type if types is None
                      else types.resolve(session, ctx, volume_type))
            values = {"size": size, "status": V.CREATING, "project_id": project_id,
                      "user_id": ctx.user_id, "display_name": name,
                      "display_description": description,
                      "availability_zone": availability_zone, "attach_status": "detached",
                      "volume_type_id": (chosen or {}).get("id"),
                      "multiattach": wants_multiattach(chosen)}
            spec = {"size": size, "volume_type": chosen,
                    "availability_zone": availability_zone}
            if snapshot_id is not None:
                snap = self._get(session, models.Snapshot, snapshot_id, ctx, for_update=True)
                if snap.status != S.AVAILABLE:
                    raise exception.InvalidSnapshot(
                        reason="snapshot %s is %s, not available" % (snap.id, snap.status))
                origin = repository.get(session, models.Volume, snap.volume_id)
                values.update(snapshot_id=snap.id, bootable=origin.bootable)
                spec.update(snapshot_id=snap.id,
                            resource_backend=common.volume_backend(origin))
            elif source_volid is not None:
                src = self._get(session, models.Volume, source_volid, ctx, for_update=True)
                if src.status not in (V.AVAILABLE, V.IN_USE):
                    raise exception.InvalidVolume(
                        reason="source volume %s is %s, not available" % (src.id, src.status))
                values.update(source_volid=src.id, bootable=src.bootable)
                spec.update(source_volid=src.id, resource_backend=common.volume_backend(src))
            if group_id is not None:
                group = self._get(session, models.Group, group_id, ctx)
                if group.status not in (states.GroupStatus.AVAILABLE,
                                        states.GroupStatus.IN_USE) or not group.host:
                    raise exception.InvalidGroup(reason="group %s is %s, not available"
                                                        % (group.id, group.status))
                values["group_id"] = group.id
                spec.setdefault("resource_backend", group.host)
                spec["group_id"] = group.id
            volume = repository.create(session, models.Volume, **values)
            self.quota.consume(session, project_id, volumes=1, gigabytes=size,
                               volume_type_id=volume.volume_type_id)
            spec["volume_id"] = volume.id
            bell = self._request(session, ctx, "volume", volume.id, common.SCHEDULER,
                                 "create_volume", volume_id=volume.id, request_spec=spec,
                                 filter_properties=props)
            return common.row_dict(volume), bell

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def _effective_size(self, session, ctx, size, snapshot_id, source_volid) -> int:
        if snapshot_id is not None:
            minimum = self._get(session, models.Snapshot, snapshot_id, ctx).volume_size
            what = "snapshot %s" % snapshot_id
        elif source_volid is not None:
            minimum = self._get(session, models.Volume, source_volid, ctx).size
            what = "source volume %s" % source_volid
        else:
            return size
        if size is None:
            return minimum
        if size < minimum:
            raise exception.InvalidInput(reason="size %d GiB is smaller than the %d GiB of %s"
                                                % (size, minimum, what))
        return size

    # --- delete / unmanage ----------------------------------------------------------------

    def force_delete_volume(self, ctx, volume_id: str) -> dict:
        """``os-force_delete`` (admin): delete the volume whatever its status -- it is reset
        to ``error`` first in the same transaction (``error_managing`` for an import, so
        that the user's object is only released), which ends its open requests and
        releases what they reserved (:mod:`blockmgr.api.admin_actions`). A volume a
        consumer holds is still refused (``os-force_detach`` first), and so is one with
        snapshots or in a group."""
        ctx = common.check_context(ctx)
        if not ctx.is_admin:
            raise exception.NotAuthorized(reason="only an admin may force a delete")
        return self.delete_volume(ctx, volume_id, _force=True)

    def delete_volume(self, ctx, volume_id: str, *, cascade: bool = False,
                      force: bool = False, _force: bool = False) -> dict:
        """Delete a volume (``cascade``: with its snapshots; ``force``, admin only: whatever
        its status, as :meth:`force_delete_volume`).

        A volume that was never placed (no host) is removed at once and its quota given
        back in the same transaction. Otherwise it goes to ``deleting``
        (``error_managing_deleting`` for a failed import), its snapshots to ``deleting``
        with ``cascade``, and its backend is cast.

        :raises VolumeNotFound: unknown or another project's.
        :raises NotAuthorized: ``force`` from a caller that is not an admin.
        :raises VolumeAttached, InvalidVolume: attached, in a group, has snapshots (without
            ``cascade``) or in a status that cannot be deleted.
        """
        ctx = common.check_context(ctx)
        if not isinstance(cascade, bool):
            raise exception.InvalidInput(reason="cascade must be a boolean")
        if not isinstance(force, bool):
            raise exception.InvalidInput(reason="force must be a boolean")
        if force and not ctx.is_admin:
            raise exception.NotAuthorized(reason="only an admin may force a delete")
        _force = _force or force

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            if _force and volume.status not in _DELETABLE | _NO_HOST_DELETABLE:
                _check_not_held(session, volume)
                from blockmgr.api import admin_actions

                # An import (failed or under way) may hold the user's object: it is reset to
                # error_managing, so that its delete only releases the object.
                reset = (V.ERROR_MANAGING if volume.status in _FAILED_OR_RUNNING_MANAGE
                         else V.ERROR)
                admin_actions.reset_in(session, self.quota, "volume", volume.id, reset,
                                       actor="a forced delete by admin %s"
                                       % (ctx.user_id or ctx.project_id))
                volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            if not volume.host:
                return self._destroy_unplaced(session, volume), None
            self._check_deletable(session, volume, cascade, unmanage=False)
            new = (V.ERROR_MANAGING_DELETING if volume.status == V.ERROR_MANAGING
                   else V.DELETING)
            if cascade:
                for snap in repository.snapshots_of_volume(session, volume.id):
                    repository.transition(session, models.Snapshot, snap.id, S.DELETING,
                                          expected=_SNAPSHOT_DELETABLE | {S.DELETING})
            previous = volume.status
            repository.transition(session, models.Volume, volume.id, new,
                                  expected=(volume.status,), previous_status=previous)
            bell = self._request(session, ctx, "volume", volume.id, volume.host,
                                 "delete_volume", volume_id=volume.id, unmanage_only=False,
                                 cascade=cascade)
            return None, bell

        row, bell = self._write(work)
        if bell is None:
            return row
        self._ring(ctx, bell)
        return self._volume_row(volume_id)

    def unmanage(self, ctx, volume_id: str) -> dict:
        """Stop managing an ``available`` volume: the backend object stays, the row goes.

        :raises VolumeNotFound, VolumeAttached, InvalidVolume: as for delete.
        """
        ctx = common.check_context(ctx)

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            _check_not_held(session, volume)
            if volume.status != V.AVAILABLE or not volume.host:
                raise exception.InvalidVolume(reason="volume %s is %s; only an available "
                                                     "volume can be unmanaged"
                                                     % (volume.id, volume.status))
            self._check_deletable(session, volume, cascade=False, unmanage=True)
            repository.transition(session, models.Volume, volume.id, V.UNMANAGING,
                                  expected=(V.AVAILABLE,), previous_status=volume.status)
            return self._request(session, ctx, "volume", volume.id, volume.host,
                                "delete_volume", volume_id=volume.id, unmanage_only=True,
                                cascade=False)

        self._ring(ctx, self._write(work))
        return self._volume_row(volume_id)

    def _check_deletable(self, session, volume, cascade: bool, unmanage: bool) -> None:
        _check_not_held(session, volume)
        if volume.group_id:
            raise exception.InvalidVolume(reason="volume %s belongs to group %s; remove it "
                                                 "from the group or delete the group"
                                                 % (volume.id, volume.group_id))
        if volume.status not in _DELETABLE and not unmanage:
            raise exception.InvalidVolume(reason="volume %s is %s; it can be deleted when "
                                                 "one of %s" % (volume.id, volume.status,
                                                               ", ".join(sorted(_DELETABLE))))
        snaps = repository.snapshots_of_volume(session, volume.id)
        if snaps and (unmanage or not cascade):
            raise exception.InvalidVolume(reason="volume %s has %d snapshot(s); delete them "
                                                 "first%s" % (volume.id, len(snaps),
                                                              "" if unmanage else
                                                              " or delete with cascade"))
        for snap in snaps:
            if snap.status not in _SNAPSHOT_DELETABLE | {S.DELETING}:
                raise exception.InvalidVolume(reason="snapshot %s of volume %s is %s"
                                                     % (snap.id, volume.id, snap.status))
            if snap.group_snapshot_id:
                raise exception.InvalidVolume(reason="snapshot %s belongs to group snapshot "
                                                     "%s" % (snap.id, snap.group_snapshot_id))

    def _destroy_unplaced(self, session, volume) -> dict:
        if volume.status not in _NO_HOST_DELETABLE:
            raise exception.InvalidVolume(reason="volume %s is %s and not placed yet; wait "
                                                 "until it is placed or fails"
                                                 % (volume.id, volume.status))
        deltas = {}
        if volume.use_quota:
            deltas = {"volumes": -1}
            if volume.status != V.ERROR_MANAGING:
                deltas["gigabytes"] = -volume.size
        repository.soft_delete(session, volume)
        self.quota.consume(session, volume.project_id, volume_type_id=volume.volume_type_id,
                           **deltas)
        return common.row_dict(volume)

    def _volume_row(self, volume_id: str) -> dict:
        with self.db.reader() as session:
            return common.row_dict(repository.get(session, models.Volume, volume_id))

    # --- extend ---------------------------------------------------------------------------

    def extend_volume(self, ctx, volume_id: str, new_size: int) -> dict:
        """Grow a volume to ``new_size`` GiB: status ``extending`` and a ``gigabytes``
        reservation of the difference in one transaction; the scheduler checks the pool.

        :raises InvalidInput: ``new_size`` not an integer larger than the current size.
        :raises InvalidVolume: not available / in-use.
        """
        ctx = common.check_context(ctx)
        common.check_size(new_size, "new_size")
        with self.db.reader() as session:
            current = self._get(session, models.Volume, volume_id, ctx)
            project_id, status, host = current.project_id, current.status, current.host
        self.quota.limit_check(project_id, per_volume_gigabytes=new_size)
        online = False
        if status == V.IN_USE and host:
            online = self._online_extend(ctx, volume_id, host)

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            if volume.status not in _EXTENDABLE or not volume.host:
                raise exception.InvalidVolume(reason="volume %s is %s; it must be available "
                                                     "or in-use to extend (in-use only where "
                                                     "the backend extends attached volumes)"
                                                     % (volume.id, volume.status))
            if volume.status == V.IN_USE and not online:
                raise exception.InvalidVolume(reason="volume %s is in-use and its backend "
                                                     "cannot extend an attached volume; "
                                                     "detach it first" % volume.id)
            if new_size <= volume.size:
                raise exception.InvalidInput(reason="new size %d GiB must be larger than the "
                                                    "current %d GiB" % (new_size, volume.size))
            reservations = []
            if volume.use_quota:
                reservations = self.quota.reserve(
                    volume.project_id, session=session, gigabytes=new_size - volume.size,
                    volume_type_id=volume.volume_type_id,
                    owner=bm_quota.request_owner("volume", volume.id, V.EXTENDING))
            repository.transition(session, models.Volume, volume.id, V.EXTENDING,
                                  expected=_EXTENDABLE, previous_status=volume.status)
            return self._request(session, ctx, "volume", volume.id, common.SCHEDULER,
                                 "extend_volume", volume_id=volume.id, new_size=new_size,
                                 reservations=list(reservations))

        self._ring(ctx, self._write(work))
        return self.get_volume(ctx, volume_id)

    def _online_extend(self, ctx, volume_id: str, host: str) -> bool:
        """Whether the driver of ``host`` extends attached volumes (its capability report's
        ``online_extend_support``, False when it does not say)."""
        try:
            report = self.volume_rpcapi.get_capabilities(ctx, host.partition("#")[0])
        except exception.BlockmgrError as exc:
            raise exception.InvalidVolume(reason="volume %s is in-use and whether its "
                                                 "backend can extend it attached is not "
                                                 "known (%s)" % (volume_id, exc.msg)) from exc
        return bool((report or {}).get("online_extend_support", False))

    # --- manage ---------------------------------------------------------------------------

    def manage_existing(self, ctx, host: str, ref: dict, *, name: str | None = None,
                        description: str | None = None, volume_type: dict | None = None,
                        availability_zone: str | None = None, bootable: bool = False) -> dict:
        """Import backend object ``ref`` on ``host`` (``host@backend[#pool]``) as a volume.

        Row ``managing`` (size 0, the worker learns the size) and ``volumes: +1`` in one
        transaction, then the scheduler routes it to ``host`` if that service is up.

        :raises ManageExistingInvalidReference: no ``source-name`` / ``source-id``.
        :raises ManageExistingAlreadyManaged: ``source-name`` is a live volume's name.
        :raises ServiceNotFound: no volume service serves that backend.
        """
        from blockmgr import services

        ctx = common.check_context(ctx)
        project_id = common.owning_project(ctx)
        host = common.check_host(host)
        ref = common.check_ref(ref)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        availability_zone = common.check_text(availability_zone, "availability_zone")
        volume_type = common.check_volume_type(volume_type)
        if not isinstance(bootable, bool):
            raise exception.InvalidInput(reason="bootable must be a boolean")
        backend = host.partition("#")[0]
        with self.db.reader() as session:
            known = services.list_services(session, self.conf.service_down_time,
                                           binary=services.VOLUME_BINARY)
        if not any(s.host == backend for s in known):
            raise exception.ServiceNotFound(service="volume service of %s" % backend)

        def work(session):
            match = _VOLUME_NAME_RE.match(str(ref.get("source-name") or ""))
            if match:
                existing = session.get(models.Volume, match.group(1))
                if existing is not None and not existing.deleted:
                    _check_not_held(session, existing)
                    raise exception.ManageExistingAlreadyManaged(reason=ref["source-name"])
            volume = repository.create(
                session, models.Volume, size=0, status=V.MANAGING, project_id=project_id,
                user_id=ctx.user_id, host=host, display_name=name,
                display_description=description, availability_zone=availability_zone,
                bootable=bootable, volume_type_id=(volume_type or {}).get("id"))
            self.quota.consume(session, project_id, volumes=1,
                               volume_type_id=volume.volume_type_id)
            bell = self._request(session, ctx, "volume", volume.id, common.SCHEDULER,
                                 "manage_existing", volume_id=volume.id, ref=ref, host=host)
            return common.row_dict(volume), bell

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def get_manageable_volumes(self, ctx, host: str, *, marker=None, limit=None, offset=None,
                               sort_keys=None, sort_dirs=None) -> list:
        """Objects on ``host``'s backend that could be imported (a call to the worker)."""
        args = _listing_args(host, marker, limit, offset, sort_keys, sort_dirs)
        return self.volume_rpcapi.get_manageable_volumes(common.check_context(ctx), *args)

    # --- reading, connections, capabilities --------------------------------------------------

    def get_volume(self, ctx, volume_id: str) -> dict:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            return common.row_dict(self._get(session, models.Volume, volume_id, ctx))

    def _attachments(self):
        from blockmgr.api.attachments import AttachmentService

        return AttachmentService(self.conf, self.db, self.quota,
                                 scheduler_rpcapi=self.scheduler_rpcapi,
                                 volume_rpcapi=self.volume_rpcapi)

    def initialize_connection(self, ctx, volume_id: str, connector: dict) -> dict:
        """Export the volume to ``connector`` (os-brick connector properties); returns the
        connection info (``driver_volume_type`` + ``data``) from its worker. The
        connection is recorded on an attachment, which holds the volume
        (:meth:`blockmgr.api.attachments.AttachmentService.initialize_connection`)."""
        return self._attachments().initialize_connection(ctx, volume_id, connector)

    def terminate_connection(self, ctx, volume_id: str, connector: dict,
                             force: bool = False) -> None:
        """End ``connector``'s connection
        (:meth:`blockmgr.api.attachments.AttachmentService.terminate_connection`)."""
        self._attachments().terminate_connection(ctx, volume_id, connector, force=force)

    def get_capabilities(self, ctx, host: str) -> dict:
        """The capabilities the driver of ``host`` reports (a call to its worker)."""
        return self.volume_rpcapi.get_capabilities(common.check_context(ctx),
                                                   common.check_host(host))


    # --- listing and renaming ----------------------------------------------------------------

    def list_volumes(self, ctx, *, filters: dict | None = None, marker: str | None = None,
                     limit: int | None = None, offset: int | None = None,
                     sort_keys: list | None = None, sort_dirs: list | None = None,
                     all_projects: bool = False) -> list[dict]:
        """One page of the context's volumes (every project's for an admin with
        ``all_projects``, who may then filter by ``project_id``); newest first unless
        sorted otherwise. Filters: :data:`VOLUME_FILTERS`; sort keys:
        :data:`VOLUME_SORT_KEYS`; paging rules: :mod:`blockmgr.api.listing`.

        :raises InvalidInput: unknown filter, status or sort key, bad direction, limit,
            offset or marker; ``all_projects`` for a non-admin.
        """
        return list_resources(self, ctx, models.Volume, VOLUME_SORT_KEYS, VOLUME_FILTERS,
                              V, filters, marker, limit, offset, sort_keys, sort_dirs,
                              all_projects)

    def update_volume(self, ctx, volume_id: str, **changes) -> dict:
        """Change a volume's ``name`` and/or ``description`` (None clears one), in any
        status: they are labels no worker reads.

        :raises InvalidInput: nothing to change, another field, text too long.
        :raises VolumeNotFound: unknown or another project's.
        """
        return update_labels(self, ctx, models.Volume, volume_id, changes)

    # --- revert to snapshot ---------------------------------------------------------------

    def revert_to_snapshot(self, ctx, volume_id: str, snapshot_id: str) -> dict:
        """Revert a volume to its latest snapshot (Cinder's rules, microversion 3.40): in
        one transaction the volume goes ``available`` -> ``reverting``, the snapshot
        ``available`` -> ``restoring`` and the request is recorded for the volume's backend;
        the flow (:mod:`blockmgr.flows.revert_to_snapshot`) copies the snapshot's data over
        the volume's. Returns the volume row.

        :raises VolumeNotFound: unknown or another project's volume.
        :raises InvalidInput: ``snapshot_id`` is not a non-empty string.
        :raises InvalidSnapshot: the volume has no snapshot, or ``snapshot_id`` is not its
            latest one (400).
        :raises InvalidVolume: the volume's size differs from the size it had when the
            snapshot was taken (400).
        :raises Conflict: the volume is not ``available`` or the snapshot is not
            ``available`` (409, as Cinder).
        """
        from blockmgr.flows import revert_to_snapshot as revert_flow

        ctx = common.check_context(ctx)
        if not isinstance(snapshot_id, str) or not snapshot_id:
            raise exception.InvalidInput(reason="snapshot_id must name the volume's latest "
                                                "snapshot, got %r" % (snapshot_id,))

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            latest = revert_flow.latest_snapshot(session, volume.id)
            if latest is None:
                raise exception.InvalidSnapshot(
                    reason="volume %s has no snapshot to revert to" % volume.id)
            if latest.id != snapshot_id:
                raise exception.InvalidSnapshot(
                    reason="snapshot %s is not the latest snapshot of volume %s (the latest "
                           "is %s); a volume can only be reverted to its latest snapshot"
                    % (snapshot_id, volume.id, latest.id))
            revert_flow.check_revertible(volume, latest, latest)
            if volume.status != V.AVAILABLE or not volume.host:
                raise exception.Conflict(
                    reason="volume %s is %s; it can be reverted to snapshot %s only when "
                           "available" % (volume.id, volume.status, latest.id))
            if latest.status != S.AVAILABLE:
                raise exception.Conflict(
                    reason="snapshot %s of volume %s is %s; a volume can be reverted only to "
                           "an available snapshot" % (latest.id, volume.id, latest.status))
            repository.transition(session, models.Snapshot, latest.id, S.RESTORING,
                                  expected=(S.AVAILABLE,), fetch=False)
            repository.transition(session, models.Volume, volume.id, V.REVERTING,
                                  expected=(V.AVAILABLE,), fetch=False, status_reason=None)
            return self._request(session, ctx, "volume", volume.id, volume.host,
                                 "revert_to_snapshot", volume_id=volume.id,
                                 snapshot_id=latest.id)

        self._ring(ctx, self._write(work))
        return self._volume_row(volume_id)


def wants_multiattach(volume_type: dict | None) -> bool:
    """A volume type allows several attachments at once when its extra spec
    ``multiattach`` is ``<is> True`` (the scheduler then places it only on a backend whose
    capabilities report ``multiattach``)."""
    spec = str(((volume_type or {}).get("extra_specs") or {}).get("multiattach", ""))
    return spec.strip().lower() == "<is> true"


def _check_not_held(session, volume) -> None:
    """VolumeAttached (400) while a consumer holds the volume: reserved, attaching,
    in-use, detaching, or any live attachment row."""
    from blockmgr.flows import attachments as attach_rules

    if (volume.status in states.VOLUME_HELD
            or volume.attach_status not in (None, states.AttachStatus.DETACHED)
            or attach_rules.live_attachments(session, volume.id)):
        raise exception.VolumeAttached(volume_id=volume.id)


def _listing_args(host, marker, limit, offset, sort_keys, sort_dirs) -> tuple:
    host = common.check_host(host)
    for what, value in (("limit", limit), ("offset", offset)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise exception.InvalidInput(reason="%s must be an integer >= 0, not %r"
                                                % (what, value))
    if isinstance(marker, str):
        # Drivers match the marker against each entry's reference; a string names the
        # ``source-name`` of the last entry of the previous page.
        marker = {"source-name": marker}
    elif marker is not None:
        marker = common.check_ref(marker)
    # Cinder's public sort key "reference" is what the driver helpers call "identifier".
    keys = ["identifier" if k == "reference" else k for k in sort_keys or []]
    dirs = list(sort_dirs or [])
    if any(k not in MANAGEABLE_SORT_KEYS + ("identifier",) for k in keys):
        raise exception.InvalidInput(reason="sort keys must be among %s, not %s"
                                            % (", ".join(MANAGEABLE_SORT_KEYS), keys))
    if any(d not in ("asc", "desc") for d in dirs) or len(dirs) > max(len(keys), 1):
        raise exception.InvalidInput(reason="sort directions must be asc or desc, one per "
                                            "sort key, not %s" % (dirs,))
    return host, marker, limit, offset, keys or None, dirs or None


#: What volume listings may be filtered and sorted by (public name -> column;
#: ``display_name`` is the spelling python-cinderclient sends for ``name``). Text filters
#: also take the like form ``name~``; ``bootable`` and ``consumes_quota`` are booleans;
#: ``created_at`` / ``updated_at`` take ``op:time`` comparisons (:mod:`.listing`).
VOLUME_FILTERS = {"name": "display_name", "status": "status",
                  "availability_zone": "availability_zone", "group_id": "group_id",
                  "bootable": "bootable", "consumes_quota": "use_quota",
                  "created_at": "created_at", "updated_at": "updated_at"}
VOLUME_SORT_KEYS = {"id": "id", "name": "display_name", "display_name": "display_name",
                    "description": "display_description", "status": "status",
                    "size": "size", "availability_zone": "availability_zone",
                    "created_at": "created_at", "updated_at": "updated_at"}


def list_resources(service, ctx, model, sortable, filterable, statuses, filters, marker,
                   limit, offset, sort_keys, sort_dirs, all_projects) -> list[dict]:
    """The listing both volumes and snapshots share: scope, checks, one page as dicts."""
    what = model.__tablename__[:-1]
    ctx = common.check_context(ctx)
    if not isinstance(all_projects, bool):
        raise exception.InvalidInput(reason="all_projects must be a boolean")
    if all_projects and not ctx.is_admin:
        raise exception.InvalidInput(reason="only an admin may list every project's %ss"
                                            % what)
    accepted = dict(filterable, project_id="project_id") if all_projects else filterable
    query = listing.check(filters=filters, marker=marker, limit=limit, offset=offset,
                          sort_keys=sort_keys, sort_dirs=sort_dirs, sortable=sortable,
                          filterable=accepted)
    for column, value in query.filters.items():
        if not isinstance(value, str):
            raise exception.InvalidInput(reason="filter %s must be a string, not %r"
                                                % (column, value))
    status = query.filters.get("status")
    if status is not None and status not in set(statuses):
        raise exception.InvalidInput(reason="%r is not a %s status; statuses are: %s"
                                            % (status, what, ", ".join(sorted(statuses))))
    with service.db.reader() as session:
        rows = listing.page(session, model, query,
                            project_id=None if all_projects else common.owning_project(ctx))
        return [common.row_dict(row) for row in rows]


def update_labels(service, ctx, model, resource_id: str, changes: dict) -> dict:
    """Set ``name`` / ``description`` (``display_*`` columns) of a row the caller may see."""
    ctx = common.check_context(ctx)
    columns = {"name": "display_name", "description": "display_description"}
    unknown = sorted(set(changes) - set(columns))
    if unknown:
        raise exception.InvalidInput(reason="cannot change %s; only name and description "
                                            "can be updated" % ", ".join(unknown))
    if not changes:
        raise exception.InvalidInput(reason="nothing to update: give a name and/or a "
                                            "description")
    values = {columns[k]: common.check_text(v, k) for k, v in changes.items()}

    def work(session):
        row = service._get(session, model, resource_id, ctx, for_update=True)
        repository.update(session, row, **values)
        return common.row_dict(row)

    return service._write(work)
