"""Crash recovery at worker start: nothing of this host stays in flight.

Order (``recover``):

1. **Unfinished flows** of this host's logbook are finished: resumed, or reverted when a task
   that was running at the crash says its side effect cannot be repeated
   (``FlowTask.on_crash``; see ``docs/flows.md`` for the per-task table). A flow that was
   reverting keeps reverting. Flows are recovered concurrently, on ``[flows]
   recovery_workers`` threads (:func:`recover_flows`): each one holds the locks its request
   held (:func:`lock_names`), and flows that share a lock are recovered one after the other,
   oldest first, by one thread. A flow whose recovery raises is reported and left
   unfinished; the others go on.
2. **Orphaned transitional resources** -- rows of this host in a transitional status
   (:data:`blockmgr.states.TRANSITIONAL`) with no live flow *and no open request* in the
   ledger. A row with an open request is not an orphan: its request is run by the ledger's
   sweep (:mod:`blockmgr.ledger`), which the daemon starts right after recovery. A true
   orphan (written without a request, e.g. by an older release or by hand) moves to the
   error status of its operation (:data:`ORPHAN_STATUS`), unless :data:`ORPHAN_HANDLERS`
   has a better handler: an orphaned delete or unmanage (volume or snapshot) is finished by
   running its idempotent flow, as Cinder re-runs a delete (and its quota is returned).
3. **Reservations**: every reservation whose owner is not a live flow (of any host) is
   resolved by the quota engine (``release_orphans``), so nothing waits for expiry.
4. **Pruning** of finished flows older than ``[flows] finished_flow_retention``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib
import logging
import threading
import time
from typing import Callable

import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import states
from blockmgr.cluster import recovery as cluster_recovery
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import common as flow_common
from blockmgr.flows import taskflow_compat

LOG = logging.getLogger(__name__)

V, S, G, GS = (states.VolumeStatus, states.SnapshotStatus, states.GroupStatus,
               states.GroupSnapshotStatus)

#: kind -> transitional status -> where an orphan goes.
ORPHAN_STATUS = {
    "volume": {V.CREATING: V.ERROR, V.MANAGING: V.ERROR_MANAGING,
               V.DELETING: V.ERROR_DELETING, V.EXTENDING: V.ERROR_EXTENDING,
               V.UNMANAGING: V.ERROR_UNMANAGING,
               V.ERROR_MANAGING_DELETING: V.ERROR_MANAGING,
               # Whether the data changed is unknown: error, as a failed revert.
               V.REVERTING: V.ERROR},
    # A revert keeps its snapshot whatever happened to the volume (as in Cinder).
    "snapshot": {S.CREATING: S.ERROR, S.DELETING: S.ERROR_DELETING,
                 S.UNMANAGING: S.ERROR_DELETING, S.RESTORING: S.AVAILABLE,
                 S.ERROR_MANAGING_DELETING: S.ERROR_MANAGING},
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


def _restoring_snapshot(manager, snapshot_id: str) -> None:
    """A snapshot left ``restoring``: while its volume is still ``reverting`` the volume's
    revert (its open request, or its flow) finishes both, so the snapshot stays out of reach
    of a delete meanwhile; otherwise it goes back to ``available``."""
    with manager.db.writer() as session:
        volume_id = repository.get(session, models.Snapshot, snapshot_id).volume_id
        volume = session.get(models.Volume, volume_id)
        if volume is not None and not volume.deleted and volume.status == V.REVERTING:
            LOG.info("Snapshot %s stays restoring: volume %s is still reverting to it",
                     snapshot_id, volume_id)
            return
        _settle(session, manager.quota, "snapshot", snapshot_id, S.RESTORING,
                "left restoring without a revert in progress")


ORPHAN_HANDLERS.update({
    ("volume", V.DELETING): _finish_delete("volume"),
    ("volume", V.ERROR_MANAGING_DELETING): _finish_delete("volume"),
    ("volume", V.UNMANAGING): _finish_delete("volume", unmanage_only=True),
    ("snapshot", S.DELETING): _finish_delete("snapshot"),
    ("snapshot", S.UNMANAGING): _finish_delete("snapshot", unmanage_only=True),
    # A failed manage's delete: the delete flow only unmanages (the object is the user's).
    ("snapshot", S.ERROR_MANAGING_DELETING): _finish_delete("snapshot"),
    ("snapshot", S.RESTORING): _restoring_snapshot,
})

_MODELS = {"volume": models.Volume, "snapshot": models.Snapshot, "group": models.Group,
           "group_snapshot": models.GroupSnapshot}


@dataclasses.dataclass
class RecoveryReport:
    resumed: list[str] = dataclasses.field(default_factory=list)
    reverted: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    orphans: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
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


def recover(manager) -> RecoveryReport:
    """Run the four steps above for ``manager`` (a VolumeManager); see module docstring."""
    report = RecoveryReport()
    runner = manager.runner
    recover_flows(manager, runner.unfinished(), report)

    live = runner.backend.unfinished_flow_uuids()
    with manager.db.reader() as session:
        orphans = list(_transitional_rows(session, manager.host))
        parents = _group_parents(session, orphans)
        requested = db_requests.open_resource_ids(
            session, [o[1] for o in orphans] + sorted(set(parents.values())))
    orphans = [o for o in _without_flow(runner, orphans, live)
               if o[1] not in requested and parents.get(o[1]) not in requested]
    for kind, resource_id, status in orphans:
        handler = ORPHAN_HANDLERS.get((kind, status))
        try:
            if handler is not None:
                handler(manager, resource_id)
                target = "handled"
            else:
                target = _move_orphan(manager, kind, resource_id, status)
        except (exception.NotFound, exception.InvalidStatusTransition):
            continue   # moved on meanwhile: someone else dealt with it
        LOG.warning("%s %s was left %s without a flow or a request; now %s", kind,
                    resource_id, status, target)
        report.orphans.append((kind, resource_id, str(target)))

    report.reservations_released = manager.quota.release_orphans(lambda owner: owner in live)
    report.pruned = runner.prune(manager.conf.flows.finished_flow_retention)
    return report


def recovery_workers(conf) -> int:
    """Threads recovering flows at start: ``[flows] recovery_workers``, 0 meaning as many as
    the backend's RPC server (``rpc_worker_threads``), the concurrency the flows ran with."""
    workers = conf.flows.recovery_workers
    return workers if workers > 0 else conf.rpc_worker_threads


