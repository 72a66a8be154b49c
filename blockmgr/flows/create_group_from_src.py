"""Create a consistency group's volumes from a group snapshot or a source group (driver:
``create_consistencygroup_from_src``).

extract group and sources -> notify start -> driver create from source -> apply the model
update -> notify end.

The API wrote the group (``creating``, ``groups: +1``) and one volume per source (``creating``,
``group_id`` set, ``snapshot_id`` / ``source_volid`` naming its source, quota counted); this
flow does no quota work. Exactly one source: every source snapshot / volume must be
``available`` and on this backend (:class:`InvalidGroup`), the counts must match
(:class:`InvalidInput`), every volume's source must be in the set
(:class:`SnapshotNotFound` / :class:`VolumeNotFound`). Rules
(``group_updates.RULES['create_group_from_src']``, "no exception means success"): every
volume ``available`` (``launched_at``, ``bootable`` inherited from its source) and the group
``available`` -- except that a volume whose entry says ``error`` KEEPS ``error`` (Cinder
overwrites it); a model ``error`` is ignored (logged): for this driver call only an
exception means failure (:mod:`blockmgr.interface.consistencygroup`). Any exception ->
group and volumes ``error``.
Store: ``context``, ``group_id``, ``group_snapshot_id``, ``source_group_id``, ``flow_id``.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import group_tasks
from blockmgr.flows import group_updates
from blockmgr.interface import objects

ACTION = "group:create_from_src"
G, GS, S, V = (states.GroupStatus, states.GroupSnapshotStatus, states.SnapshotStatus,
               states.VolumeStatus)
RULE = group_updates.RULES["create_group_from_src"]


def _sources(session, runtime, group_snapshot_id, source_group_id):
    """``(source rows, link column, missing(id) -> NotFound)`` after checking the source itself."""
    if bool(group_snapshot_id) == bool(source_group_id):
        raise exception.InvalidInput(
            reason="give exactly one source: a group snapshot or a source group")
    if group_snapshot_id:
        gsnap = repository.get(session, models.GroupSnapshot, group_snapshot_id)
        parent = repository.get(session, models.Group, gsnap.group_id)
        rows = repository.snapshots_of_group_snapshot(session, group_snapshot_id)
        what, ok, link = "group snapshot %s" % gsnap.id, S.AVAILABLE, "snapshot_id"
        if gsnap.status != GS.AVAILABLE:
            raise exception.InvalidGroup(reason="%s is %s, not available" % (what, gsnap.status))
        def missing(source_id):
            return exception.SnapshotNotFound(snapshot_id=source_id)
    else:
        parent = repository.get(session, models.Group, source_group_id)
        rows = repository.volumes_in_group(session, source_group_id)
        what, ok, link = "source group %s" % parent.id, V.AVAILABLE, "source_volid"
        def missing(source_id):
            return exception.VolumeNotFound(volume_id=source_id)
    if not group_tasks.on_backend(parent.host, runtime.host):
        raise exception.InvalidGroup(reason="%s is on %s, not on this backend %s"
                                     % (what, parent.host, runtime.host))
    for row in rows:
        if row.status != ok:
            raise exception.InvalidGroup(reason="%s: member %s is %s, not %s"
                                         % (what, row.id, row.status, ok))
    return rows, link, missing


class ExtractGroupTask(common.FlowTask):
    """Validate group, volumes and sources; provides ``members`` (volume ids) and
    ``sources`` (the source id of each, same order). Revert: group and volumes still
    ``creating`` -> ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = ("members", "sources")

    def execute(self, runtime, group_id, group_snapshot_id, source_group_id):
        with runtime.db.reader() as session:
            group = repository.get(session, models.Group, group_id)
            if group.status != G.CREATING:
                raise exception.InvalidGroup(
                    reason="group %s is %s, not creating" % (group_id, group.status))
            rows, link, missing = _sources(session, runtime, group_snapshot_id,
                                           source_group_id)
            volumes = repository.volumes_in_group(session, group_id)
            for vol in volumes:
                if vol.status != V.CREATING:
                    raise exception.InvalidVolume(
                        reason="volume %s of group %s is %s, not creating"
                        % (vol.id, group_id, vol.status))
            if len(volumes) != len(rows):
                raise exception.InvalidInput(
                    reason="group %s has %d volumes but its source has %d members"
                    % (group_id, len(volumes), len(rows)))
            by_id = {row.id: row for row in rows}
            sources = []
            for vol in volumes:
                source_id = getattr(vol, link)
                if source_id not in by_id:
                    raise missing(source_id or "(none recorded on volume %s)" % vol.id)
                sources.append(source_id)
            if len(set(sources)) != len(sources):
                raise exception.InvalidInput(
                    reason="two volumes of group %s name the same source" % group_id)
            return [vol.id for vol in volumes], sources

    def revert(self, runtime, group_id, flow_failures=None, **kwargs):
        reason = common.failure_reason(flow_failures)
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.Group, [group_id], {G.CREATING})
            members = [v.id for v in repository.volumes_in_group(session, group_id)]
            group_updates.error_out(session, models.Volume, members, {V.CREATING}, reason)


