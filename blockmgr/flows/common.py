"""Pieces every flow shares: the task base class, the runtime bundle, notify and quota tasks.

Quota tasks follow one rule that makes them crash-safe: every reservation a flow makes is
*owned* by the flow (``owner = flow_id``, the flow detail uuid). Reserving is idempotent (a
re-run finds the flow's live reservations and returns them), rolling back and committing act
on "everything this flow owns", so they do the right thing even when the task that reserved
was interrupted before its result was recorded. Recovery resolves whatever a finished or dead
flow still owns (``QuotaEngine.release_orphans``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

from taskflow import task as tf_task
from taskflow.patterns import linear_flow
from taskflow.types import failure as tf_failure

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import transaction
from blockmgr.interface import updates as driver_updates

LOG = logging.getLogger(__name__)

#: ``FlowTask.on_crash`` values: what recovery does when the task was running at a crash.
RESUME = "resume"
REVERT = "revert"

#: Columns a driver model update may set; anything else is ignored (and logged).
VOLUME_MODEL_FIELDS = driver_updates.VOLUME_MODEL_FIELDS
SNAPSHOT_MODEL_FIELDS = driver_updates.SNAPSHOT_MODEL_FIELDS


@dataclasses.dataclass
class FlowRuntime:
    """The non-data collaborators of a flow, injected transiently as ``runtime``.

    ``reschedule(context, volume_id, request_spec, filter_properties)`` casts a create back
    to the scheduler (None: rescheduling unavailable, e.g. during recovery).
    """

    db: Any
    quota: Any
    driver: Any
    notifier: Any
    host: str
    conf: Any = None
    reschedule: Callable[..., None] | None = None
    #: ``close(conn, flow_id)``: writes a flow's end into a transaction of the service
    #: database (``engine.FlowRunner.close_in``); None: a flow's end is the engine's to
    #: write (:func:`close` then writes the final status alone).
    close: Callable[..., Callable[[], None]] | None = None


class FlowTask(tf_task.Task):
    """Base of every blockmgr task: a stable name and a crash policy.

    The TaskFlow name is ``<module>.<Class>`` (plus ``;<addon>`` when one class appears twice
    in a flow) -- logbooks refer to tasks by it, so it must never change for a released flow.
    ``on_crash``: ``RESUME`` (default) if running the task again after a crash is right;
    ``REVERT`` if its side effect cannot be safely repeated, so recovery reverts the flow.
    A task keeps no per-run state on ``self`` (only its constructor arguments): the runner
    reuses built flows across runs (``engine.FlowPool``); a run's data is in the store.

    ``durable_start``: True (default) if the logbook must say the task is ``RUNNING``
    before ``execute`` starts, because ``execute`` changes something (the backend, a row)
    that a crash could leave half-done. False for a task whose ``execute`` only reads,
    computes or notifies: while only such tasks have run since the last boundary, its
    start is committed with the next boundary, saving a logbook write, and a crash
    meanwhile makes them run again (``persistence.FlowPersistence.declare_atoms``). Its
    ``revert`` is unaffected.
    """

    on_crash = RESUME
    durable_start = True

    def __init__(self, addon: str | None = None, **kwargs):
        name = "%s.%s" % (type(self).__module__, type(self).__name__)
        if addon:
            name += ";" + addon
        super().__init__(name=name, **kwargs)


def ctx(context: dict) -> bm_context.RequestContext:
    return bm_context.RequestContext.from_dict(context)


def is_failure(result) -> bool:
    return isinstance(result, tf_failure.Failure)


#: Errors by which a driver refuses a manage request before touching the backend object.
MANAGE_REFUSALS = ("blockmgr.exception.ManageExistingInvalidReference",
                   "blockmgr.exception.ManageExistingAlreadyManaged",
                   "blockmgr.exception.ManageExistingVolumeTypeMismatch")


def manage_was_refused(result) -> bool:
    """True only when a manage step failed with a refusal, so nothing was bound.

    Any other failure (a backend error, a lost reply, a crash) may come after the driver
    already renamed or bound the object; reverting must then unmanage it, or a later delete
    of the ``error_managing`` row would destroy the user's data.
    """
    return is_failure(result) and bool(result.check(*MANAGE_REFUSALS))


def failure_reason(flow_failures: dict | None, limit: int = 255) -> str:
    """A short human reason from TaskFlow's ``flow_failures`` (first failure wins)."""
    for failure in (flow_failures or {}).values():
        names = list(failure)
        text = "%s: %s" % (names[0].rpartition(".")[2] if names else "Error",
                           failure.exception_str)
        return text if len(text) <= limit else text[:limit - 3] + "..."
    return "unknown failure"


