"""Snapshot operations of the client library: create, delete, manage, unmanage, manageable
listings. Rules shared by every operation: ``common``."""

from __future__ import annotations

from blockmgr import exception
from blockmgr import services
from blockmgr import states
from blockmgr.api import common
from blockmgr.api import volumes as api_volumes
from blockmgr.db import models
from blockmgr.db import repository

V, S = states.VolumeStatus, states.SnapshotStatus

_DELETABLE = frozenset({S.AVAILABLE, S.ERROR, S.ERROR_DELETING, S.ERROR_MANAGING})
#: A failed manage's snapshot that a forced delete resets: back to ``error_managing``, so
#: that the delete still only unmanages the user's object.
_FAILED_MANAGE = frozenset({S.ERROR_MANAGING, S.ERROR_MANAGING_DELETING})


class SnapshotService(common.ServiceBase):

    def create_snapshot(self, ctx, volume_id: str, *, name: str | None = None,
                        description: str | None = None, force: bool = False) -> dict:
        """Snapshot a volume: row ``creating`` and ``snapshots: +1, gigabytes: +size`` in
        one transaction, then cast the volume's backend. An ``in-use`` volume needs
        ``force``.

        :raises VolumeNotFound: unknown or another project's volume.
        :raises InvalidVolume: the volume is not available (or in-use with ``force``).
        :raises OverQuota: quota.
        """
        ctx = common.check_context(ctx)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        if not isinstance(force, bool):
            raise exception.InvalidInput(reason="force must be a boolean")
        allowed = {V.AVAILABLE, V.IN_USE} if force else {V.AVAILABLE}

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            if volume.status not in allowed or not volume.host:
                raise exception.InvalidVolume(
                    reason="volume %s is %s; a snapshot needs it %s"
                    % (volume.id, volume.status, " or ".join(sorted(allowed))))
            snap = self._new_snapshot(session, ctx, volume, name, description)
            return common.row_dict(snap), self._request(
                session, ctx, "snapshot", snap.id, volume.host, "create_snapshot",
                snapshot_id=snap.id)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def _new_snapshot(self, session, ctx, volume, name, description, **extra):
        snap = repository.create(
            session, models.Snapshot, volume_id=volume.id, status=S.CREATING,
            project_id=volume.project_id, user_id=ctx.user_id, volume_size=volume.size,
            progress="0%", display_name=name, display_description=description,
            volume_type_id=volume.volume_type_id, **extra)
        self.quota.consume(session, volume.project_id, snapshots=1,
                           volume_type_id=volume.volume_type_id,
                           **common.snapshot_gigabytes(self.conf, volume.size))
        return snap

    def delete_snapshot(self, ctx, snapshot_id: str) -> dict:
        """Delete a snapshot (``available``/``error``/``error_deleting``): ``deleting``,
        then cast its volume's backend, which gives the quota back. A snapshot whose manage
        failed (``error_managing``) goes to ``error_managing_deleting`` instead: the
        backend only unmanages its object (the user's), never deletes it.

        :raises SnapshotNotFound: unknown or another project's.
        :raises InvalidSnapshot: wrong status, or a member of a group snapshot.
        """
        ctx = common.check_context(ctx)
        return self._move_and_request(ctx, snapshot_id, S.DELETING, unmanage_only=False)

    def force_delete_snapshot(self, ctx, snapshot_id: str) -> dict:
        """``os-force_delete`` (admin): delete the snapshot whatever its status -- it is
        reset to ``error`` first in the same transaction, which ends its open requests and
        releases what they reserved (:mod:`blockmgr.api.admin_actions`). A snapshot whose
        manage failed (``error_managing_deleting``) is reset to ``error_managing`` instead,
        so that its object is still only unmanaged."""
        ctx = common.check_context(ctx)
        if not ctx.is_admin:
            raise exception.NotAuthorized(reason="only an admin may force a delete")
        return self._move_and_request(ctx, snapshot_id, S.DELETING, unmanage_only=False,
                                      force=True)

    def unmanage_snapshot(self, ctx, snapshot_id: str) -> dict:
        """Stop managing an ``available`` snapshot; the backend object stays."""
        ctx = common.check_context(ctx)
        return self._move_and_request(ctx, snapshot_id, S.UNMANAGING, unmanage_only=True)

    def _move_and_request(self, ctx, snapshot_id: str, new: str, unmanage_only: bool,
                          force: bool = False) -> dict:
        allowed = {S.AVAILABLE} if unmanage_only else _DELETABLE

        def work(session):
            snap = self._get(session, models.Snapshot, snapshot_id, ctx, for_update=True)
            if force and snap.status not in allowed and not snap.group_snapshot_id:
                from blockmgr.api import admin_actions

                reset = S.ERROR_MANAGING if snap.status in _FAILED_MANAGE else S.ERROR
                admin_actions.reset_in(session, self.quota, "snapshot", snap.id, reset,
                                       actor="a forced delete by admin %s"
                                       % (ctx.user_id or ctx.project_id))
                snap = self._get(session, models.Snapshot, snapshot_id, ctx, for_update=True)
            if snap.status not in allowed:
                raise exception.InvalidSnapshot(
                    reason="snapshot %s is %s; it must be %s" % (
                        snap.id, snap.status, " or ".join(sorted(allowed))))
            if snap.group_snapshot_id:
                raise exception.InvalidSnapshot(
                    reason="snapshot %s belongs to group snapshot %s; delete that instead"
                    % (snap.id, snap.group_snapshot_id))
            volume = repository.get(session, models.Volume, snap.volume_id)
            host = common.volume_backend(volume)
            target = (S.ERROR_MANAGING_DELETING
                      if new == S.DELETING and snap.status == S.ERROR_MANAGING else new)
            repository.transition(session, models.Snapshot, snap.id, target,
                                  expected=(snap.status,))
            snap = repository.get(session, models.Snapshot, snap.id)
            return common.row_dict(snap), self._request(
                session, ctx, "snapshot", snap.id, host, "delete_snapshot",
                snapshot_id=snap.id, unmanage_only=unmanage_only)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def manage_existing_snapshot(self, ctx, volume_id: str, ref: dict, *,
                                 name: str | None = None,
                                 description: str | None = None) -> dict:
        """Import backend snapshot ``ref`` of volume ``volume_id``.

        The volume's service must be up (checked here, and again by the scheduler). Row
        ``creating`` with ``volume_size`` = the volume's size, and ``snapshots: +1,
        gigabytes: +size`` in one transaction; the worker charges the real size's
        difference.

        :raises ManageExistingInvalidReference: no ``source-name`` / ``source-id``.
        :raises VolumeNotFound, InvalidVolume: unknown volume, or not available / in-use.
        :raises BackendUnavailable: the volume's service is down.
        """
        ctx = common.check_context(ctx)
        ref = common.check_ref(ref)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        with self.db.reader() as session:
            volume = self._get(session, models.Volume, volume_id, ctx)
            host = common.volume_backend(volume)
            up = services.is_backend_up(session, host, self.conf.service_down_time)
        if not up:
            raise exception.BackendUnavailable(backend=host.partition("#")[0],
                                               reason="its volume service is down")

        def work(session):
            volume = self._get(session, models.Volume, volume_id, ctx, for_update=True)
            if volume.status not in (V.AVAILABLE, V.IN_USE):
                raise exception.InvalidVolume(reason="volume %s is %s, not available or "
                                                     "in-use" % (volume.id, volume.status))
            snap = self._new_snapshot(session, ctx, volume, name, description)
            return common.row_dict(snap), self._request(
                session, ctx, "snapshot", snap.id, common.SCHEDULER,
                "manage_existing_snapshot", snapshot_id=snap.id, ref=dict(ref),
                host=volume.host)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def get_manageable_snapshots(self, ctx, host: str, *, marker=None, limit=None,
                                 offset=None, sort_keys=None, sort_dirs=None) -> list:
        args = api_volumes._listing_args(host, marker, limit, offset, sort_keys, sort_dirs)
        return self.volume_rpcapi.get_manageable_snapshots(common.check_context(ctx), *args)

    def get_snapshot(self, ctx, snapshot_id: str) -> dict:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            return common.row_dict(self._get(session, models.Snapshot, snapshot_id, ctx))

    # --- listing and renaming ----------------------------------------------------------------

    def list_snapshots(self, ctx, *, filters: dict | None = None, marker: str | None = None,
                       limit: int | None = None, offset: int | None = None,
                       sort_keys: list | None = None, sort_dirs: list | None = None,
                       all_projects: bool = False) -> list[dict]:
        """One page of the context's snapshots; as
        :meth:`~blockmgr.api.volumes.VolumeService.list_volumes`, with filters
        :data:`SNAPSHOT_FILTERS` and sort keys :data:`SNAPSHOT_SORT_KEYS`."""
        return api_volumes.list_resources(self, ctx, models.Snapshot, SNAPSHOT_SORT_KEYS,
                                          SNAPSHOT_FILTERS, S, filters, marker, limit,
                                          offset, sort_keys, sort_dirs, all_projects)

    def update_snapshot(self, ctx, snapshot_id: str, **changes) -> dict:
        """Change a snapshot's ``name`` and/or ``description`` (None clears one).

        :raises InvalidInput: nothing to change, another field, text too long.
        :raises SnapshotNotFound: unknown or another project's.
        """
        return api_volumes.update_labels(self, ctx, models.Snapshot, snapshot_id, changes)


#: What snapshot listings may be filtered and sorted by (public name -> column).
SNAPSHOT_FILTERS = {"name": "display_name", "status": "status", "volume_id": "volume_id",
                    "consumes_quota": "use_quota"}
SNAPSHOT_SORT_KEYS = {"id": "id", "name": "display_name", "display_name": "display_name",
                      "description": "display_description", "status": "status",
                      "size": "volume_size", "volume_id": "volume_id",
                      "created_at": "created_at", "updated_at": "updated_at"}
