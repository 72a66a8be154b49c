"""Consistency group operations of the client library: groups, group snapshots, groups from
a source. Rules shared by every operation: ``common``; the worker-side rules are in
``blockmgr/flows/group_updates.py``."""

from __future__ import annotations

import json

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import states
from blockmgr.api import common
from blockmgr.api import listing
from blockmgr.db import models
from blockmgr.db import repository

V, S, G, GS = (states.VolumeStatus, states.SnapshotStatus, states.GroupStatus,
               states.GroupSnapshotStatus)

_USABLE = frozenset({G.AVAILABLE, G.IN_USE})
_MEMBER_OK = frozenset({V.AVAILABLE, V.IN_USE})
_MEMBER_DELETABLE = frozenset({V.AVAILABLE, V.ERROR, V.ERROR_DELETING})
_REMOVABLE = frozenset({V.AVAILABLE, V.IN_USE, V.ERROR, V.ERROR_DELETING})


class GroupService(common.ServiceBase):

    def create_group(self, ctx, *, name: str | None = None, description: str | None = None,
                     volume_types: list | None = None, group_type_id: str | None = None,
                     availability_zone: str | None = None) -> dict:
        """Create an empty consistency group: row ``creating`` and ``groups: +1`` in one
        transaction; the scheduler picks a backend suiting every volume type."""
        ctx = common.check_context(ctx)
        project_id = common.owning_project(ctx)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        availability_zone = common.check_text(availability_zone, "availability_zone")
        if group_type_id is not None:
            common.check_id(group_type_id, "group type")
        if volume_types is not None and not isinstance(volume_types, list):
            raise exception.InvalidInput(reason="volume_types must be a list of volume types")
        types = [common.check_volume_type(t) for t in volume_types or []]
        type_ids = [t["id"] for t in types if t.get("id")]

        def work(session):
            group = repository.create(
                session, models.Group, status=G.CREATING, project_id=project_id,
                user_id=ctx.user_id, name=name, description=description,
                group_type_id=group_type_id, availability_zone=availability_zone,
                volume_type_ids=json.dumps(type_ids) if type_ids else None)
            self.quota.consume(session, project_id, groups=1)
            spec = {"group_id": group.id, "volume_types": types,
                    "availability_zone": availability_zone}
            return common.row_dict(group), self._request(
                session, ctx, "group", group.id, common.SCHEDULER, "create_group",
                group_id=group.id, request_spec=spec)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def delete_group(self, ctx, group_id: str, *, delete_volumes: bool = False) -> dict:
        """Delete a group (``available``/``error``), with its volumes if ``delete_volumes``.

        A group never placed is removed at once with its quota. Otherwise ``deleting`` and a
        cast; the worker deletes the members and gives back their quota.

        :raises InvalidGroup: wrong status, has volumes (without ``delete_volumes``) or
            group snapshots.
        :raises VolumeAttached, InvalidVolume: a member attached or not deletable.
        """
        ctx = common.check_context(ctx)
        if not isinstance(delete_volumes, bool):
            raise exception.InvalidInput(reason="delete_volumes must be a boolean")

        def work(session):
            group = self._get(session, models.Group, group_id, ctx, for_update=True)
            if group.status not in (G.AVAILABLE, G.ERROR, G.ERROR_DELETING):
                raise exception.InvalidGroup(reason="group %s is %s; it can be deleted when "
                                                    "available or error"
                                                    % (group.id, group.status))
            if _group_snapshots(session, group.id):
                raise exception.InvalidGroup(reason="group %s has group snapshots; delete "
                                                    "them first" % group.id)
            members = repository.volumes_in_group(session, group.id)
            if members and not delete_volumes:
                raise exception.InvalidGroup(reason="group %s has %d volume(s); delete them "
                                                    "or pass delete_volumes"
                                                    % (group.id, len(members)))
            for vol in members:
                if (vol.status in states.VOLUME_HELD
                        or vol.attach_status not in (None, "detached")):
                    raise exception.VolumeAttached(volume_id=vol.id)
                if vol.status not in _MEMBER_DELETABLE:
                    raise exception.InvalidVolume(reason="volume %s of group %s is %s"
                                                         % (vol.id, group.id, vol.status))
                if repository.snapshots_of_volume(session, vol.id):
                    raise exception.InvalidVolume(reason="volume %s of group %s has "
                                                         "snapshots" % (vol.id, group.id))
            if not group.host:
                repository.soft_delete(session, group)
                self.quota.consume(session, group.project_id, groups=-1)
                return common.row_dict(group), None
            repository.transition(session, models.Group, group.id, G.DELETING,
                                  expected=(group.status,))
            group = repository.get(session, models.Group, group.id)
            return common.row_dict(group), self._request(
                session, ctx, "group", group.id, group.host, "delete_group",
                group_id=group.id)

        row, bell = self._write(work)
        if bell is not None:
            self._ring(ctx, bell)
        return row

    def update_group(self, ctx, group_id: str, *, add_volumes: list | None = None,
                     remove_volumes: list | None = None, name: str | None = None,
                     description: str | None = None) -> dict:
        """Rename / re-describe a group and add/remove volumes.

        ``name`` / ``description`` (None: unchanged) are written at once, in any status but
        ``deleting``. Membership changes are checked here (ids, projects, statuses, same
        backend, no other group), the group goes ``updating`` in the same transaction as the
        new name, and the worker is cast to change the membership.

        :raises InvalidInput: nothing to change, a volume both added and removed, bad text.
        :raises GroupNotFound, VolumeNotFound: unknown or another project's.
        :raises InvalidGroup, InvalidVolume: wrong statuses, backend or membership.
        """
        ctx = common.check_context(ctx)
        add = _ids(add_volumes, "add_volumes")
        remove = _ids(remove_volumes, "remove_volumes")
        texts = {key: common.check_text(value, key)
                 for key, value in (("name", name), ("description", description))
                 if value is not None}
        if not add and not remove and not texts:
            raise exception.InvalidInput(reason="give a name, a description, or volumes to "
                                                "add or to remove")
        if set(add) & set(remove):
            raise exception.InvalidInput(reason="a volume cannot be added and removed at once")

        def rename(session):
            group = self._get(session, models.Group, group_id, ctx, for_update=True)
            if group.status in (G.DELETING, G.DELETED):
                raise exception.InvalidGroup(reason="group %s is %s" % (group.id,
                                                                        group.status))
            repository.update(session, group, **texts)
            return common.row_dict(group)

        if not add and not remove:
            return self._write(rename)

        def work(session):
            group = self._get(session, models.Group, group_id, ctx, for_update=True)
            if texts:
                repository.update(session, group, **texts)
            if group.status not in _USABLE or not group.host:
                raise exception.InvalidGroup(reason="group %s is %s, not available"
                                                    % (group.id, group.status))
            backend = group.host.partition("#")[0]
            for vid in add:
                vol = self._get(session, models.Volume, vid, ctx)
                if vol.group_id:
                    raise exception.InvalidVolume(reason="volume %s already belongs to group "
                                                         "%s" % (vol.id, vol.group_id))
                if vol.status not in _MEMBER_OK:
                    raise exception.InvalidVolume(reason="volume %s is %s, not available"
                                                         % (vol.id, vol.status))
                if (vol.host or "").partition("#")[0] != backend:
                    raise exception.InvalidVolume(reason="volume %s is on %s, not on the "
                                                         "group's backend %s"
                                                         % (vol.id, vol.host, backend))
            for vid in remove:
                vol = self._get(session, models.Volume, vid, ctx)
                if vol.group_id != group.id:
                    raise exception.InvalidVolume(reason="volume %s is not in group %s"
                                                         % (vol.id, group.id))
                if vol.status not in _REMOVABLE:
                    raise exception.InvalidVolume(reason="volume %s is %s" % (vol.id,
                                                                              vol.status))
            repository.transition(session, models.Group, group.id, G.UPDATING,
                                  expected=(group.status,))
            return (common.row_dict(repository.get(session, models.Group, group.id)),
                    self._request(session, ctx, "group", group.id, group.host,
                                  "update_group", group_id=group.id, add_volumes=add,
                                  remove_volumes=remove))

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def create_group_snapshot(self, ctx, group_id: str, *, name: str | None = None,
                              description: str | None = None) -> dict:
        """Snapshot every volume of a group: the group snapshot and one snapshot per member
        (all ``creating``) and ``snapshots: +N, gigabytes: +sizes`` in one transaction."""
        ctx = common.check_context(ctx)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")

        def work(session):
            group = self._get(session, models.Group, group_id, ctx, for_update=True)
            if group.status not in _USABLE or not group.host:
                raise exception.InvalidGroup(reason="group %s is %s, not available"
                                                    % (group.id, group.status))
            members = repository.volumes_in_group(session, group.id)
            if not members:
                raise exception.InvalidGroup(reason="group %s has no volumes to snapshot"
                                                    % group.id)
            for vol in members:
                if vol.status not in _MEMBER_OK:
                    raise exception.InvalidVolume(reason="volume %s of group %s is %s"
                                                         % (vol.id, group.id, vol.status))
            gsnap = repository.create(
                session, models.GroupSnapshot, group_id=group.id, status=GS.CREATING,
                project_id=group.project_id, user_id=ctx.user_id, name=name,
                description=description, group_type_id=group.group_type_id)
            by_type: dict = {}
            for vol in members:
                repository.create(
                    session, models.Snapshot, volume_id=vol.id, status=S.CREATING,
                    project_id=vol.project_id, user_id=ctx.user_id, volume_size=vol.size,
                    progress="0%", group_snapshot_id=gsnap.id, display_name=name,
                    volume_type_id=vol.volume_type_id)
                bm_quota.add_for_type(by_type, vol.volume_type_id, snapshots=1,
                                      **common.snapshot_gigabytes(self.conf, vol.size))
            self.quota.consume(session, group.project_id, by_type=by_type)
            return common.row_dict(gsnap), self._request(
                session, ctx, "group_snapshot", gsnap.id, group.host,
                "create_group_snapshot", group_snapshot_id=gsnap.id)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def delete_group_snapshot(self, ctx, group_snapshot_id: str) -> dict:
        """Delete a group snapshot (``available``/``error``) and its snapshots."""
        ctx = common.check_context(ctx)

        def work(session):
            gsnap = self._get(session, models.GroupSnapshot, group_snapshot_id, ctx,
                              for_update=True)
            if gsnap.status not in (GS.AVAILABLE, GS.ERROR, GS.ERROR_DELETING):
                raise exception.InvalidInput(reason="group snapshot %s is %s; it can be "
                                                    "deleted when available or error"
                                                    % (gsnap.id, gsnap.status))
            group = repository.get(session, models.Group, gsnap.group_id)
            repository.transition(session, models.GroupSnapshot, gsnap.id, GS.DELETING,
                                  expected=(gsnap.status,))
            gsnap = repository.get(session, models.GroupSnapshot, gsnap.id)
            return common.row_dict(gsnap), self._request(
                session, ctx, "group_snapshot", gsnap.id, group.host,
                "delete_group_snapshot", group_snapshot_id=gsnap.id)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    def create_group_from_src(self, ctx, *, group_snapshot_id: str | None = None,
                              source_group_id: str | None = None, name: str | None = None,
                              description: str | None = None) -> dict:
        """A new group with one volume per member of a group snapshot or a source group,
        on the source's backend: group and volumes ``creating``, ``groups: +1, volumes: +N,
        gigabytes: +sizes`` in one transaction, then cast that backend."""
        ctx = common.check_context(ctx)
        project_id = common.owning_project(ctx)
        name = common.check_text(name, "name")
        description = common.check_text(description, "description")
        if (group_snapshot_id is None) == (source_group_id is None):
            raise exception.InvalidInput(reason="give exactly one of group_snapshot_id and "
                                                "source_group_id")

        def work(session):
            if group_snapshot_id is not None:
                gsnap = self._get(session, models.GroupSnapshot, group_snapshot_id, ctx)
                if gsnap.status != GS.AVAILABLE:
                    raise exception.InvalidGroup(reason="group snapshot %s is %s, not "
                                                        "available" % (gsnap.id, gsnap.status))
                source_group = repository.get(session, models.Group, gsnap.group_id)
                sources = [(s.volume_size, {"snapshot_id": s.id,
                                            "volume_type_id": s.volume_type_id},
                            s.status == S.AVAILABLE, s.id, s.status)
                           for s in repository.snapshots_of_group_snapshot(session, gsnap.id)]
            else:
                source_group = self._get(session, models.Group, source_group_id, ctx)
                if source_group.status not in _USABLE:
                    raise exception.InvalidGroup(reason="source group %s is %s, not "
                                                        "available" % (source_group.id,
                                                                       source_group.status))
                sources = [(v.size, {"source_volid": v.id, "volume_type_id": v.volume_type_id},
                            v.status == V.AVAILABLE, v.id, v.status)
                           for v in repository.volumes_in_group(session, source_group.id)]
            if not source_group.host:
                raise exception.InvalidGroup(reason="source group %s is not placed"
                                                    % source_group.id)
            for _size, _link, ok, source_id, status in sources:
                if not ok:
                    raise exception.InvalidGroup(reason="source %s is %s, not available"
                                                        % (source_id, status))
            group = repository.create(
                session, models.Group, status=G.CREATING, project_id=project_id,
                user_id=ctx.user_id, name=name, description=description,
                host=source_group.host, group_type_id=source_group.group_type_id,
                volume_type_ids=source_group.volume_type_ids,
                availability_zone=source_group.availability_zone,
                group_snapshot_id=group_snapshot_id, source_group_id=source_group_id)
            by_type: dict = {None: {"groups": 1}}
            for size, link, _ok, _sid, _st in sources:
                repository.create(session, models.Volume, size=size, status=V.CREATING,
                                  project_id=project_id, user_id=ctx.user_id,
                                  host=source_group.host, group_id=group.id,
                                  attach_status="detached", scheduled_at=models.utcnow(),
                                  **link)
                bm_quota.add_for_type(by_type, link["volume_type_id"], volumes=1,
                                      gigabytes=size)
            self.quota.consume(session, project_id, by_type=by_type)
            return common.row_dict(group), self._request(
                session, ctx, "group", group.id, group.host, "create_group_from_src",
                group_id=group.id, group_snapshot_id=group_snapshot_id,
                source_group_id=source_group_id)

        row, bell = self._write(work)
        self._ring(ctx, bell)
        return row

    # --- reading ------------------------------------------------------------------------

    def get_group(self, ctx, group_id: str) -> dict:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            return common.row_dict(self._get(session, models.Group, group_id, ctx))

    def get_group_snapshot(self, ctx, group_snapshot_id: str) -> dict:
        ctx = common.check_context(ctx)
        with self.db.reader() as session:
            return common.row_dict(self._get(session, models.GroupSnapshot,
                                             group_snapshot_id, ctx))

    def list_groups(self, ctx, *, filters: dict | None = None, marker: str | None = None,
                    limit: int | None = None, offset: int | None = None,
                    sort_keys: list | None = None, sort_dirs: list | None = None,
                    all_projects: bool = False) -> list[dict]:
        """One page of the context's groups (every project's for an admin with
        ``all_projects``); newest first unless sorted otherwise. Paging rules:
        :mod:`blockmgr.api.listing`.

        :raises InvalidInput: unknown filter or sort key, bad direction / limit / marker.
        """
        return self._list(ctx, models.Group, GROUP_SORT_KEYS, GROUP_FILTERS, filters, marker,
                          limit, offset, sort_keys, sort_dirs, all_projects)

    def list_group_snapshots(self, ctx, *, filters: dict | None = None,
                             marker: str | None = None, limit: int | None = None,
                             offset: int | None = None, sort_keys: list | None = None,
                             sort_dirs: list | None = None,
                             all_projects: bool = False) -> list[dict]:
        """One page of the context's group snapshots; as :meth:`list_groups`."""
        return self._list(ctx, models.GroupSnapshot, GROUP_SNAPSHOT_SORT_KEYS,
                          GROUP_SNAPSHOT_FILTERS, filters, marker, limit, offset, sort_keys,
                          sort_dirs, all_projects)

    def _list(self, ctx, model, sortable, filterable, filters, marker, limit, offset,
              sort_keys, sort_dirs, all_projects) -> list[dict]:
        ctx = common.check_context(ctx)
        if not isinstance(all_projects, bool):
            raise exception.InvalidInput(reason="all_projects must be a boolean")
        if all_projects and not ctx.is_admin:
            raise exception.InvalidInput(reason="only an admin may list every project's "
                                                "%ss" % model.__tablename__[:-1])
        query = listing.check(filters=filters, marker=marker, limit=limit, offset=offset,
                              sort_keys=sort_keys, sort_dirs=sort_dirs, sortable=sortable,
                              filterable=filterable)
        for key, value in query.filters.items():
            if not isinstance(value, str):
                raise exception.InvalidInput(reason="filter %s must be a string, not %r"
                                                    % (key, value))
        with self.db.reader() as session:
            rows = listing.page(session, model, query,
                                project_id=None if all_projects else common.owning_project(ctx))
            return [common.row_dict(row) for row in rows]


#: What group and group snapshot listings may be sorted and filtered by.
GROUP_SORT_KEYS = ("id", "name", "description", "status", "created_at", "updated_at",
                   "availability_zone", "group_type_id")
GROUP_FILTERS = ("name", "status", "availability_zone", "group_type_id")
GROUP_SNAPSHOT_SORT_KEYS = ("id", "name", "description", "status", "created_at",
                            "updated_at", "group_id")
GROUP_SNAPSHOT_FILTERS = ("name", "status", "group_id")


def _group_snapshots(session, group_id: str) -> list:
    import sqlalchemy as sa

    return list(session.scalars(sa.select(models.GroupSnapshot.id).where(
        models.GroupSnapshot.group_id == group_id, models.GroupSnapshot.deleted.is_(False))))


def _ids(value, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise exception.InvalidInput(reason="%s must be a list of volume ids" % what)
    for item in value:
        common.check_id(item, "volume")
    return list(dict.fromkeys(value))
