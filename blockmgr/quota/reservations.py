"""Quota reservations: reserve, commit, roll back, and consume within a caller's transaction.

Every change of a usage first locks the usage rows it touches in one fixed order (project,
then resource), so the limit check and the update it guards are one atomic step (see
:mod:`blockmgr.quota`). Part of :class:`blockmgr.quota.QuotaEngine`.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import uuid as uuidlib
from typing import Iterable

import sqlalchemy as sa
from oslo_db import exception as db_exc
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import quota_sql
from blockmgr.quota import checks
from blockmgr.quota import per_type

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")


class ReservationsMixin:
    """The reservation part of :class:`~blockmgr.quota.QuotaEngine`: reserve, commit and
    roll back, direct consumption, and the locking of usage rows they all rely on."""

    def consume(self, session: Session, project_id: str, *,
                volume_type_id: str | None = None, by_type: dict | None = None,
                **deltas: int) -> None:
        """Charge ``deltas`` straight to ``in_use`` inside the caller's transaction.

        ``volume_type_id`` / ``by_type``: the type of the volumes counted, so that their
        per-type resources are charged too (:meth:`expand`).

        For the API side: insert the resource row and call this in the SAME transaction, so
        the row and its usage commit (or vanish) together and nothing can leak. The usage
        rows stay locked until the caller commits, so keep that transaction short, and run
        it through :meth:`run_in_transaction` to have deadlocks retried. No usage refresh
        happens here (the caller's own uncommitted rows would be counted twice).

        :raises OverQuota: a positive delta does not fit (the caller's transaction must then
            roll back, which leaving its ``with`` block by the exception does).
        """
        checks.check_project(project_id)
        deltas = checks.nonzero(self.expand(self._check_deltas(deltas), volume_type_id,
                                            by_type, session=session))
        if not deltas:
            return
        usages = self._lock_usages(session, project_id, deltas)
        limits = self._limits(session, project_id, deltas)
        error = checks.check_fits(project_id, deltas, usages, limits)
        if error is not None:
            raise error
        for resource, delta in sorted(deltas.items()):
            checks.add_in_use(usages[resource], delta)
        session.flush()

    def reserve(self, project_id: str, *, owner: str | None = None,
                expire: int | float | dt.timedelta | dt.datetime | None = None,
                session: Session | None = None, volume_type_id: str | None = None,
                by_type: dict | None = None, **deltas: int) -> list[str]:
        """Reserve ``deltas`` (e.g. ``volumes=1, gigabytes=10``); return reservation uuids.

        ``volume_type_id``: the type of the volume (or snapshot) the deltas count, so that
        its per-type resources (``volumes_<type>``, ...) are reserved too; ``by_type``:
        deltas of several types at once. See :meth:`expand`.

        One reservation per non-zero delta. Positive deltas are added to ``reserved`` and
        refused with :class:`OverQuota` when ``in_use + reserved + delta`` would pass the
        limit; negative deltas are always accepted and only change ``in_use`` at commit.
        ``owner`` names the flow that will commit or roll them back. ``expire`` is seconds,
        a timedelta or a (naive UTC) datetime; default ``[quota] reservation_expire``.

        With ``session`` the work joins the caller's transaction (and no usage refresh is
        done); otherwise the engine runs its own short transaction, refreshing usages that
        ``[quota] until_refresh``/``max_age`` mark as due, and retrying deadlocks.

        :raises OverQuota: nothing was reserved (usage refreshes are kept).
        :raises UnknownQuotaResource, InvalidQuotaValue, InvalidInput: bad arguments.
        """
        return self._reserve(project_id, owner=owner, expire=expire, session=session,
                             deltas=deltas, reuse_owned=False,
                             volume_type_id=volume_type_id, by_type=by_type)

    def reserve_once(self, project_id: str, *, owner: str,
                     expire: int | float | dt.timedelta | dt.datetime | None = None,
                     volume_type_id: str | None = None, by_type: dict | None = None,
                     **deltas: int) -> list[str]:
        """:meth:`reserve` for ``owner``, unless ``owner`` already holds live reservations:
        then those are returned and nothing new is reserved.

        What a flow's reserve task does, so that running it again after a crash does not
        reserve twice -- in one transaction instead of a read and then a reservation.
        """
        owner = checks.check_owner(owner, required=True)
        return self._reserve(project_id, owner=owner, expire=expire, session=None,
                             deltas=deltas, reuse_owned=True,
                             volume_type_id=volume_type_id, by_type=by_type)

    def _reserve(self, project_id: str, *, owner: str | None, expire, session: Session | None,
                 deltas: dict, reuse_owned: bool, volume_type_id: str | None = None,
                 by_type: dict | None = None) -> list[str]:
        checks.check_project(project_id)
        deltas = self._check_deltas(deltas)
        owner = checks.check_owner(owner)
        expire_at = self._expire_at(expire)
        deltas = checks.nonzero(self.expand(deltas, volume_type_id, by_type, session=session))
        if not deltas:
            return []

        def work(s: Session):
            if reuse_owned:
                live = quota_sql.live_uuids_of(s, owner)
                if live:
                    return live
            usages = self._lock_usages(s, project_id, deltas)
            if session is None:
                self._refresh_due(s, project_id, usages)
            error = checks.check_fits(project_id, deltas, usages,
                                      self._limits(s, project_id, deltas))
            if error is not None:
                if session is not None:
                    raise error
                return error  # raised after the transaction kept the refreshes
            # Core statements on the locked rows: the ORM unit of work cost more than the
            # two writes themselves. The loaded usage objects are not updated; every read
            # of usages refreshes them (populate_existing).
            s.flush()   # whatever the ORM still holds (new usage rows, refreshes) first
            now = models.utcnow()
            rows = [{"uuid": str(uuidlib.uuid4()), "usage_id": usages[resource].id,
                     "project_id": project_id, "resource": resource, "delta": delta,
                     "expire": expire_at, "owner": owner, "created_at": now,
                     "deleted": False}
                    for resource, delta in sorted(deltas.items())]
            s.execute(quota_sql.INSERT_RESERVATION, rows)
            added = [{"b_id": usages[r].id, "b_delta": d, "b_now": now}
                     for r, d in sorted(deltas.items()) if d > 0]
            if added:
                s.execute(quota_sql.ADD_RESERVED, added)
            return [row["uuid"] for row in rows]

        if session is not None:
            return work(session)
        self._ensure_usage_rows(project_id, deltas)
        result = self._run(work)
        if isinstance(result, exception.BlockmgrError):
            raise result
        return result

    def commit(self, reservations: Iterable[str] | None, *,
               session: Session | None = None) -> None:
        """Apply reservations: their deltas move from ``reserved`` into ``in_use``.

        Idempotent: unknown and already committed/rolled back uuids are ignored.
        """
        self._resolve_uuids(reservations, apply=True, session=session)

    def rollback(self, reservations: Iterable[str] | None, *,
                 session: Session | None = None) -> None:
        """Drop reservations: positive deltas leave ``reserved``; ``in_use`` is untouched.

        Idempotent: unknown and already committed/rolled back uuids are ignored.
        """
        self._resolve_uuids(reservations, apply=False, session=session)

    def reservations_of(self, owner: str) -> list[str]:
        """Uuids of the live (unresolved) reservations ``owner`` holds, oldest first."""
        owner = checks.check_owner(owner, required=True)
        with self._db.reader() as session:
            return quota_sql.live_uuids_of(session, owner)

    def commit_owned(self, owner: str, *, session: Session | None = None) -> int:
        """Commit every live reservation of ``owner``; return how many were committed."""
        return self._resolve_owned(owner, apply=True, session=session)

    def rollback_owned(self, owner: str, *, session: Session | None = None) -> int:
        """Roll back every live reservation of ``owner``; return how many were rolled back."""
        return self._resolve_owned(owner, apply=False, session=session)

    def expand(self, deltas: dict[str, int], volume_type_id: str | None = None,
               by_type: dict | None = None, *,
               session: Session | None = None) -> dict[str, int]:
        """The deltas to reserve: ``deltas`` plus the per-type resources of the volume type.

        ``deltas`` count volumes or snapshots of the type ``volume_type_id`` (None: no type,
        or deltas of no volume such as ``groups``). ``by_type`` (``{type id or None:
        {resource: delta}}``, built with :func:`blockmgr.quota.add_for_type`) adds deltas of
        several types: each is counted in the project-wide resource and in its type's. The
        type names are read in one query (``session``'s transaction, else a short read of
        its own) and expanded by :func:`blockmgr.quota.per_type.expand`: the one place that
        decides which per-type resources a delta touches. A type id no row has adds
        nothing (such a volume is counted project-wide only, as the reconciler counts it).

        :raises UnknownQuotaResource, InvalidQuotaValue: a bad resource or value.
        """
        deltas = self._check_deltas(deltas)
        groups = self._check_by_type(by_type)
        total = dict(deltas)
        if volume_type_id is not None:
            groups.append((self._check_type_id(volume_type_id), deltas))
            total = {}
        if not groups:
            return total
        ids = [type_id for type_id, _d in groups]
        if session is not None:
            names = quota_sql.type_names(session, ids)
        else:
            with self._db.reader() as reader:
                names = quota_sql.type_names(reader, ids)
        for type_id, group in groups:
            per_type.add(total, per_type.expand(group, names.get(type_id)))
        return total

    def _check_by_type(self, by_type) -> list[tuple[str | None, dict[str, int]]]:
        if by_type is None:
            return []
        if not isinstance(by_type, dict):
            raise exception.InvalidInput(reason="by_type must map volume type ids to deltas "
                                                "({type id: {resource: delta}}), not %r"
                                                % (by_type,))
        groups = []
        for type_id, deltas in by_type.items():
            if type_id is not None:
                self._check_type_id(type_id)
            if not isinstance(deltas, dict):
                raise exception.InvalidInput(reason="the deltas of volume type %s must be "
                                                    "{resource: delta}, not %r"
                                                    % (type_id, deltas))
            groups.append((type_id, self._check_deltas(deltas)))
        return groups

    @staticmethod
    def _check_type_id(type_id) -> str:
        if not isinstance(type_id, str) or not type_id or len(type_id) > 36:
            raise exception.InvalidInput(reason="a volume type id must be a non-empty string "
                                                "of at most 36 characters, not %r"
                                                % (type_id,))
        return type_id

    def _check_deltas(self, deltas: dict) -> dict[str, int]:
        """Deltas of the project-wide resources only: per-type ones come from
        :meth:`expand`, never from the caller."""
        checks.check_known_all(deltas, self.RESOURCES, limit_only=self.LIMIT_ONLY,
                               per_type_hint=True)
        for resource, value in deltas.items():
            checks.check_int(resource, value)
        return dict(deltas)

    def _expire_at(self, expire) -> dt.datetime:
        now = models.utcnow()
        if expire is None:
            return now + dt.timedelta(seconds=self._conf.quota.reservation_expire)
        if isinstance(expire, dt.datetime):
            if expire.tzinfo is not None:
                expire = expire.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return expire
        if isinstance(expire, dt.timedelta):
            expire = expire.total_seconds()
        if isinstance(expire, bool) or not isinstance(expire, (int, float)) or expire <= 0:
            raise exception.InvalidInput(
                reason="reservation expire must be a positive number of seconds, a "
                       "timedelta or a datetime, not %r" % (expire,))
        return now + dt.timedelta(seconds=expire)

    def _lock_usages(self, session: Session, project_id: str,
                     resources: Iterable[str]) -> dict[str, models.QuotaUsage]:
        """Lock (creating if needed) the usage rows of ``resources``, in resource order."""
        resources = sorted(set(resources))
        self._ensure_usage_rows(project_id, resources)
        usages = quota_sql.select_usages(session, project_id, resources, for_update=True)
        missing = [r for r in resources if r not in usages]
        if missing:
            # SQLite (the write lock is held, nobody can race us) or a row that vanished.
            for resource in missing:
                try:
                    with session.begin_nested():
                        session.add(quota_sql.new_usage(project_id, resource))
                        session.flush()
                except db_exc.DBDuplicateEntry:
                    pass
            usages = quota_sql.select_usages(session, project_id, resources, for_update=True)
        for resource in resources:
            self._known_usages.add((project_id, resource))
        return usages

    def _ensure_usage_rows(self, project_id: str, resources: Iterable[str]) -> None:
        """Create missing usage rows, each in its own short transaction (server databases).

        Done before the locking read because a locking read of a missing key leaves a gap
        lock (MariaDB) on which racing creators deadlock, and because it must not pin the
        caller's snapshot. SQLite needs none of this: its write lock excludes every race, so
        :meth:`_lock_usages` simply inserts what is missing.
        """
        if self._sqlite:
            return
        for resource in sorted(set(resources)):
            if (project_id, resource) not in self._known_usages:
                self._create_usage_row(project_id, resource)
                self._known_usages.add((project_id, resource))

    def _create_usage_row(self, project_id: str, resource: str) -> None:
        try:
            with self._db.writer() as session:
                exists = session.scalar(
                    sa.select(models.QuotaUsage.id)
                    .where(models.QuotaUsage.project_id == project_id,
                           models.QuotaUsage.resource == resource))
                if exists is None:
                    session.add(quota_sql.new_usage(project_id, resource))
        except db_exc.DBDuplicateEntry:
            pass  # another process created it first: exactly what we wanted

    def _refresh_due(self, session: Session, project_id: str,
                     usages: dict[str, models.QuotaUsage]) -> None:
        """Recompute ``in_use`` of the rows that ``until_refresh``/``max_age`` mark due."""
        opts = self._conf.quota
        now = models.utcnow()
        for resource, usage in usages.items():
            due = usage.in_use < 0
            if opts.until_refresh:
                left = (usage.until_refresh if usage.until_refresh is not None
                        else opts.until_refresh) - 1
                if left <= 0:
                    due, left = True, opts.until_refresh
                usage.until_refresh = left
            elif usage.until_refresh is not None:
                usage.until_refresh = None
            if opts.max_age:
                last = usage.updated_at or usage.created_at
                if last is None or (now - last).total_seconds() >= opts.max_age:
                    due = True
            if due:
                expected, reason = self._expected_in_use(session, project_id, resource,
                                                         usage.in_use)
                if expected != usage.in_use:
                    LOG.info("Refreshed %s usage of project %s: in_use %d -> %d (%s)",
                             resource, project_id, usage.in_use, expected, reason)
                usage.in_use = expected
                usage.updated_at = now

    def _resolve_uuids(self, reservations, *, apply: bool, session: Session | None) -> None:
        uuids = checks.check_uuids(reservations)
        if not uuids:
            return
        if session is not None:
            done = self._resolve(session, uuids, apply=apply, joined=True)
        else:
            done = self._run(lambda s: self._resolve(s, uuids, apply=apply))
        if len(done) != len(uuids):
            LOG.debug("%s: %d of %d reservation(s) were unknown or already resolved",
                      "commit" if apply else "rollback", len(uuids) - len(done), len(uuids))

    def _resolve_owned(self, owner: str, *, apply: bool, session: Session | None) -> int:
        owner = checks.check_owner(owner, required=True)

        def work(s: Session, joined: bool = False) -> int:
            live = quota_sql.live_of(s, owner)
            uuids = [uuid for uuid, _project, _resource in live]
            keys = {(project, resource) for _uuid, project, resource in live}
            if joined and not self._sqlite:
                uuids = sorted(set(uuids) | set(self.reservations_of(owner)))
                keys = None   # the fresh read in _resolve finds the keys of the others
            return len(self._resolve(s, uuids, apply=apply, joined=joined, keys=keys))

        if session is not None:
            return work(session, joined=True)
        return self._run(work)

    def _resolve(self, session: Session, uuids: list[str], *, apply: bool,
                 joined: bool = False, keys: set | None = None) -> list[str]:
        """Commit (``apply``) or roll back the live ones of ``uuids``; return those done.

        ``keys``: the (project, resource) pairs of those reservations, if the caller read
        them already in this transaction.
        """
        if not uuids:
            return []
        if keys is None:
            keys = quota_sql.reservation_keys(session, uuids)
        if joined and not self._sqlite:
            # The caller's snapshot may predate reservations committed since it began.
            with self._db.reader() as fresh:
                keys |= quota_sql.reservation_keys(fresh, uuids)
        if not keys:
            return []
        session.flush()   # what the caller's ORM objects still hold, before Core writes
        usages: dict[tuple[str, str], sa.Row] = {}
        by_project = collections.defaultdict(list)
        for project_id, resource in sorted(keys):
            by_project[project_id].append(resource)
        for project_id in sorted(by_project):
            for usage in session.execute(quota_sql.USAGE_VALUES_FOR_UPDATE, {
                    "b_project": project_id,
                    "b_resources": sorted(set(by_project[project_id]))}):
                usages[(project_id, usage.resource)] = usage
        rows = session.execute(quota_sql.LIVE_BY_UUIDS_FOR_UPDATE, {"b_uuids": list(uuids)}).all()
        now = models.utcnow()
        # New values computed from the locked rows and written with Core statements (the
        # ORM unit of work cost more than the writes). Usage objects a session may hold
        # are left stale: every ORM read of usages refreshes them (populate_existing).
        values = {key: [u.reserved, u.in_use] for key, u in usages.items()}
        changed: set = set()
        done = []
        for row in rows:
            key = (row.project_id, row.resource)
            value = values.get(key)
            if value is not None:
                if row.delta > 0:
                    if value[0] < row.delta:
                        LOG.warning("Usage %s/%s had only %d reserved for reservation %s of "
                                    "%d; clamped at 0", row.project_id, row.resource,
                                    value[0], row.uuid, row.delta)
                    value[0] = max(0, value[0] - row.delta)
                if apply:
                    value[1] = checks.in_use_plus(row.project_id, row.resource, value[1],
                                            row.delta)
                changed.add(key)
            else:
                LOG.warning("Reservation %s has no usage row for %s/%s; resolved without "
                            "changing usage", row.uuid, row.project_id, row.resource)
            done.append(row.uuid)
        if changed:
            session.execute(quota_sql.RESOLVE_USAGE, [
                {"b_id": usages[key].id, "b_reserved": values[key][0],
                 "b_in_use": values[key][1], "b_now": now} for key in sorted(changed)])
        if rows:
            session.execute(quota_sql.RESOLVE_RESERVATIONS,
                            {"b_ids": [row.id for row in rows], "b_now": now})
        return done

    def _rollback_by_project(self, rows) -> list[str]:
        by_project = collections.defaultdict(list)
        for row in rows:
            by_project[row.project_id].append(row.uuid)
        released: list[str] = []
        for project_id in sorted(by_project):
            uuids = by_project[project_id]
            for start in range(0, len(uuids), 500):
                chunk = uuids[start:start + 500]
                released += self._run(lambda s, c=chunk: self._resolve(s, c, apply=False))
        return released