def failure_reschedulable(failure: tf_failure.Failure) -> bool:
    """Whether a failure may be fixed by another backend (``BlockmgrError.reschedulable``).

    Works on failures restored from a logbook too (no live exception object): the first
    blockmgr error class named in the failure decides; non-blockmgr errors are reschedulable,
    as in Cinder.
    """
    exc = failure.exception
    if exc is not None:
        return bool(getattr(exc, "reschedulable", True))
    for name in failure:
        cls = exception._REGISTRY.get(name.rpartition(".")[2])
        if cls is not None:
            return cls.reschedulable
    return True


def filter_model_update(update: driver_updates.VolumeModelUpdate
                        | driver_updates.SnapshotModelUpdate | None,
                        allowed: frozenset, what: str) -> dict:
    """The columns of a driver's model update the manager writes (``allowed``: the keys of
    its TypedDict); any other key is logged and dropped."""
    update = dict(update or {})
    dropped = set(update) - allowed
    if dropped:
        LOG.warning("Ignoring driver model update fields %s for %s", sorted(dropped), what)
    return {k: v for k, v in update.items() if k in allowed}


# --- notifications --------------------------------------------------------------------------

class OnFinishTask(FlowTask):
    """Base of a flow's last task: it writes the resource's final status, then sends
    ``<kind>.<event_suffix>`` (the operation's ``.end`` notification) with
    :meth:`notify_end`. The suffix is the task's addon, as it always was (task names are
    unchanged); subclasses set ``kind`` and write ``execute``.

    ``closes_flow``: True for a task whose final write goes through :func:`close`, which
    writes the flow's end in the same transaction; its start then needs no boundary of its
    own (``persistence.FlowPersistence.declare_atoms``). Nothing after that write may fail:
    the flow has ended in the database (:meth:`notify_end` never raises).
    """

    #: Notification prefix: ``volume`` or ``snapshot``.
    kind = ""
    closes_flow = False

    def __init__(self, event_suffix: str):
        super().__init__(addon=event_suffix)
        self.event_suffix = event_suffix

    def notify_end(self, runtime, context, payload: dict) -> None:
        try:
            runtime.notifier.info(ctx(context), "%s.%s" % (self.kind, self.event_suffix),
                                  payload)
        except Exception:
            LOG.exception("Could not send %s.%s for %s", self.kind, self.event_suffix, payload)


class NotifyStartTask(FlowTask):
    """Emits ``<kind>.<action>.start``; on revert emits ``<kind>.<action>.error``.

    The error event is part of the flow so it is also sent when recovery reverts the flow.
    Notification failures never fail the flow (the notifier swallows them).
    ``error_on_revert=False``: a later-reverting task decides whether the operation failed
    (a create that is rescheduled has not) and emits the error event itself.
    """

    durable_start = False   # reads / notifies only (FlowTask)

    def __init__(self, kind: str, action: str, id_arg: str, error_on_revert: bool = True):
        super().__init__(addon=action + ".start", requires=("runtime", "context", id_arg))
        self.kind, self.action, self.id_arg = kind, action, id_arg
        self.error_on_revert = error_on_revert

    def execute(self, runtime, context, **kwargs):
        runtime.notifier.info(ctx(context), "%s.%s.start" % (self.kind, self.action),
                              {self.id_arg: kwargs[self.id_arg], "host": runtime.host})

    def revert(self, runtime, context, flow_failures=None, **kwargs):
        if not self.error_on_revert:
            return
        runtime.notifier.error(ctx(context), "%s.%s.error" % (self.kind, self.action),
                               {self.id_arg: kwargs[self.id_arg], "host": runtime.host,
                                "reason": failure_reason(flow_failures)})


