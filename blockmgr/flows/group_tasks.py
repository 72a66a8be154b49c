"""Tasks and helpers shared by the six consistency-group flows.

* :class:`GroupNotifyTask` -- ``group.<action>.start|end`` (or ``group_snapshot.*``) plus one
  ``volume.<action>.*`` / ``snapshot.<action>.*`` per member, as Cinder does; the start task
  sends the matching ``.error`` events when the flow reverts.
* :func:`consistency_driver` -- the typed refusal for drivers without consistency groups.
* :func:`return_quota` -- gives usage back inside the caller's transaction, so destroyed rows
  and their quota commit together (a crash can never separate them).
* :func:`on_backend` -- the "this row lives on this backend" check.
* :class:`GroupSnapshotDriverTask` -- the driver call of the group snapshot flows (create and
  delete differ by the driver method and the model-update rule only).

The model-update rules themselves live in :mod:`blockmgr.flows.group_updates`.
"""

from __future__ import annotations

from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.drivers import contracts
from blockmgr.flows import common
from blockmgr.flows import group_updates
from blockmgr.interface import ConsistencyGroupDriver
from blockmgr.interface import objects
from blockmgr.interface.capabilities import Capability


class GroupNotifyTask(common.FlowTask):
    """Notify ``<kind>.<action>.<phase>`` for the resource and each member (``members``).

    ``phase='start'``: its revert sends ``<kind>.<action>.error`` (and the members' errors),
    so a flow reverted by recovery reports its failure too. Notifier failures never fail
    the flow (the notifier swallows them).
    """

    durable_start = False   # reads / notifies only (FlowTask)

    def __init__(self, kind: str, action: str, id_arg: str, member_kind: str, phase: str):
        super().__init__(addon="%s.%s.%s" % (kind, action, phase),
                         requires=("runtime", "context", id_arg, "members"))
        self.kind, self.action, self.id_arg = kind, action, id_arg
        self.member_kind, self.phase = member_kind, phase

    def _send(self, runtime, context, send, suffix, resource_id, members, extra):
        ctx = common.ctx(context)
        send(ctx, "%s.%s.%s" % (self.kind, self.action, suffix),
             dict(extra, **{self.id_arg: resource_id, "host": runtime.host}))
        for member_id in members or []:
            send(ctx, "%s.%s.%s" % (self.member_kind, self.action, suffix),
                 dict(extra, **{"%s_id" % self.member_kind: member_id,
                                self.id_arg: resource_id, "host": runtime.host}))

    def execute(self, runtime, context, members, **kwargs):
        self._send(runtime, context, runtime.notifier.info, self.phase, kwargs[self.id_arg],
                   members, {})

    def revert(self, runtime, context, members, flow_failures=None, **kwargs):
        if self.phase != "start":
            return
        self._send(runtime, context, runtime.notifier.error, "error", kwargs[self.id_arg],
                   members if isinstance(members, list) else [],
                   {"reason": common.failure_reason(flow_failures)})


class GroupSnapshotDriverTask(common.FlowTask):
    """Call the driver's ``driver_method`` (``create_cgsnapshot`` / ``delete_cgsnapshot``)
    with views of the group snapshot and its ``members``; provides ``driver_result``,
    normalised by the flow's model-update ``rule`` (:mod:`blockmgr.flows.group_updates`).

    Subclasses set ``operation`` (for the refusal of a driver without consistency groups),
    ``driver_method`` and ``rule``; each keeps its own class, so its task name is its flow's.
    """

    default_provides = "driver_result"
    operation: str = ""
    driver_method: str = ""
    rule = None

    def execute(self, runtime, context, group_snapshot_id, members):
        driver = consistency_driver(runtime, self.operation)
        with runtime.db.reader() as session:
            gsnap = objects.GroupSnapshotView.from_model(
                repository.get(session, models.GroupSnapshot, group_snapshot_id))
            snaps = [objects.SnapshotView.from_model(repository.get(session, models.Snapshot, s))
                     for s in members]
        return group_updates.normalize(
            self.rule, getattr(driver, self.driver_method)(common.ctx(context), gsnap, snaps))


def consistency_driver(runtime, operation: str) -> ConsistencyGroupDriver:
    """The runtime's driver if it implements :class:`ConsistencyGroupDriver` (as recorded
    when its class loaded: :func:`blockmgr.drivers.contracts.capabilities_of`).

    blockmgr groups are *consistency* groups: a per-volume fallback could not take
    consistent snapshots, so a driver without the interface is refused rather than faked.

    :raises Unsupported: the driver does not implement consistency groups.
    """
    contracts.capabilities_of(runtime.driver).require(Capability.CONSISTENCY_GROUPS,
                                                      operation, runtime.host)
    return runtime.driver


def on_backend(host: str | None, backend_host: str) -> bool:
    """True when ``host`` (``host@backend[#pool]``) is on ``backend_host`` (``host@backend``)."""
    return (host or "").partition("#")[0] == backend_host


def return_quota(runtime, session, flow_id: str, deltas_by_project: dict) -> None:
    """Give back ``{project_id: {volume type id: {resource: -n}}}`` (built with
    :func:`add_deltas`) in ``session``'s transaction, per-type resources included.

    Reserved and committed at once, owned by the flow, joined to the caller's transaction:
    the usage changes commit with the soft deletes or not at all.
    """
    for project_id in sorted(p for p in deltas_by_project if p):
        by_type = deltas_by_project[project_id]
        if any(any(deltas.values()) for deltas in by_type.values()):
            uuids = runtime.quota.reserve(project_id, owner=flow_id, session=session,
                                          by_type=by_type)
            runtime.quota.commit(uuids, session=session)


def add_deltas(target: dict, project_id: str | None, volume_type_id: str | None = None,
               **deltas: int) -> None:
    """Add the deltas of one row (of type ``volume_type_id``, None for a group) to
    ``target``, for :func:`return_quota`."""
    bm_quota.add_for_type(target.setdefault(project_id, {}), volume_type_id, **deltas)
