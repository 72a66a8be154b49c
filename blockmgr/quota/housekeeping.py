"""Quota housekeeping: expired and orphaned reservations, and usage against the real tables.

An orphan is a live reservation nobody will resolve (its owner is finished or gone, or it has
no owner and expired); a drift is a usage value that disagrees with the resource tables and
the live reservations. :mod:`blockmgr.quota.reconciler` runs both periodically. Part of
:class:`blockmgr.quota.QuotaEngine`.
"""

from __future__ import annotations

import logging
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import quota_sql
from blockmgr.quota import checks
from blockmgr.quota import per_type
from blockmgr.quota.owners import REQUEST_MODELS
from blockmgr.quota.owners import LivenessCache
from blockmgr.quota.owners import parse_request_owner
from blockmgr.quota.records import Drift
from blockmgr.quota.records import Orphan

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")


class HousekeepingMixin:
    """Orphans, expiry and reconciliation of :class:`~blockmgr.quota.QuotaEngine`."""

    def expire(self, is_owner_live: Callable[[str], bool] | None = None) -> int:
        """Roll back every live reservation past its ``expire``; return how many.

        A never-committed negative delta is simply dropped (usage stays high until
        :meth:`sync`). With ``is_owner_live``, reservations of a live owner are kept even when
        expired, so a long-running or resumable flow never loses its reservation.
        """
        with self._db.reader() as session:
            rows = session.execute(
                sa.select(models.Reservation.uuid, models.Reservation.owner,
                          models.Reservation.project_id, models.Reservation.delta)
                .where(models.Reservation.deleted.is_(False),
                       models.Reservation.expire < models.utcnow())).all()
        if is_owner_live is not None:
            live = LivenessCache(is_owner_live)
            rows = [r for r in rows if r.owner is None or not live(r.owner)]
        for row in rows:
            if row.delta < 0:
                LOG.warning("Dropping expired negative reservation %s (%s); usage of project "
                            "%s stays high until 'blockmgr-manage quota sync'",
                            row.uuid, row.delta, row.project_id)
        return len(self._rollback_by_project(rows))

    def release_orphans(self, is_owner_live: Callable[[str], bool]) -> list[str]:
        """Roll back the reservations whose owner is finished or gone; return their uuids.

        ``is_owner_live(owner)`` must return True for every owner that may still commit or
        roll back (running, waiting or resumable flows); its reservations are never touched.
        An owner whose check raises is treated as live. Reservations without an owner are
        released only once expired.
        """
        dead_owners, ownerless = self._orphans(is_owner_live)
        released: list[str] = []
        for owner in dead_owners:
            released += self._run(lambda s, o=owner: self._resolve(
                s, quota_sql.live_uuids_of(s, o), apply=False))
        released += self._rollback_by_project(ownerless)
        if released:
            LOG.info("Released %d orphaned reservation(s)", len(released))
        return released

    def orphans(self, is_owner_live: Callable[[str], bool]) -> list[Orphan]:
        """The reservations :meth:`release_orphans` would release now; changes nothing.

        For reports and metrics. Same rules: owner not live (a raising check counts as
        live), or no owner and expired.
        """
        dead_owners, ownerless = self._orphans(is_owner_live)
        found = [Orphan(r.uuid, r.project_id, r.resource, r.delta, None) for r in ownerless]
        if dead_owners:
            with self._db.reader() as session:
                rows = session.execute(
                    sa.select(models.Reservation.uuid, models.Reservation.project_id,
                              models.Reservation.resource, models.Reservation.delta,
                              models.Reservation.owner)
                    .where(models.Reservation.deleted.is_(False),
                           models.Reservation.owner.in_(dead_owners))).all()
            found += [Orphan(*row) for row in rows]
        return found

    def _orphans(self, is_owner_live: Callable[[str], bool]) -> tuple[list[str], list]:
        """(owners that are not live, rows of expired ownerless reservations).

        Owners are listed *before* liveness is asked, so a liveness snapshot taken at the
        first question covers every listed owner.
        """
        with self._db.reader() as session:
            owners = session.scalars(
                sa.select(models.Reservation.owner).distinct()
                .where(models.Reservation.deleted.is_(False),
                       models.Reservation.owner.is_not(None))).all()
        live = LivenessCache(is_owner_live)
        requests = {owner: parse_request_owner(owner) for owner in owners}
        dead_owners = [owner for owner in sorted(owners)
                       if not (self._request_pending(*requests[owner]) if requests[owner]
                               else live(owner))]
        with self._db.reader() as session:
            ownerless = session.execute(
                sa.select(models.Reservation.uuid, models.Reservation.project_id,
                          models.Reservation.resource, models.Reservation.delta)
                .where(models.Reservation.deleted.is_(False),
                       models.Reservation.owner.is_(None),
                       models.Reservation.expire < models.utcnow())).all()
        return dead_owners, ownerless

    def _request_pending(self, kind: str, resource_id: str, status: str) -> bool:
        """Whether the request owning a reservation (:func:`request_owner`) may still be
        served: its resource is still in the status the request put it in."""
        model = REQUEST_MODELS[kind]
        with self._db.reader() as session:
            current = session.scalar(sa.select(model.status).where(
                model.id == resource_id, model.deleted.is_(False)))
        return current == status

    def check(self, project_id: str | None = None) -> list[Drift]:
        """Compare usages with the real tables and live reservations; change nothing."""
        return self._reconcile_all(project_id, fix=False)

    def sync(self, project_id: str | None = None) -> list[Drift]:
        """Like :meth:`check`, and write the expected values; return what was fixed."""
        drifts = self._reconcile_all(project_id, fix=True)
        for drift in drifts:
            LOG.warning("Quota usage fixed: %s", drift)
        return drifts

    def _reconcile_all(self, project_id: str | None, *, fix: bool) -> list[Drift]:
        if project_id is not None:
            checks.check_project(project_id)
            projects = [project_id]
        else:
            with self._db.reader() as session:
                projects = quota_sql.all_projects(session)
        drifts: list[Drift] = []
        for project in projects:
            with self._db.reader() as session:
                resources = self._reconciled_resources(session, project)
            if fix:
                self._ensure_usage_rows(project, resources)
            drifts += self._run(lambda s, p=project, r=resources: self._reconcile(
                s, p, r, fix=fix))
        return drifts

    def _reconciled_resources(self, session: Session, project_id: str) -> tuple[str, ...]:
        """What to reconcile in a project: :attr:`RESOURCES`, and the per-type resources
        that have a usage row (whether or not their type still exists: a leftover is
        counted down to its truth) or whose truth may be non-zero (a live volume or snapshot
        of that type). A per-type resource with neither is 0 everywhere and gets no row."""
        rows = [r for r in quota_sql.usage_resources(session, project_id)
                if per_type.is_per_type(r)]
        in_use = per_type.resources_of_types(quota_sql.typed_names_in_use(session, project_id))
        return self.RESOURCES + tuple(sorted(set(rows) | set(in_use)))

    def _reconcile(self, session: Session, project_id: str, resources: tuple[str, ...], *,
                   fix: bool) -> list[Drift]:
        # Lock first: nothing that changes these usages can commit until we are done, and on
        # MariaDB the snapshot the counts below read is taken after the lock was granted.
        if fix:
            usages = self._lock_usages(session, project_id, resources)
        else:
            usages = quota_sql.select_usages(session, project_id, resources, for_update=True)
        drifts = []
        for resource in resources:
            usage = usages.get(resource)
            in_use = usage.in_use if usage is not None else 0
            reserved = usage.reserved if usage is not None else 0
            expected_in_use, reason = self._expected_in_use(session, project_id, resource,
                                                            in_use)
            if expected_in_use != in_use:
                drifts.append(Drift(project_id, resource, "in_use", in_use, expected_in_use,
                                    reason))
            deltas = quota_sql.live_deltas(session, project_id, resource)
            expected_reserved = sum(d for d in deltas if d > 0)
            if expected_reserved != reserved:
                drifts.append(Drift(project_id, resource, "reserved", reserved,
                                    expected_reserved,
                                    "%d live reservation(s) hold %d" % (
                                        sum(1 for d in deltas if d > 0), expected_reserved)))
            if fix and usage is not None:
                usage.in_use = expected_in_use
                usage.reserved = expected_reserved
        session.flush()
        return drifts

    def _expected_in_use(self, session: Session, project_id: str, resource: str,
                         in_use: int) -> tuple[int, str]:
        """What ``in_use`` should be, given the real tables and the live reservations.

        A live reservation's change may or may not be in the tables yet (a manage flow
        writes the new size before it commits), so ``in_use`` is consistent whenever
        ``in_use + negatives <= truth <= in_use + positives``; outside that range the
        smallest correction is returned, so committing the live reservations later lands
        exactly on the truth.
        """
        truth = self._truth(session, project_id, resource)
        deltas = quota_sql.live_deltas(session, project_id, resource)
        positive = sum(d for d in deltas if d > 0)
        negative = sum(d for d in deltas if d < 0)
        what = "%d %s in the database" % (truth, checks.unit_of(resource) or resource)
        if deltas:
            what += ", %d live reservation(s) of %+d/%+d" % (len(deltas), positive, negative)
        if truth > in_use + positive:
            return truth - positive, what
        if truth < in_use + negative:
            return truth - negative, what
        return in_use, what

    def _truth(self, session: Session, project_id: str, resource: str) -> int:
        """What ``resource`` of ``project_id`` counts in the real tables."""
        parsed = per_type.parse(resource)
        if parsed is not None:
            return self._typed_truth(session, project_id, *parsed)
        volumes = (models.Volume.project_id == project_id, models.Volume.deleted.is_(False),
                   models.Volume.use_quota.is_(True))
        snapshots = (models.Snapshot.project_id == project_id,
                     models.Snapshot.deleted.is_(False), models.Snapshot.use_quota.is_(True))
        if resource == "volumes":
            stmt = sa.select(sa.func.count(models.Volume.id)).where(*volumes)
        elif resource == "snapshots":
            stmt = sa.select(sa.func.count(models.Snapshot.id)).where(*snapshots)
        elif resource == "groups":
            stmt = sa.select(sa.func.count(models.Group.id)).where(
                models.Group.project_id == project_id, models.Group.deleted.is_(False))
        elif resource == "gigabytes":
            total = int(session.scalar(sa.select(
                sa.func.coalesce(sa.func.sum(models.Volume.size), 0)).where(*volumes)))
            if not self._conf.quota.no_snapshot_gb_quota:
                total += int(session.scalar(sa.select(
                    sa.func.coalesce(sa.func.sum(models.Snapshot.volume_size), 0))
                    .where(*snapshots)))
            return total
        else:
            raise exception.UnknownQuotaResource(resources=resource,
                                                 known=", ".join(self.RESOURCES))
        return int(session.scalar(stmt))

    def _typed_truth(self, session: Session, project_id: str, base: str, type_name: str) -> int:
        """The truth of ``<base>_<type_name>``: as the project-wide ``base``, over the
        volumes and snapshots whose type has that name."""
        if base == "volumes":
            return quota_sql.typed_count(session, models.Volume, project_id, type_name)
        if base == "snapshots":
            return quota_sql.typed_count(session, models.Snapshot, project_id, type_name)
        return quota_sql.typed_gigabytes(session, project_id, type_name,
                                         snapshots=not self._conf.quota.no_snapshot_gb_quota)
