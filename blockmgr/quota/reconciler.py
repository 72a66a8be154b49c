"""The quota reconciler: release what no flow will resolve, recompute usage, say what changed.

One run (:meth:`QuotaReconciler.run`):

1. release the *orphaned* reservations -- owner flow finished or gone, or ownerless and
   expired -- with :meth:`blockmgr.quota.QuotaEngine.release_orphans`;
2. recompute every project's usage from the real tables with
   :meth:`~blockmgr.quota.QuotaEngine.sync` (``--project-id``: one project);
3. report, per project and resource, ``in_use`` and ``reserved`` before and after and how
   many reservations were released: in the log, to the caller (the CLI prints it), and as
   metrics (:meth:`blockmgr.metrics.Metrics.record_reconcile`).

The safety rule is the quota engine's: a reservation whose owner is *live* -- a flow that is
running, or unfinished in its logbook and so resumable -- is never released, however old.
Liveness comes from the flow logbooks (:class:`blockmgr.scheduler.reservations.
UnfinishedFlows`), so the reconciler must read the same logbooks the volume workers write
(``[flows] persistence_connection``). Without them (``memory``) every owner counts as live
and only expired ownerless reservations are released.

Orphans are released for every project even when the usage recomputation is limited to one:
an orphan is wrong wherever it is, and releasing it is what makes the recomputed
``reserved`` right.

It runs in the scheduler every ``[quota] reconcile_interval`` seconds and on demand with
``blockmgr-manage quota reconcile``. Several schedulers may run it at once: each step locks
the usage rows it changes, and releasing or fixing twice is a no-op the second time.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time

import sqlalchemy as sa

from blockmgr.db import models
from blockmgr.quota.engine import QuotaEngine
from blockmgr.quota.records import Drift
from blockmgr.quota.records import Orphan

#: The reconciler's reports keep their logger name (log configurations filter on it).
LOG = logging.getLogger("blockmgr.quota_reconciler")


@dataclasses.dataclass(frozen=True)
class UsageChange:
    """One (project, resource) the run touched: usage before and after, reservations
    released. In a dry run ``*_after`` are estimates: ``reserved`` is exact, but ``in_use``
    is judged (by :meth:`~blockmgr.quota.QuotaEngine.check`) with the orphans still live,
    so the real run may correct more once they are gone."""

    project_id: str
    resource: str
    in_use_before: int
    in_use_after: int
    reserved_before: int
    reserved_after: int
    released: int

    def __str__(self) -> str:
        parts = []
        if self.in_use_before != self.in_use_after:
            parts.append("in_use %d -> %d" % (self.in_use_before, self.in_use_after))
        if self.reserved_before != self.reserved_after:
            parts.append("reserved %d -> %d" % (self.reserved_before, self.reserved_after))
        if self.released:
            parts.append("%d orphaned reservation(s) released" % self.released)
        return "project %s %s: %s" % (self.project_id, self.resource,
                                      ", ".join(parts) or "unchanged")


@dataclasses.dataclass
class ReconcileReport:
    """What one run released and fixed (or, ``dry_run``, would release and fix)."""

    dry_run: bool = False
    released: list[Orphan] = dataclasses.field(default_factory=list)
    drifts: list[Drift] = dataclasses.field(default_factory=list)
    changes: list[UsageChange] = dataclasses.field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.released and not self.drifts and self.error is None

    def released_by_resource(self) -> dict[str, int]:
        return dict(collections.Counter(o.resource for o in self.released))

    def summary(self) -> str:
        if self.error is not None:
            return "Quota reconcile failed: %s" % self.error
        verb = ("would release", "would fix") if self.dry_run else ("released", "fixed")
        projects = {c.project_id for c in self.changes}
        return ("Quota reconcile %s %d orphaned reservation(s) and %s %d usage value(s) in "
                "%d project(s) (%.2f s)" % (verb[0], len(self.released), verb[1],
                                            len(self.drifts), len(projects), self.seconds))


class QuotaReconciler:
    """See the module docstring.

    :param persistence: the flow persistence backend (``unfinished_flow_uuids()``), or None
        when the logbooks are not visible from here (every owner then counts as live).
    :param metrics: a :class:`blockmgr.metrics.Metrics` to record runs on (None: none).
    """

    def __init__(self, quota: QuotaEngine, db, persistence=None, metrics=None):
        self.quota = quota
        self.db = db
        self.persistence = persistence
        self.metrics = metrics

    def liveness(self):
        """A fresh ``is_owner_live`` for one run (one logbook snapshot, taken lazily)."""
        from blockmgr.scheduler import reservations

        return reservations.liveness(self.persistence)

    def run(self, project_id: str | None = None, *, dry_run: bool = False) -> ReconcileReport:
        """One reconcile; see the module docstring. Raises what the database raises
        (after recording the failure on the metrics)."""
        started = time.monotonic()
        report = ReconcileReport(dry_run=dry_run)
        try:
            before = usages(self.db)
            if dry_run:
                report.released = self.quota.orphans(self.liveness())
                report.drifts = self.quota.check(project_id)
                after = _expected(before, report.released, report.drifts)
            else:
                uuids = self.quota.release_orphans(self.liveness())
                report.released = released_rows(self.db, uuids)
                report.drifts = self.quota.sync(project_id)
                after = usages(self.db)
            report.changes = _changes(before, after, report.released, report.drifts)
        except Exception as exc:
            report.error = "%s: %s" % (type(exc).__name__, exc)
            report.seconds = time.monotonic() - started
            self._record(report)
            raise
        report.seconds = time.monotonic() - started
        self._log(report)
        self._record(report)
        return report

    def _record(self, report: ReconcileReport) -> None:
        if self.metrics is not None and not report.dry_run:
            self.metrics.record_reconcile(report)

    def _log(self, report: ReconcileReport) -> None:
        if report.clean:
            LOG.debug("%s", report.summary())
            return
        for change in report.changes:
            LOG.info("Quota reconcile: %s", change)
        LOG.warning("%s", report.summary())


# --- queries --------------------------------------------------------------------------------

def usages(db, project_id: str | None = None) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(project, resource): (in_use, reserved)}`` of the usage rows (one project or all)."""
    stmt = sa.select(models.QuotaUsage.project_id, models.QuotaUsage.resource,
                     models.QuotaUsage.in_use, models.QuotaUsage.reserved)
    if project_id is not None:
        stmt = stmt.where(models.QuotaUsage.project_id == project_id)
    with db.reader() as session:
        return {(p, r): (int(i), int(res)) for p, r, i, res in session.execute(stmt)}