def recover_flows(manager, details, report: RecoveryReport) -> None:
    """Resume or revert every flow of ``details`` (oldest first), adding each to ``report``.

    Why concurrently: a resume is mostly waiting (database round trips, driver calls), and a
    worker that died under load leaves as many flows as it ran at once -- up to a thousand
    took minutes one at a time. Why it stays correct:

    * every flow holds the locks its request held while it runs (:func:`lock_names`, taken
      from ``manager.locks`` exactly as the endpoint takes them), so it excludes whatever
      the normal path would exclude -- another recovered flow, or a request;
    * flows sharing any lock name form one group, recovered in order by a single thread,
      so two recovery threads never wait on each other's locks and the older flow of a
      resource is finished before the newer one starts, as one at a time did;
    * a flow whose recovery raises is logged and listed in ``report.failed``; it stays
      unfinished for the next start and the other flows go on.

    A cluster runner holds its job's recorded locks itself inside ``resume``; its flows are
    not locked a second time here (the registries are not reentrant).
    """
    details = list(details)
    if not details:
        return
    started = time.monotonic()
    workers = recovery_workers(manager.conf)
    self_locking = getattr(manager.runner, "locks", None) is manager.locks
    names = {d.uuid: ([] if self_locking else lock_names(manager, d)) for d in details}
    groups = conflict_groups(details, names)
    guard = threading.Lock()

    def recover_group(group):
        for detail in group:
            outcome = _recover_one(manager, detail, names[detail.uuid])
            with guard:
                if outcome is None:
                    report.failed.append(detail.uuid)
                elif outcome == "resume":
                    report.resumed.append(detail.uuid)
                else:
                    report.reverted.append(detail.uuid)

    if workers == 1 or len(groups) == 1:
        for group in groups:
            recover_group(group)
    else:
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(workers, len(groups)),
                thread_name_prefix="recovery-%s" % manager.host) as pool:
            for future in [pool.submit(recover_group, g) for g in groups]:
                future.result()   # recover_group never raises: _recover_one reports
    LOG.info("%s: recovery of %d flow(s) took %.2f s (%d group(s), %d worker(s))",
             manager.host, len(details), time.monotonic() - started, len(groups),
             1 if workers == 1 else min(workers, len(groups)))


def recover_one(manager, detail) -> str | None:
    """Resume or revert one unfinished flow holding the locks its request held
    (``"resume"``/``"revert"``; None if its recovery raised)."""
    self_locking = getattr(manager.runner, "locks", None) is manager.locks
    return _recover_one(manager, detail, [] if self_locking else lock_names(manager, detail))


def _recover_one(manager, detail, names: list[str]) -> str | None:
    """``"resume"``/``"revert"`` once the flow finished; None if its recovery raised."""
    try:
        with manager.locks.hold(names) if names else contextlib.nullcontext():
            mode, outcome = manager.runner.resume(detail, manager.runtime(reschedule=None))
    except Exception:
        LOG.exception("Could not recover flow %s", detail.uuid)
        return None
    if outcome.failure is not None:
        LOG.info("Recovered flow %s ended in failure: %s", detail.uuid, outcome.failure)
    return mode


