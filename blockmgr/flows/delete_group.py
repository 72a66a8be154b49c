"""Delete a consistency group and its member volumes (driver: ``delete_consistencygroup``).

extract group -> notify start -> mark members ``deleting`` -> driver delete -> apply the
model update (destroy rows, return quota) -> notify end.

The API moved the group to ``deleting``. Rules (``group_updates.RULES['delete_group']``):
success (``(None, None)`` or no error) destroys every member and the group and returns
``groups: -1`` and, per member, ``volumes: -1, gigabytes: -size`` in the SAME transaction as
the soft deletes. An ``error``/``error_deleting`` entry promotes the model status; a failed
delete writes the entries (members whose entry says ``deleted`` are destroyed, quota
returned), the group becomes ``error``, members still ``deleting`` become ``error``, and
:class:`VolumeDriverException` is raised. Any exception -> the same via the extract revert.
Refused before any change: a member attached (:class:`VolumeAttached`), on another backend or
in a status that cannot be deleted (:class:`InvalidVolume`).
Store: ``context``, ``group_id``, ``flow_id``.
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

ACTION = "group:delete"
G, V = states.GroupStatus, states.VolumeStatus
RULE = group_updates.RULES["delete_group"]
#: Member statuses a group delete may start from.
DELETABLE = states.allowed_sources("volume", V.DELETING)


class ExtractGroupTask(common.FlowTask):
    """Check the group (``deleting``) and every member; provides ``members`` (volume ids).
    Revert: group ``deleting`` -> ``error``, members still ``deleting`` -> ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "members"

    def execute(self, runtime, group_id):
        with runtime.db.reader() as session:
            group = repository.get(session, models.Group, group_id)
            if group.status != G.DELETING:
                raise exception.InvalidGroup(
                    reason="group %s is %s, not deleting" % (group_id, group.status))
            volumes = repository.volumes_in_group(session, group_id)
            for vol in volumes:
                if vol.status == V.IN_USE or vol.attach_status == "attached":
                    raise exception.VolumeAttached(volume_id=vol.id)
                if not group_tasks.on_backend(vol.host, runtime.host):
                    raise exception.InvalidVolume(
                        reason="volume %s of group %s is on %s, not on this backend %s"
                        % (vol.id, group_id, vol.host, runtime.host))
                if vol.status not in DELETABLE:
                    raise exception.InvalidVolume(
                        reason="volume %s of group %s is %s; it can be deleted only from %s"
                        % (vol.id, group_id, vol.status, ", ".join(sorted(DELETABLE))))
            return [vol.id for vol in volumes]

    def revert(self, runtime, group_id, flow_failures=None, **kwargs):
        reason = common.failure_reason(flow_failures)
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.Group, [group_id], {G.DELETING})
            members = [v.id for v in repository.volumes_in_group(session, group_id)]
            group_updates.error_out(session, models.Volume, members, {V.DELETING}, reason)


class MarkMembersDeletingTask(common.FlowTask):
    """Every member -> ``deleting`` (compare-and-swap; a repeat is a no-op)."""

    def execute(self, runtime, members):
        with runtime.db.writer() as session:
            for volume_id in members:
                repository.transition(session, models.Volume, volume_id, V.DELETING,
                                      expected=DELETABLE)


class DeleteGroupTask(common.FlowTask):
    """Call the driver; provides ``driver_result``. Deleting is idempotent in the driver
    contract, so a call interrupted by a crash is simply repeated."""

    default_provides = "driver_result"

    def execute(self, runtime, context, group_id, members):
        driver = group_tasks.consistency_driver(runtime, "delete group")
        with runtime.db.reader() as session:
            group = objects.GroupView.from_model(repository.get(session, models.Group,
                                                                group_id))
            volumes = [objects.VolumeView.from_model(repository.get(session, models.Volume, v))
                       for v in members]
        return group_updates.normalize(
            RULE, driver.delete_consistencygroup(common.ctx(context), group, volumes))


class ApplyDeleteGroupTask(common.FlowTask):
    """One transaction: entries, destroyed rows and their quota; then raise on failure."""

    def execute(self, runtime, flow_id, group_id, members, driver_result):
        outcome = group_updates.decide(RULE, driver_result["model"],
                                       driver_result["entries"], members)
        with runtime.db.writer() as session:
            group = repository.get(session, models.Group, group_id, read_deleted=True)
            if group.deleted:
                return   # done before a crash: the transaction below committed
            deltas: dict = {}
            for volume_id in outcome.destroy:
                vol = repository.get(session, models.Volume, volume_id, read_deleted=True)
                if vol.deleted:
                    continue
                if vol.status != V.DELETED:   # soft_delete goes through the state machine
                    vol.status = V.DELETING
                repository.soft_delete(session, vol)
                if vol.use_quota:
                    group_tasks.add_deltas(deltas, vol.project_id, vol.volume_type_id,
                                           volumes=-1, gigabytes=-vol.size)
            group_updates.write_members(session, models.Volume, outcome,
                                        reason=outcome.reason)
            if outcome.destroy_parent:
                repository.soft_delete(session, group)
                group_tasks.add_deltas(deltas, group.project_id, groups=-1)
            else:
                group_updates.set_status(session, models.Group, group_id,
                                         outcome.parent_status, expected=(G.DELETING,))
            group_tasks.return_quota(runtime, session, flow_id, deltas)
        if outcome.failed:
            raise group_updates.failure_error(RULE, outcome)


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupTask(),
        group_tasks.GroupNotifyTask("group", "delete", "group_id", "volume", "start"),
        MarkMembersDeletingTask(),
        DeleteGroupTask(),
        ApplyDeleteGroupTask(),
        group_tasks.GroupNotifyTask("group", "delete", "group_id", "volume", "end"),
    )