class CreateGroupFromSrcTask(common.FlowTask):
    """Call the driver with the volumes and their sources in matching order; provides
    ``driver_result``. Repeated after a crash: the volumes are still ``creating``, nobody
    can have written to them, so the driver redoes (or keeps) the copies."""

    default_provides = "driver_result"

    def execute(self, runtime, context, group_id, group_snapshot_id, source_group_id,
                members, sources):
        driver = group_tasks.consistency_driver(runtime, "create group from source")
        with runtime.db.reader() as session:
            def views(model, view, ids):
                return [view.from_model(repository.get(session, model, i)) for i in ids]
            group = objects.GroupView.from_model(repository.get(session, models.Group,
                                                                group_id))
            volumes = views(models.Volume, objects.VolumeView, members)
            kwargs = {}
            if group_snapshot_id:
                kwargs["cgsnapshot"] = objects.GroupSnapshotView.from_model(
                    repository.get(session, models.GroupSnapshot, group_snapshot_id))
                kwargs["snapshots"] = views(models.Snapshot, objects.SnapshotView, sources)
            else:
                kwargs["source_cg"] = objects.GroupView.from_model(
                    repository.get(session, models.Group, source_group_id))
                kwargs["source_vols"] = views(models.Volume, objects.VolumeView, sources)
        return group_updates.normalize(RULE, driver.create_consistencygroup_from_src(
            common.ctx(context), group, volumes, **kwargs))


class ApplyCreateGroupFromSrcTask(common.FlowTask):
    """Write entries, volume statuses (errors kept), inherited flags and the group."""

    def execute(self, runtime, group_id, group_snapshot_id, members, sources, driver_result):
        outcome = group_updates.decide(RULE, driver_result["model"],
                                       driver_result["entries"], members)
        with runtime.db.writer() as session:
            # The group first: if it has left ``creating``, an earlier run of this task
            # wrote everything (one transaction) and the API may have moved on since.
            if not common.finish_in(session, models.Group, group_id, outcome.parent_status,
                                    in_progress=G.CREATING):
                return
            for volume_id, source_id in zip(members, sources):
                origin = (repository.get(session, models.Snapshot, source_id).volume_id
                          if group_snapshot_id else source_id)
                bootable = repository.get(session, models.Volume, origin,
                                          read_deleted=True).bootable
                repository.update(session, repository.get(session, models.Volume, volume_id),
                                  bootable=bootable)
            group_updates.write_members(session, models.Volume, outcome,
                                        success_values={"launched_at": models.utcnow()},
                                        reason=outcome.reason)


def lock_names(group_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The group and its source (``group_snapshot_id`` or ``source_group_id``)."""
    source = store.get("group_snapshot_id") or store.get("source_group_id")
    return [group_id] + ([source] if source else [])


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupTask(),
        group_tasks.GroupNotifyTask("group", "create", "group_id", "volume", "start"),
        CreateGroupFromSrcTask(),
        ApplyCreateGroupFromSrcTask(),
        group_tasks.GroupNotifyTask("group", "create", "group_id", "volume", "end"),
    )
