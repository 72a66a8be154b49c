"""Change the membership of a consistency group (driver: ``update_consistencygroup``).

extract group and volumes -> notify start -> driver update -> apply the model update
(membership, entries, ``available``) -> notify end.

The API moved the group to ``updating``. Volumes to add must be ``available``/``in-use``, on
this backend and in no other group; volumes to remove must be members and
``available``/``in-use``/``error``/``error_deleting`` (else :class:`InvalidVolume`, group
``error``, no volume touched). Rules (``group_updates.RULES['update_group']``): ``None``
results -> group ``available``, membership changed, volume statuses unchanged; entries are
written as given; model ``error`` or a driver exception -> group and every add/remove volume
``error``, membership unchanged, :class:`VolumeDriverException` (or the driver's error).
Group and volume quota do not change.
Store: ``context``, ``group_id``, ``add_volumes``, ``remove_volumes`` (id lists), ``flow_id``.
"""

from __future__ import annotations

import sqlalchemy as sa
from taskflow.patterns import linear_flow

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import group_tasks
from blockmgr.flows import group_updates
from blockmgr.interface import objects

ACTION = "group:update"
G, V = states.GroupStatus, states.VolumeStatus
RULE = group_updates.RULES["update_group"]
ADDABLE = frozenset({V.AVAILABLE, V.IN_USE})
REMOVABLE = frozenset({V.AVAILABLE, V.IN_USE, V.ERROR, V.ERROR_DELETING})


class ExtractGroupTask(common.FlowTask):
    """Validate the request; provides ``members`` (the add then remove volume ids).
    Revert (whatever failed): a group still ``updating`` becomes ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "members"

    def execute(self, runtime, group_id, add_volumes, remove_volumes):
        if set(add_volumes) & set(remove_volumes):
            raise exception.InvalidInput(
                reason="volume(s) %s are both added to and removed from group %s"
                % (", ".join(sorted(set(add_volumes) & set(remove_volumes))), group_id))
        with runtime.db.reader() as session:
            group = repository.get(session, models.Group, group_id)
            if group.status != G.UPDATING:
                raise exception.InvalidGroup(
                    reason="group %s is %s, not updating" % (group_id, group.status))
            for volume_id in add_volumes:
                vol = repository.get(session, models.Volume, volume_id)
                _check(vol, vol.status in ADDABLE, ADDABLE, "added to", group_id)
                if not group_tasks.on_backend(vol.host, runtime.host):
                    raise exception.InvalidVolume(
                        reason="volume %s is on %s; only volumes of this backend %s can "
                               "join group %s" % (volume_id, vol.host, runtime.host, group_id))
                if vol.group_id not in (None, group_id):
                    raise exception.InvalidVolume(
                        reason="volume %s already belongs to group %s"
                        % (volume_id, vol.group_id))
            for volume_id in remove_volumes:
                vol = repository.get(session, models.Volume, volume_id)
                _check(vol, vol.status in REMOVABLE, REMOVABLE, "removed from", group_id)
                if vol.group_id != group_id:
                    raise exception.InvalidVolume(
                        reason="volume %s is not a member of group %s" % (volume_id, group_id))
        return list(add_volumes) + list(remove_volumes)

    def revert(self, runtime, group_id, flow_failures=None, **kwargs):
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.Group, [group_id], {G.UPDATING})


def _check(vol, ok: bool, allowed, verb: str, group_id: str) -> None:
    if not ok:
        raise exception.InvalidVolume(
            reason="volume %s is %s; only %s volumes can be %s group %s"
            % (vol.id, vol.status, "/".join(sorted(allowed)), verb, group_id))


def _error_volumes(runtime, volume_ids, reason: str) -> None:
    with runtime.db.writer() as session:
        for volume_id in volume_ids:
            group_updates.set_status(session, models.Volume, volume_id, V.ERROR,
                                     status_reason=reason[:255])


class UpdateGroupTask(common.FlowTask):
    """Call the driver; provides ``driver_result``. Revert, when the driver raised: every
    add/remove volume ``error`` (``group_updates.RULES``)."""

    default_provides = "driver_result"

    def execute(self, runtime, context, group_id, add_volumes, remove_volumes):
        driver = group_tasks.consistency_driver(runtime, "update group")
        with runtime.db.reader() as session:
            group = objects.GroupView.from_model(repository.get(session, models.Group,
                                                                group_id))
            add = [objects.VolumeView.from_model(repository.get(session, models.Volume, v))
                   for v in add_volumes]
            remove = [objects.VolumeView.from_model(repository.get(session, models.Volume, v))
                      for v in remove_volumes]
        return group_updates.normalize(RULE, driver.update_consistencygroup(
            common.ctx(context), group, add_volumes=add, remove_volumes=remove))

    def revert(self, runtime, result, add_volumes, remove_volumes, flow_failures=None,
               **kwargs):
        if common.is_failure(result):
            _error_volumes(runtime, list(add_volumes) + list(remove_volumes),
                           common.failure_reason(flow_failures))


class ApplyUpdateGroupTask(common.FlowTask):
    """Write entries, membership and ``available`` -- or ``error`` everywhere and raise."""

    def execute(self, runtime, group_id, add_volumes, remove_volumes, members, driver_result):
        entries = (driver_result["add"] or []) + (driver_result["remove"] or [])
        outcome = group_updates.decide(RULE, driver_result["model"], entries, members)
        with runtime.db.writer() as session:
            # The group first: if it has left ``updating`` -- or is ``updating`` again for
            # the next request, with this update's membership already written -- an
            # earlier run of this task wrote everything (one transaction).
            if common.finish_in(session, models.Group, group_id, outcome.parent_status,
                                in_progress=G.UPDATING,
                                pending=_membership_pending(group_id, add_volumes,
                                                            remove_volumes, outcome)):
                group_updates.write_members(session, models.Volume, outcome,
                                            reason=outcome.reason)
                if not outcome.failed:
                    for volume_id, new_group in ([(v, group_id) for v in add_volumes]
                                                 + [(v, None) for v in remove_volumes]):
                        repository.update_by_id(session, models.Volume, volume_id,
                                                group_id=new_group)
        if outcome.failed:
            raise group_updates.failure_error(RULE, outcome)


def _membership_pending(group_id, add_volumes, remove_volumes, outcome) -> tuple:
    """SQL conditions true only while this update's membership change is unwritten: a
    volume to add is not a member yet, or one to remove still is. (A failed update changes
    no membership, and a group in ``error`` takes no further update: nothing to tell apart.)"""
    if outcome.failed or not (add_volumes or remove_volumes):
        return ()
    vol = models.Volume
    not_added = sa.exists().where(vol.id.in_(list(add_volumes)), vol.deleted.is_(False),
                                  sa.or_(vol.group_id.is_(None), vol.group_id != group_id))
    not_removed = sa.exists().where(vol.id.in_(list(remove_volumes)),
                                    vol.deleted.is_(False), vol.group_id == group_id)
    return (sa.or_(not_added, not_removed),)


def lock_names(group_id: str, store: dict, rows: common.LockRows) -> list[str]:
    """The group and every volume added or removed (``add_volumes``, ``remove_volumes``)."""
    return [group_id, *(store.get("add_volumes") or []), *(store.get("remove_volumes") or [])]


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupTask(),
        group_tasks.GroupNotifyTask("group", "update", "group_id", "volume", "start"),
        UpdateGroupTask(),
        ApplyUpdateGroupTask(),
        group_tasks.GroupNotifyTask("group", "update", "group_id", "volume", "end"),
    )
