"""Crash recovery at worker start: nothing of this host stays in flight.

Order (``recover``):

1. **Unfinished flows** of this host's logbook are finished: resumed, or reverted when a task
   that was running at the crash says its side effect cannot be repeated
   (``FlowTask.on_crash``; see ``docs/flows.md`` for the per-task table). A flow that was
   reverting keeps reverting.
2. **Orphaned transitional resources** -- rows of this host in a transitional status
   (:data:`blockmgr.states.TRANSITIONAL`) with no live flow, e.g. the worker died after the
   API wrote ``creating`` but before the flow was persisted -- move to the error status of
   their operation (:data:`ORPHAN_STATUS`), unless :data:`ORPHAN_HANDLERS` has a better
   handler: an orphaned delete or unmanage (volume or snapshot) is finished by running its
   idempotent flow, as Cinder re-runs a delete (and its quota is returned with it).

   A row without a flow is not necessarily lost: its request may still be **queued in the
   broker** for this worker (placed and cast, not yet taken when the worker died). With
   ``defer_orphans`` (the daemon), such rows are not moved here but listed in
   :attr:`RecoveryReport.deferred`; :mod:`blockmgr.volume.drain` resolves them with
   :func:`resolve_orphans` once every request queued before the worker started consuming
   has been taken and has finished -- a request that arrives meanwhile runs its flow
   normally. A caller without a queue (tests, tools) resolves them at once, as before.
3. **Reservations**: every reservation whose owner is not a live flow (of any host) is
   resolved by the quota engine (``release_orphans``), so nothing waits for expiry.
4. **Pruning** of finished flows older than ``[flows] finished_flow_retention``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import states
from blockmgr.cluster import recovery as cluster_recovery
from blockmgr.db import models
from blockmgr.db import repository

LOG = logging.getLogger(__name__)

V, S, G, GS = (states.VolumeStatus, states.SnapshotStatus, states.GroupStatus,
               states.GroupSnapshotStatus)

#: kind -> transitional status -> where an orphan goes.
ORPHAN_STATUS = {
    "volume": {V.CREATING: V.ERROR, V.MANAGING: V.ERROR_MANAGING,
               V.DELETING: V.ERROR_DELETING, V.EXTENDING: V.ERROR_EXTENDING,
               V.UNMANAGING: V.ERROR_UNMANAGING,
               V.ERROR_MANAGING_DELETING: V.ERROR_MANAGING},
    "snapshot": {S.CREATING: S.ERROR, S.DELETING: S.ERROR_DELETING,
                 S.UNMANAGING: S.ERROR_DELETING},
    "group": {G.CREATING: G.ERROR, G.UPDATING: G.ERROR, G.DELETING: G.ERROR_DELETING},
    "group_snapshot": {GS.CREATING: GS.ERROR, GS.UPDATING: GS.ERROR,
                       GS.DELETING: GS.ERROR_DELETING},
}

#: (kind, status) -> handler(manager, resource_id); overrides ORPHAN_STATUS for that pair.
ORPHAN_HANDLERS: dict[tuple[str, str], Callable] = {}


def _finish_delete(kind: str, unmanage_only: bool = False) -> Callable:
    """A handler re-running an orphaned delete/unmanage (idempotent, as in Cinder): the
    flow leaves a final status and returns the quota; its failure is logged, not raised."""

    def handler(manager, resource_id: str) -> None:
        context = bm_context.get_admin_context()
        try:
            if kind == "snapshot":
                manager.delete_snapshot(context, resource_id, unmanage_only=unmanage_only)
                return
            with manager.db.reader() as session:
                snaps = repository.snapshots_of_volume(session, resource_id)
                cascade = bool(snaps) and all(s.status == S.DELETING for s in snaps)
            manager.delete_volume(context, resource_id, unmanage_only=unmanage_only,
                                  cascade=cascade)
        except exception.NotFound:
            raise
        except exception.BlockmgrError as exc:
            LOG.warning("Resumed delete of %s %s failed: %s", kind, resource_id, exc)

    return handler


ORPHAN_HANDLERS.update({
    ("volume", V.DELETING): _finish_delete("volume"),
    ("volume", V.ERROR_MANAGING_DELETING): _finish_delete("volume"),
    ("volume", V.UNMANAGING): _finish_delete("volume", unmanage_only=True),
    ("snapshot", S.DELETING): _finish_delete("snapshot"),
    ("snapshot", S.UNMANAGING): _finish_delete("snapshot", unmanage_only=True),
})

_MODELS = {"volume": models.Volume, "snapshot": models.Snapshot, "group": models.Group,
           "group_snapshot": models.GroupSnapshot}


@dataclasses.dataclass
class RecoveryReport:
    resumed: list[str] = dataclasses.field(default_factory=list)
    reverted: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    orphans: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    #: ``(kind, id, status)`` left transitional for :func:`resolve_orphans` (defer_orphans).
    deferred: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    reservations_released: object = None
    pruned: int = 0


def _transitional_rows(session, host: str):
    for kind, model in _MODELS.items():
        wanted = sorted(states.TRANSITIONAL[kind])
        if kind == "snapshot":
            rows = repository.list_snapshots_by_host_and_status(session, host, wanted)
        elif kind == "group_snapshot":
            rows = repository.list_group_snapshots_by_host_and_status(session, host, wanted)
        else:
            rows = repository.list_by_host_and_status(session, model, host, wanted)
        for row in rows:
            yield kind, row.id, row.status


def recover(manager, *, defer_orphans: bool = False) -> RecoveryReport:
    """Run the four steps above for ``manager`` (a VolumeManager); see module docstring.

    ``defer_orphans``: orphans without a handler are listed in ``report.deferred`` instead
    of being moved to their error status (their request may still be queued)."""
    report = RecoveryReport()
    runner, runtime = manager.runner, manager.runtime(reschedule=None)
    for detail in runner.unfinished():
        try:
            mode, outcome = runner.resume(detail, runtime)
        except Exception:
            LOG.exception("Could not recover flow %s", detail.uuid)
            report.failed.append(detail.uuid)
            continue
        (report.resumed if mode == "resume" else report.reverted).append(detail.uuid)
        if outcome.failure is not None:
            LOG.info("Recovered flow %s ended in failure: %s", detail.uuid, outcome.failure)

    live = runner.backend.unfinished_flow_uuids()
    with manager.db.reader() as session:
        orphans = list(_transitional_rows(session, manager.host))
    orphans = _without_flow(runner, orphans, live)
    for kind, resource_id, status in orphans:
        handler = ORPHAN_HANDLERS.get((kind, status))
        if handler is None and defer_orphans:
            report.deferred.append((kind, resource_id, str(status)))
            continue
        try:
            if handler is not None:
                handler(manager, resource_id)
                target = "handled"
            else:
                target = _move_orphan(manager, kind, resource_id, status)
        except (exception.NotFound, exception.InvalidStatusTransition):
            continue   # moved on meanwhile: someone else dealt with it
        LOG.warning("%s %s was left %s without a flow; now %s", kind, resource_id, status,
                    target)
        report.orphans.append((kind, resource_id, str(target)))
    if report.deferred:
        LOG.info("%d resource(s) of %s are transitional without a flow; resolved once the "
                 "requests queued for this backend have been taken", len(report.deferred),
                 manager.host)

    report.reservations_released = manager.quota.release_orphans(lambda owner: owner in live)
    report.pruned = runner.prune(manager.conf.flows.finished_flow_retention)
    return report


def resolve_orphans(manager, deferred) -> list[tuple[str, str, str]]:
    """Move the ``deferred`` orphans (``(kind, id, status)``) that are *still* orphans to
    their error status; returns ``(kind, id, new status)`` of those moved.

    Still an orphan: the row is in the same transitional status, on this host, and no
    unfinished flow works on it. Each is checked and moved holding the resource's lock, the
    one every request on it holds while its flow runs, so a request being served for it is
    never overtaken. The caller guarantees that no request for these resources is still
    waiting to be served (:mod:`blockmgr.volume.drain`); one that arrives later anyway finds
    the error status and is refused by its flow, so nothing runs twice.
    """
    moved = []
    # A flow on one of them that could not be resumed at start is still unfinished: leave
    # it to the next start. (Flows started since hold the resource's lock while they run.)
    deferred = _without_flow(manager.runner, list(deferred),
                             manager.runner.backend.unfinished_flow_uuids())
    for kind, resource_id, status in deferred:
        with manager.locks.hold([resource_id]):
            with manager.db.reader() as session:
                current = {(k, rid): st for k, rid, st
                           in _transitional_rows(session, manager.host)}
            if current.get((kind, resource_id)) != status:
                continue   # finished, failed, rescheduled or deleted: resolved already
            try:
                target = _move_orphan(manager, kind, resource_id, status)
            except (exception.NotFound, exception.InvalidStatusTransition):
                continue
        LOG.warning("%s %s was left %s without a flow and no request for it came; now %s",
                    kind, resource_id, status, target)
        moved.append((kind, resource_id, str(target)))
    return moved


def _move_orphan(manager, kind: str, resource_id: str, status: str):
    target = ORPHAN_STATUS[kind][status]
    model = _MODELS[kind]
    # Volumes and snapshots say why; groups and group snapshots have no reason column.
    reason = ({"status_reason": "worker restarted during %s" % status}
              if hasattr(model, "status_reason") else {})
    with manager.db.writer() as session:
        repository.transition(session, model, resource_id, target, expected=(status,),
                              **reason)
    return target


def _without_flow(runner, items, live) -> list:
    """``items`` (``(kind, id, status)``) that no unfinished flow in ``live`` works on."""
    busy = cluster_recovery.busy_resources(runner)   # jobs claimed by live cluster peers
    for uuid in live:
        busy.update(_resource_of(runner, uuid))
    return [item for item in items if item[1] not in busy]


def _resource_of(runner, flow_uuid: str) -> set[str]:
    import contextlib

    try:
        with contextlib.closing(runner.backend.get_connection()) as conn:
            meta = conn.get_flow_details(flow_uuid, lazy=True).meta or {}
    except Exception:
        return set()
    return {meta["resource_id"]} if meta.get("resource_id") else set()