# --- quota ----------------------------------------------------------------------------------

class QuotaReserveTask(FlowTask):
    """Reserve ``quota_request['deltas']`` for ``quota_request['project_id']``, owned by the
    flow, counting the per-type resources of ``quota_request['volume_type_id']`` too (when
    given). Provides ``reservations`` (uuids). Revert: roll back everything the flow owns."""

    default_provides = "reservations"

    def execute(self, runtime, flow_id, quota_request):
        # If this task ran before a crash, its reservations are still pending: reuse them.
        deltas = {k: v for k, v in quota_request["deltas"].items() if v}
        if not deltas:
            return [getattr(r, "uuid", r) for r in runtime.quota.reservations_of(flow_id)]
        return list(runtime.quota.reserve_once(
            quota_request["project_id"], owner=flow_id,
            volume_type_id=quota_request.get("volume_type_id"), **deltas))

    def revert(self, runtime, flow_id, result, **kwargs):
        runtime.quota.rollback_owned(flow_id)


class QuotaCommitTask(FlowTask):
    """Commit every reservation the flow owns. Provides ``committed_quota`` (what was
    committed), which its revert uses to give the usage back with a compensating
    reservation (reached only if a later task fails)."""

    default_provides = "committed_quota"

    def execute(self, runtime, flow_id, quota_request, reservations):
        runtime.quota.commit_owned(flow_id)
        return committed_quota(quota_request)

    def revert(self, runtime, flow_id, result, **kwargs):
        if is_failure(result) or not result or not result["deltas"]:
            return
        negated = {k: -v for k, v in result["deltas"].items()}
        runtime.quota.commit(runtime.quota.reserve(
            result["project_id"], owner=flow_id, volume_type_id=result.get("volume_type_id"),
            **negated))


def committed_quota(quota_request: dict) -> dict:
    """What a quota commit task provides as ``committed_quota``: the request's project,
    non-zero deltas and volume type (so that giving them back counts the same per-type
    resources)."""
    return {"project_id": quota_request["project_id"],
            "deltas": {k: v for k, v in quota_request["deltas"].items() if v},
            "volume_type_id": quota_request.get("volume_type_id")}


class _MovedOn(Exception):
    """Rolls back a finishing transaction whose row had already left its in-progress
    status (internal to :func:`finish_and_commit`)."""

    def __init__(self, committed: int):
        super().__init__(committed)
        self.committed = committed


def finish_and_commit(runtime, flow_id: str, model, resource_id: str, new_status: str, *,
                      in_progress: str, pending=(), **values) -> bool:
    """A flow's last write and its quota commit in ONE transaction: commit every
    reservation the flow owns and move the row out of ``in_progress``
    (:func:`blockmgr.db.repository.finish`).

    Returns True when done now, False when an earlier run of the same task had already done
    it (the worker died before its logbook recorded it): nothing is written then, whatever
    the row's status is by now -- the API may have accepted the next request on it.

    :raises InvalidStatusTransition: the row left ``in_progress`` although the flow still
        held live reservations, so it was not this flow that moved it (an operator reset
        the status); the commit is rolled back with the transaction.
    :raises NotFound: the same, with the row gone.
    """
    def work(session):
        committed = runtime.quota.commit_owned(flow_id, session=session)
        if not repository.finish(session, model, resource_id, new_status,
                                 in_progress=in_progress, pending=pending, **values):
            raise _MovedOn(committed)
        return True

    try:
        return runtime.quota.run_in_transaction(work)
    except _MovedOn as moved:
        if not moved.committed:
            _log_already_finished(model, resource_id, in_progress, new_status)
            return False
    with runtime.db.reader() as session:
        current = repository.get(session, model, resource_id).status
    raise exception.InvalidStatusTransition(
        resource=model.__status_kind__, resource_id=resource_id, current=current,
        requested=new_status, allowed="only from %s while the flow holds its reservations"
        % in_progress)


