"""Create a consistency group on this backend (driver: ``create_consistencygroup``).

extract group -> notify start -> driver create -> apply the model update -> notify end.

The API wrote the row (``creating``) and counted ``groups: +1``; this flow does no quota
work. Rules (``group_updates.RULES['create_group']``): ``None`` or any non-error model ->
``available``; model ``error`` -> ``error`` and :class:`VolumeDriverException`; any exception
(driver or not) -> ``error`` via :class:`ExtractGroupTask`'s revert, and a
``group.create.error`` event.
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

ACTION = "group:create"
G = states.GroupStatus
RULE = group_updates.RULES["create_group"]


class ExtractGroupTask(common.FlowTask):
    """Check the group is ``creating`` on this backend; provides ``members`` (volume ids,
    usually none). Revert (whatever failed): a group still ``creating`` becomes ``error``."""

    durable_start = False   # reads / notifies only (FlowTask)

    default_provides = "members"

    def execute(self, runtime, group_id):
        with runtime.db.reader() as session:
            group = repository.get(session, models.Group, group_id)
            if group.status != G.CREATING:
                raise exception.InvalidGroup(
                    reason="group %s is %s, not creating" % (group_id, group.status))
            return [v.id for v in repository.volumes_in_group(session, group_id)]

    def revert(self, runtime, group_id, flow_failures=None, **kwargs):
        with runtime.db.writer() as session:
            group_updates.error_out(session, models.Group, [group_id], {G.CREATING})


class CreateGroupTask(common.FlowTask):
    """Call the driver; provides ``driver_result`` (normalized, JSON)."""

    default_provides = "driver_result"

    def execute(self, runtime, context, group_id):
        driver = group_tasks.consistency_driver(runtime, "create group")
        with runtime.db.reader() as session:
            view = objects.GroupView.from_model(repository.get(session, models.Group, group_id))
        return group_updates.normalize(
            RULE, driver.create_consistencygroup(common.ctx(context), view))


class ApplyCreateGroupTask(common.FlowTask):
    """Write the outcome: ``available``, or ``error`` and raise."""

    def execute(self, runtime, group_id, driver_result):
        outcome = group_updates.decide(RULE, driver_result["model"], None, [])
        common.finish(runtime, models.Group, group_id, outcome.parent_status,
                      in_progress=G.CREATING)
        if outcome.failed:
            raise group_updates.failure_error(RULE, outcome)


def get_flow() -> linear_flow.Flow:
    return common.declare_flow(
        ACTION,
        ExtractGroupTask(),
        group_tasks.GroupNotifyTask("group", "create", "group_id", "volume", "start"),
        CreateGroupTask(),
        ApplyCreateGroupTask(),
        group_tasks.GroupNotifyTask("group", "create", "group_id", "volume", "end"),
    )