def released_rows(db, uuids: list[str]) -> list[Orphan]:
    """The reservations ``uuids`` (just released) as :class:`~blockmgr.quota.Orphan`."""
    found: list[Orphan] = []
    with db.reader() as session:
        for start in range(0, len(uuids), 500):
            found += [Orphan(*row) for row in session.execute(
                sa.select(models.Reservation.uuid, models.Reservation.project_id,
                          models.Reservation.resource, models.Reservation.delta,
                          models.Reservation.owner)
                .where(models.Reservation.uuid.in_(uuids[start:start + 500])))]
    return found


def reservation_totals(db) -> dict[str, tuple[int, int]]:
    """``{resource: (live reservations, sum of their positive deltas)}``: one aggregate
    query, for the metrics."""
    positive = sa.case((models.Reservation.delta > 0, models.Reservation.delta), else_=0)
    stmt = (sa.select(models.Reservation.resource, sa.func.count(models.Reservation.id),
                      sa.func.coalesce(sa.func.sum(positive), 0))
            .where(models.Reservation.deleted.is_(False))
            .group_by(models.Reservation.resource))
    with db.reader() as session:
        return {r: (int(c), int(s)) for r, c, s in session.execute(stmt)}


def _expected(before: dict, released: list[Orphan], drifts: list[Drift]) -> dict:
    """The usages a real run would leave: orphans' positive deltas leave ``reserved``,
    then the drifts (found with the orphans still live) are applied."""
    after = dict(before)
    for orphan in released:
        key = (orphan.project_id, orphan.resource)
        in_use, reserved = after.get(key, (0, 0))
        after[key] = (in_use, max(0, reserved - max(orphan.delta, 0)))
    for drift in drifts:
        key = (drift.project_id, drift.resource)
        in_use, reserved = after.get(key, (0, 0))
        if drift.field == "in_use":
            in_use = drift.expected
        else:
            reserved = max(0, drift.expected - sum(
                max(o.delta, 0) for o in released if (o.project_id, o.resource) == key))
        after[key] = (in_use, reserved)
    return after


def _changes(before: dict, after: dict, released: list[Orphan],
             drifts: list[Drift]) -> list[UsageChange]:
    """One entry per (project, resource) the run released or fixed something in. Before and
    after are read just before and after the run, so an operation finishing meanwhile can
    move them too."""
    counts = collections.Counter((o.project_id, o.resource) for o in released)
    touched = set(counts) | {(d.project_id, d.resource) for d in drifts}
    changes = []
    for key in sorted(touched):
        old = before.get(key, (0, 0))
        new = after.get(key, old)
        changes.append(UsageChange(key[0], key[1], old[0], new[0], old[1], new[1],
                                   counts.get(key, 0)))
    return changes