def finish(runtime, model, resource_id: str, new_status: str, *, in_progress: str,
           **values) -> bool:
    """:func:`finish_and_commit` for a flow without reservations: the last write alone, in
    a transaction of its own; False (nothing written) if an earlier run already made it."""
    with runtime.db.writer() as session:
        return finish_in(session, model, resource_id, new_status, in_progress=in_progress,
                         **values)


def close(runtime, flow_id: str, model, resource_id: str, new_status: str, *,
          in_progress: str, **values) -> bool:
    """A flow's last write and the flow's end in ONE transaction: the resource's final
    status (as :func:`finish`), the flow's logbook rows and the request it runs
    (``FlowRuntime.close``). The calling task declares ``closes_flow``.

    Why: written apart, the status, the logbook's end and the request's end are three
    commits, and a crash between them leaves a finished resource with a flow to resume
    and a request to run again. Together they are one commit, and the task needs no
    boundary before it: a crash before the commit runs the previous task again.

    Returns True when written now, False when an earlier run had already moved the row
    (nothing written; the engine then ends the flow as usual). Run again as a whole on a
    deadlock (:func:`blockmgr.db.transaction.run`).
    """
    if runtime.close is None:
        return finish(runtime, model, resource_id, new_status, in_progress=in_progress,
                      **values)

    def work(conn):
        transaction.read_committed(conn)
        if not finish_in(conn, model, resource_id, new_status, in_progress=in_progress,
                         **values):
            return None
        return runtime.close(conn, flow_id)

    committed = transaction.run(runtime.db.engine.begin, work, connection=False,
                                what="Final write of flow %s" % flow_id)
    if committed is None:
        return False
    committed()
    return True


def finish_in(session, model, resource_id: str, new_status: str, *, in_progress: str,
              pending=(), **values) -> bool:
    """:func:`blockmgr.db.repository.finish` in the caller's transaction (a task that
    writes other rows with it, only if it returns True), saying so when an earlier run of
    the step had already made the write."""
    done = repository.finish(session, model, resource_id, new_status,
                             in_progress=in_progress, pending=pending, **values)
    if not done:
        _log_already_finished(model, resource_id, in_progress, new_status)
    return done


def _log_already_finished(model, resource_id: str, in_progress: str, new_status: str):
    LOG.info("%s %s already left %s: an earlier run of this step wrote %s; nothing written",
             model.__name__, resource_id, in_progress, new_status)


# --- locks --------------------------------------------------------------------------------
#
# Each flow module whose request holds more than its resource's own lock declares
# ``lock_names(resource_id, store, rows) -> list[str]``: the names, from the resource id, the
# flow's store (or the part of it the names depend on) and the rows in :class:`LockRows`. The
# volume manager's endpoint holds them while the flow runs, and recovery holds the same names
# again (from the logbook's store) while it finishes the flow. Without a declaration the
# request holds ``[resource_id]`` (:func:`lock_names_of`).
#
# The names follow Cinder's, so create and delete paths exclude each other:
# ``<snapshot_id>-delete_snapshot`` is held while a volume is created from the snapshot and
# while the snapshot is deleted; ``<volume_id>-delete_volume`` likewise for clones.


def delete_volume_lock(volume_id: str) -> str:
    """Held by whatever must not see volume ``volume_id`` deleted (or half-reverted)."""
    return "%s-delete_volume" % volume_id