def conflict_groups(details, names: dict) -> list[list]:
    """``details`` split into groups of flows connected by a shared lock name (or the same
    resource), each group in the order of ``details``; groups ordered by their first."""
    parent: dict[str, str] = {}

    def find(key):
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for detail in details:
        keys = ["flow:" + detail.uuid] + ["lock:" + n for n in names.get(detail.uuid, ())]
        resource = (detail.meta or {}).get("resource_id")
        if resource:
            keys.append("lock:" + resource)
        root = find(keys[0])
        for key in keys[1:]:
            parent[find(key)] = root
    groups: dict[str, list] = {}
    for detail in details:
        groups.setdefault(find("flow:" + detail.uuid), []).append(detail)
    return list(groups.values())


def _store_of(detail) -> dict:
    """What the flow's store held at launch (TaskFlow's injector atom)."""
    for ad in detail:
        if ad.name == taskflow_compat.INJECTOR_NAME:
            return dict(ad.results or {})
    return {}


def lock_names(manager, detail) -> list[str]:
    """The lock names :class:`~blockmgr.volume.manager.VolumeManager` held for the request
    whose flow ``detail`` is: asked of the flow's module (``lock_names`` there,
    :func:`blockmgr.flows.common.lock_names_of`) with the resource and the store from the
    logbook, reading the rows the rule needs (a row gone since adds no name)."""
    meta = detail.meta or {}
    rid = meta.get("resource_id")
    if not rid:
        return []
    module_name = ((meta.get("factory") or {}).get("name") or "").rpartition(".")[0]
    module = None
    if module_name.startswith("blockmgr.flows."):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(module_name)
    rows = flow_common.LockRows(manager.db if manager is not None else None)
    return flow_common.lock_names_of(module, rid, _store_of(detail), rows)


def settle_failed(db, quota, kind: str, resource_id: str, request_id: str,
                  reason: str) -> str | None:
    """Settle a request that cannot finish: its resource, if still transitional, goes to
    the error status of its operation with ``reason``, and every reservation the request
    held -- its flow's (owner ``request_id``) and the API's for it -- is released. Returns
    the status set (None if the resource had moved on or is gone)."""
    target = None
    with db.writer() as session:
        try:
            current = repository.get(session, _MODELS[kind], resource_id).status
        except exception.NotFound:
            current = None
        if current in ORPHAN_STATUS[kind]:
            target = _settle(session, quota, kind, resource_id, current,
                             "request failed: %s" % reason)
            if kind == "volume" and current == V.REVERTING:
                # The snapshot the failed revert held is given back with it.
                for snap in repository.snapshots_of_volume(session, resource_id):
                    if snap.status == S.RESTORING:
                        _settle(session, quota, "snapshot", snap.id, S.RESTORING,
                                "revert of volume %s failed: %s" % (resource_id, reason))
        quota.rollback_owned(request_id, session=session)
    LOG.error("%s %s: request %s settled as failed (%s); status now %s", kind, resource_id,
              request_id, reason, target or "unchanged")
    return target


def _move_orphan(manager, kind: str, resource_id: str, status: str):
    with manager.db.writer() as session:
        return _settle(session, manager.quota, kind, resource_id, status,
                       "left %s without a flow or a request" % status)


def _settle(session, quota, kind: str, resource_id: str, status: str, reason: str):
    target = ORPHAN_STATUS[kind][status]
    model = _MODELS[kind]
    # Volumes and snapshots say why; groups and group snapshots have no reason column.
    values = {"status_reason": reason[:255]} if hasattr(model, "status_reason") else {}
    repository.transition(session, model, resource_id, target, expected=(status,), **values)
    if (kind, status) in bm_quota.REQUEST_OWNERS:
        # What the API reserved for the request (an extend's gigabytes).
        quota.rollback_owned(bm_quota.request_owner(kind, resource_id, status),
                             session=session)
    return target


def _group_parents(session, items) -> dict[str, str]:
    """Member volumes and snapshots among ``items`` -> their group or group snapshot.

    A group operation's request names the group (or group snapshot) only, and its flow
    moves the members with it; a request still open on the parent will run them, so a
    transitional member of such a parent is not an orphan -- even when the crash came
    before the flow's first write and no flow is in the logbook to say so."""
    parents: dict[str, str] = {}
    for kind, model, column in (("volume", models.Volume, models.Volume.group_id),
                                ("snapshot", models.Snapshot,
                                 models.Snapshot.group_snapshot_id)):
        ids = [item[1] for item in items if item[0] == kind]
        if ids:
            parents.update(session.execute(sa.select(model.id, column).where(
                model.id.in_(ids), column.is_not(None))).tuples().all())
    return parents


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