def delete_snapshot_lock(snapshot_id: str) -> str:
    """Held by whatever must not see snapshot ``snapshot_id`` deleted."""
    return "%s-delete_snapshot" % snapshot_id


class LockRows:
    """The database rows lock names depend on, read only when a rule asks.

    An endpoint passes the values it has just read (``snapshot_volume``,
    ``group_snapshot_group``, ``group_snapshot_members``: those of the request's own
    resource), so nothing is read twice; recovery passes only the database, and rows are read
    then (deleted ones included where the endpoint's row was live: the flow may have deleted
    it since). A row that is gone adds no name. ``db`` may be None when no rule needs a row.
    """

    def __init__(self, db=None, **known):
        self._db = db
        self._known = known

    def snapshot_volume(self, snapshot_id: str) -> str | None:
        """The volume of snapshot ``snapshot_id``."""
        if "snapshot_volume" in self._known:
            return self._known["snapshot_volume"]
        with self._db.reader() as session:
            try:
                return repository.get(session, models.Snapshot, snapshot_id,
                                      read_deleted=True).volume_id
            except exception.NotFound:
                return None

    def volume_snapshots(self, volume_id: str) -> list[str]:
        """The ids of the live snapshots of volume ``volume_id``."""
        with self._db.reader() as session:
            return [snap.id for snap in repository.snapshots_of_volume(session, volume_id)]

    def group_snapshot_group(self, group_snapshot_id: str) -> str | None:
        """The group of group snapshot ``group_snapshot_id``."""
        if "group_snapshot_group" in self._known:
            return self._known["group_snapshot_group"]
        with self._db.reader() as session:
            try:
                return repository.get(session, models.GroupSnapshot, group_snapshot_id,
                                      read_deleted=True).group_id
            except exception.NotFound:
                return None

    def group_snapshot_members(self, group_snapshot_id: str) -> list[str]:
        """The ids of the snapshots of group snapshot ``group_snapshot_id``."""
        if "group_snapshot_members" in self._known:
            return list(self._known["group_snapshot_members"])
        with self._db.reader() as session:
            return [snap.id for snap in repository.snapshots_of_group_snapshot(
                session, group_snapshot_id)]


def lock_names_of(flow_module, resource_id: str, store: dict, rows: LockRows) -> list[str]:
    """The lock names a request running ``flow_module``'s flow holds (see above)."""
    rule = getattr(flow_module, "lock_names", None)
    if rule is None:
        return [resource_id]
    return rule(resource_id, store, rows)


# --- flow declarations --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlowDeclaration:
    """What blockmgr knows about a flow beyond its tasks.

    ``action``: ``"<kind>:<verb>"``, recorded in the flow detail's meta and used by logs and
    metrics. ``error_status``: ``(model, status, from_statuses)``, where the runner puts the
    resource if the flow cannot be finished now because its logbook is failing (None: the
    resource stays transitional until recovery finishes the flow).
    """

    action: str
    error_status: tuple | None = None


#: Flow name -> declaration, filled by :func:`declare_flow` as flows are built. TaskFlow's
#: flow objects carry only TaskFlow's own attributes.
_DECLARED: dict[str, FlowDeclaration] = {}


def declare_flow(action: str, *tasks, error_status: tuple | None = None) -> linear_flow.Flow:
    """The linear flow of ``tasks`` for ``action`` (named ``<kind>_<verb>_manager``), with
    its :class:`FlowDeclaration`."""
    name = action.replace(":", "_") + "_manager"
    _DECLARED[name] = FlowDeclaration(action, error_status)
    return linear_flow.Flow(name).add(*tasks)


def flow_declaration(flow) -> FlowDeclaration:
    """The declaration of ``flow``; a flow not built by :func:`declare_flow` (a test's)
    has its name as action and declares no error status."""
    found = _DECLARED.get(flow.name)
    if found is not None:
        return found
    return FlowDeclaration(flow.name, None)
