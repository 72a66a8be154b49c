"""The quota engine: per-project limits, usages and reservations, and their reconciliation.

Vocabulary (Cinder's, see ``cinder-reference.md`` §4 and ``docs/quota.md``):

* a **limit** is a project's override in ``quotas`` or else the ``[quota]`` default; -1 means
  unlimited. ``per_volume_gigabytes`` is *limit-only*: checked with :meth:`limit_check`,
  never counted.
* a **usage** row per (project, resource) holds ``in_use`` (committed) and ``reserved`` (the
  positive deltas of live reservations).
* a **reservation** is one resource's delta of a :meth:`reserve` call. It lives until it is
  committed (the delta moves into ``in_use``), rolled back, expired, or released as an orphan.
  It may name an ``owner`` (a flow id) so an orphan is recognised by its owner being gone,
  not by its age.

Concurrency. Every call that changes a usage first locks the usage rows it touches, in one
fixed order (project, then resource name): ``SELECT ... FOR UPDATE`` on MariaDB/PostgreSQL,
the database write lock that ``BEGIN IMMEDIATE`` takes on SQLite. Reservation rows are only
created, committed or rolled back while their usage row is locked ("usages before
reservations", always), so the limit check and the update it guards are one atomic step and a
limit can never be exceeded. Missing usage rows are created on first use; two processes doing
so at once is resolved by the unique (project_id, resource) key (the loser's
``DBDuplicateEntry`` is ignored). When the engine owns the transaction it retries it on
deadlock; when it joins the caller's (``session=``), the caller owns retries.

Idempotency. :meth:`commit` and :meth:`rollback` of a uuid that is unknown or already resolved
do nothing: a task that ran before a crash runs again on resume, and its second commit must
not count twice.

Usage never goes below zero (a negative delta that would push it there is clamped and
logged) and negative deltas are never refused: a project over its limit may always shrink.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import random
import time
import uuid as uuidlib
from typing import Callable, Iterable, TypeVar

import sqlalchemy as sa
from oslo_config import cfg
from oslo_db import exception as db_exc
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db.session import Database

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest limit, delta or usage the engine stores (``quotas.hard_limit`` is a 32-bit integer).
MAX_QUOTA_VALUE = 2 ** 31 - 1

#: How many times an engine-owned transaction is tried when the database reports a deadlock
#: or a lost race creating a row.
TRANSACTION_ATTEMPTS = 8

_UNITS = {"gigabytes": "GiB", "per_volume_gigabytes": "GiB"}


@dataclasses.dataclass(frozen=True)
class Drift:
    """One usage field that disagrees with the real tables (or the live reservations).

    ``expected`` is the value :meth:`QuotaEngine.sync` writes: for ``reserved`` the sum of the
    live positive reservation deltas; for ``in_use`` the value counted in the resource tables,
    adjusted so that live reservations whose change may or may not have reached the tables yet
    are neither lost nor counted twice.
    """

    project_id: str
    resource: str
    field: str
    recorded: int
    expected: int
    reason: str

    def __str__(self) -> str:
        return "project %s: %s %s is %d, expected %d (%s)" % (
            self.project_id, self.resource, self.field, self.recorded, self.expected,
            self.reason)


@dataclasses.dataclass(frozen=True)
class Orphan:
    """A live reservation nobody will resolve: its owner flow is finished or gone (or it
    has no owner and expired). See :meth:`QuotaEngine.orphans`."""

    uuid: str
    project_id: str
    resource: str
    delta: int
    owner: str | None


class QuotaEngine:
    """Limits, usages and reservations of every project in one database.

    Thread-safe; one instance per process and database is enough. ``conf`` must have the
    ``[quota]`` group registered; options are read on every call, so overrides apply at once.
    """

    #: Resources that are counted and reserved.
    RESOURCES = ("volumes", "snapshots", "gigabytes", "groups")
    #: Resources that only have a limit, checked by :meth:`limit_check`.
    LIMIT_ONLY = ("per_volume_gigabytes",)

    def __init__(self, db: Database, conf: cfg.ConfigOpts):
        self._db = db
        self._conf = conf
        self._sqlite = db.dialect == "sqlite"
        # (project_id, resource) pairs known to have a usage row. Usage rows are never
        # deleted, so this only saves the existence check before the locking read.
        self._known_usages: set[tuple[str, str]] = set()

    # --- limits ---------------------------------------------------------------------------

    def get_limits(self, project_id: str) -> dict[str, int]:
        """Every resource's limit for ``project_id``: its override, else the default."""
        _check_project(project_id)
        with self._db.reader() as session:
            return self._limits(session, project_id)

    def set_limit(self, project_id: str, resource: str, hard_limit: int) -> None:
        """Override one limit for a project (-1 = unlimited).

        A limit below the current usage is accepted: nothing is taken away, new reservations
        of that resource are refused until usage drops below it.
        """
        _check_project(project_id)
        _check_known(resource, self.RESOURCES + self.LIMIT_ONLY)
        _check_int(resource, hard_limit)
        if hard_limit < -1:
            raise exception.InvalidQuotaValue(
                resource=resource,
                reason="a limit must be -1 (unlimited) or at least 0, not %d" % hard_limit)

        def work(session: Session) -> None:
            row = session.scalars(
                sa.select(models.Quota)
                .where(models.Quota.project_id == project_id,
                       models.Quota.resource == resource)
                .with_for_update()).first()
            if row is None:
                session.add(models.Quota(project_id=project_id, resource=resource,
                                         hard_limit=hard_limit))
            else:
                row.hard_limit = hard_limit

        self._run(work)

    def reset_limit(self, project_id: str, resource: str) -> None:
        """Drop a project's override so the ``[quota]`` default applies again."""
        _check_project(project_id)
        _check_known(resource, self.RESOURCES + self.LIMIT_ONLY)
        self._run(lambda session: session.execute(
            sa.delete(models.Quota).where(models.Quota.project_id == project_id,
                                          models.Quota.resource == resource)))

    def limit_check(self, project_id: str, **values: int) -> None:
        """Check values of limit-only resources, e.g. ``per_volume_gigabytes=size``.

        :raises VolumeSizeExceedsLimit: a volume is larger than ``per_volume_gigabytes``.
        :raises UnknownQuotaResource: a name that is not a limit-only resource.
        :raises InvalidQuotaValue: a value that is not an integer >= 0.
        """
        _check_project(project_id)
        _check_known_all(values, self.LIMIT_ONLY)
        for resource, value in values.items():
            _check_int(resource, value)
            if value < 0:
                raise exception.InvalidQuotaValue(
                    resource=resource, reason="%d is negative" % value)
        if not values:
            return
        limits = self.get_limits(project_id)
        overs = sorted(r for r, v in values.items() if 0 <= limits[r] < v)
        for resource in overs:
            if resource == "per_volume_gigabytes":
                raise exception.VolumeSizeExceedsLimit(size=values[resource],
                                                       limit=limits[resource])
        if overs:  # a limit-only resource added later without its own error
            raise _over_quota(project_id, overs, values, limits,
                              {r: 0 for r in values}, {r: 0 for r in values})

    # --- usages ---------------------------------------------------------------------------

    def get_usages(self, project_id: str) -> dict[str, dict[str, int]]:
        """``{resource: {'in_use', 'reserved', 'limit'}}`` for every reservable resource."""
        _check_project(project_id)
        with self._db.reader() as session:
            limits = self._limits(session, project_id)
            rows = _select_usages(session, project_id, self.RESOURCES, for_update=False)
        return {r: {"in_use": rows[r].in_use if r in rows else 0,
                    "reserved": rows[r].reserved if r in rows else 0,
                    "limit": limits[r]}
                for r in self.RESOURCES}

    def consume(self, session: Session, project_id: str, **deltas: int) -> None:
        """Charge ``deltas`` straight to ``in_use`` inside the caller's transaction.

        For the API side: insert the resource row and call this in the SAME transaction, so
        the row and its usage commit (or vanish) together and nothing can leak. The usage
        rows stay locked until the caller commits, so keep that transaction short, and run
        it through :meth:`run_in_transaction` to have deadlocks retried. No usage refresh
        happens here (the caller's own uncommitted rows would be counted twice).

        :raises OverQuota: a positive delta does not fit (the caller's transaction must then
            roll back, which leaving its ``with`` block by the exception does).
        """
        _check_project(project_id)
        deltas = _nonzero(self._check_deltas(deltas))
        if not deltas:
            return
        usages = self._lock_usages(session, project_id, deltas)
        limits = self._limits(session, project_id)
        error = _check_fits(project_id, deltas, usages, limits)
        if error is not None:
            raise error
        for resource, delta in sorted(deltas.items()):
            _add_in_use(usages[resource], delta)
        session.flush()

    def run_in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a new writer transaction, retrying it as a whole on
        deadlock, a lost database connection or a lost row-creation race. ``work`` must be
        safe to run again."""
        return self._run(work)

    # --- reservations ---------------------------------------------------------------------

    def reserve(self, project_id: str, *, owner: str | None = None,
                expire: int | float | dt.timedelta | dt.datetime | None = None,
                session: Session | None = None, **deltas: int) -> list[str]:
        """Reserve ``deltas`` (e.g. ``volumes=1, gigabytes=10``); return reservation uuids.

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
                             deltas=deltas, reuse_owned=False)

    def reserve_once(self, project_id: str, *, owner: str,
                     expire: int | float | dt.timedelta | dt.datetime | None = None,
                     **deltas: int) -> list[str]:
        """:meth:`reserve` for ``owner``, unless ``owner`` already holds live reservations:
        then those are returned and nothing new is reserved.

        What a flow's reserve task does, so that running it again after a crash does not
        reserve twice -- in one transaction instead of a read and then a reservation.
        """
        owner = _check_owner(owner, required=True)
        return self._reserve(project_id, owner=owner, expire=expire, session=None,
                             deltas=deltas, reuse_owned=True)

    def _reserve(self, project_id: str, *, owner: str | None, expire, session: Session | None,
                 deltas: dict, reuse_owned: bool) -> list[str]:
        _check_project(project_id)
        deltas = _nonzero(self._check_deltas(deltas))
        owner = _check_owner(owner)
        expire_at = self._expire_at(expire)
        if not deltas:
            return []

        def work(s: Session):
            if reuse_owned:
                live = _live_uuids_of(s, owner)
                if live:
                    return live
            usages = self._lock_usages(s, project_id, deltas)
            if session is None:
                self._refresh_due(s, project_id, usages)
            error = _check_fits(project_id, deltas, usages, self._limits(s, project_id))
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
            s.execute(_INSERT_RESERVATION, rows)
            added = [{"b_id": usages[r].id, "b_delta": d, "b_now": now}
                     for r, d in sorted(deltas.items()) if d > 0]
            if added:
                s.execute(_ADD_RESERVED, added)
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
        owner = _check_owner(owner, required=True)
        with self._db.reader() as session:
            return _live_uuids_of(session, owner)

    def commit_owned(self, owner: str, *, session: Session | None = None) -> int:
        """Commit every live reservation of ``owner``; return how many were committed."""
        return self._resolve_owned(owner, apply=True, session=session)

    def rollback_owned(self, owner: str, *, session: Session | None = None) -> int:
        """Roll back every live reservation of ``owner``; return how many were rolled back."""
        return self._resolve_owned(owner, apply=False, session=session)

    # --- housekeeping ---------------------------------------------------------------------

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
            live = _LivenessCache(is_owner_live)
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
                s, _live_uuids_of(s, o), apply=False))
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
        live = _LivenessCache(is_owner_live)
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
        model = _REQUEST_MODELS[kind]
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

    # --- internals: transactions and validation --------------------------------------------

    def _run(self, work: Callable[[Session], T]) -> T:
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                with self._db.writer() as session:
                    return work(session)
            except (db_exc.DBDeadlock, db_exc.DBDuplicateEntry,
                    db_exc.DBConnectionError) as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                LOG.debug("Quota transaction attempt %d lost a race (%s); retrying",
                          attempt, type(exc).__name__)
                time.sleep(random.uniform(0, 0.005 * attempt))
        raise AssertionError("unreachable")

    def _check_deltas(self, deltas: dict) -> dict[str, int]:
        _check_known_all(deltas, self.RESOURCES, limit_only=self.LIMIT_ONLY)
        for resource, value in deltas.items():
            _check_int(resource, value)
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

    def _limits(self, session: Session, project_id: str) -> dict[str, int]:
        limits = {r: getattr(self._conf.quota, r) for r in self.RESOURCES + self.LIMIT_ONLY}
        for resource, hard_limit in session.execute(_LIMITS, {"b_project": project_id}):
            if resource in limits:
                limits[resource] = hard_limit
        return limits

    # --- internals: usage rows ---------------------------------------------------------------

    def _lock_usages(self, session: Session, project_id: str,
                     resources: Iterable[str]) -> dict[str, models.QuotaUsage]:
        """Lock (creating if needed) the usage rows of ``resources``, in resource order."""
        resources = sorted(set(resources))
        self._ensure_usage_rows(project_id, resources)
        usages = _select_usages(session, project_id, resources, for_update=True)
        missing = [r for r in resources if r not in usages]
        if missing:
            # SQLite (the write lock is held, nobody can race us) or a row that vanished.
            for resource in missing:
                try:
                    with session.begin_nested():
                        session.add(_new_usage(project_id, resource))
                        session.flush()
                except db_exc.DBDuplicateEntry:
                    pass
            usages = _select_usages(session, project_id, resources, for_update=True)
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
                    session.add(_new_usage(project_id, resource))
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

    # --- internals: resolving reservations --------------------------------------------------

    def _resolve_uuids(self, reservations, *, apply: bool, session: Session | None) -> None:
        uuids = _check_uuids(reservations)
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
        owner = _check_owner(owner, required=True)

        def work(s: Session, joined: bool = False) -> int:
            live = _live_of(s, owner)
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
            keys = _reservation_keys(session, uuids)
        if joined and not self._sqlite:
            # The caller's snapshot may predate reservations committed since it began.
            with self._db.reader() as fresh:
                keys |= _reservation_keys(fresh, uuids)
        if not keys:
            return []
        session.flush()   # what the caller's ORM objects still hold, before Core writes
        usages: dict[tuple[str, str], sa.Row] = {}
        by_project = collections.defaultdict(list)
        for project_id, resource in sorted(keys):
            by_project[project_id].append(resource)
        for project_id in sorted(by_project):
            for usage in session.execute(_USAGE_VALUES_FOR_UPDATE, {
                    "b_project": project_id,
                    "b_resources": sorted(set(by_project[project_id]))}):
                usages[(project_id, usage.resource)] = usage
        rows = session.execute(_LIVE_BY_UUIDS_FOR_UPDATE, {"b_uuids": list(uuids)}).all()
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
                    value[1] = _in_use_plus(row.project_id, row.resource, value[1],
                                            row.delta)
                changed.add(key)
            else:
                LOG.warning("Reservation %s has no usage row for %s/%s; resolved without "
                            "changing usage", row.uuid, row.project_id, row.resource)
            done.append(row.uuid)
        if changed:
            session.execute(_RESOLVE_USAGE, [
                {"b_id": usages[key].id, "b_reserved": values[key][0],
                 "b_in_use": values[key][1], "b_now": now} for key in sorted(changed)])
        if rows:
            session.execute(_RESOLVE_RESERVATIONS,
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

    # --- internals: truth ----------------------------------------------------------------------

    def _reconcile_all(self, project_id: str | None, *, fix: bool) -> list[Drift]:
        if project_id is not None:
            _check_project(project_id)
            projects = [project_id]
        else:
            with self._db.reader() as session:
                projects = _all_projects(session)
        drifts: list[Drift] = []
        for project in projects:
            if fix:
                self._ensure_usage_rows(project, self.RESOURCES)
            drifts += self._run(lambda s, p=project: self._reconcile(s, p, fix=fix))
        return drifts

    def _reconcile(self, session: Session, project_id: str, *, fix: bool) -> list[Drift]:
        # Lock first: nothing that changes these usages can commit until we are done, and on
        # MariaDB the snapshot the counts below read is taken after the lock was granted.
        if fix:
            usages = self._lock_usages(session, project_id, self.RESOURCES)
        else:
            usages = _select_usages(session, project_id, self.RESOURCES, for_update=True)
        drifts = []
        for resource in self.RESOURCES:
            usage = usages.get(resource)
            in_use = usage.in_use if usage is not None else 0
            reserved = usage.reserved if usage is not None else 0
            expected_in_use, reason = self._expected_in_use(session, project_id, resource,
                                                            in_use)
            if expected_in_use != in_use:
                drifts.append(Drift(project_id, resource, "in_use", in_use, expected_in_use,
                                    reason))
            deltas = _live_deltas(session, project_id, resource)
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
        deltas = _live_deltas(session, project_id, resource)
        positive = sum(d for d in deltas if d > 0)
        negative = sum(d for d in deltas if d < 0)
        what = "%d %s in the database" % (truth, _UNITS.get(resource, resource))
        if deltas:
            what += ", %d live reservation(s) of %+d/%+d" % (len(deltas), positive, negative)
        if truth > in_use + positive:
            return truth - positive, what
        if truth < in_use + negative:
            return truth - negative, what
        return in_use, what

    def _truth(self, session: Session, project_id: str, resource: str) -> int:
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


# --- module helpers -------------------------------------------------------------------------

def request_owner(kind: str, resource_id: str, status: str) -> str:
    """The owner of a reservation the API takes for a request a worker has yet to serve
    (an extend: the volume is ``extending``).

    Such a reservation has no flow yet. It lives while the resource stays in ``status``:
    the worker's flow takes it over (extend swaps it for a flow-owned one), and a request
    that is lost -- the worker died after taking the message, before its flow was saved --
    moves the resource on (recovery: ``error_extending``), which makes the reservation an
    orphan that recovery rolls back at once and any sweep would release.

    Owners are at most 36 characters (a flow id), so the request is written compactly: a
    four-letter prefix naming (kind, status) and the resource id's 32 hex digits.
    """
    try:
        prefix = _REQUEST_PREFIXES[(kind, status)]
    except KeyError:
        raise ValueError("no request owner for a %s that is %s" % (kind, status)) from None
    return prefix + uuidlib.UUID(resource_id).hex


def parse_request_owner(owner: str | None) -> tuple[str, str, str] | None:
    """``(kind, resource_id, status)`` of a :func:`request_owner` string, else None (a flow
    id, or no owner)."""
    if not owner or len(owner) != 36 or owner[:4] not in _REQUEST_KINDS:
        return None
    try:
        resource_id = str(uuidlib.UUID(hex=owner[4:]))
    except ValueError:
        return None
    kind, status = _REQUEST_KINDS[owner[:4]]
    return kind, resource_id, status


_REQUEST_MODELS = {"volume": models.Volume}
#: (kind, status) -> owner prefix of the requests that can own reservations.
_REQUEST_PREFIXES = {("volume", "extending"): "vext"}
_REQUEST_KINDS = {prefix: key for key, prefix in _REQUEST_PREFIXES.items()}
#: (kind, status) pairs whose requests can own reservations (:func:`request_owner`).
REQUEST_OWNERS = frozenset(_REQUEST_PREFIXES)


class _LivenessCache:
    """Asks ``is_owner_live`` once per owner; an owner whose check raises counts as live."""

    def __init__(self, is_owner_live: Callable[[str], bool]):
        self._check = is_owner_live
        self._seen: dict[str, bool] = {}

    def __call__(self, owner: str) -> bool:
        if owner not in self._seen:
            try:
                self._seen[owner] = bool(self._check(owner))
            except Exception:  # the sweeper must never release what it cannot judge
                LOG.exception("Could not tell whether reservation owner %s is live; "
                              "keeping its reservations", owner)
                self._seen[owner] = True
        return self._seen[owner]


def _new_usage(project_id: str, resource: str) -> models.QuotaUsage:
    return models.QuotaUsage(project_id=project_id, resource=resource, in_use=0, reserved=0)


#: The hot statements, built once (building a statement and its cache key costs more than
#: running it on SQLite); parameters are bound per call.
_USAGES = (sa.select(models.QuotaUsage)
           .where(models.QuotaUsage.project_id == sa.bindparam("b_project"),
                  models.QuotaUsage.resource.in_(sa.bindparam("b_resources", expanding=True)))
           .order_by(models.QuotaUsage.resource)
           .execution_options(populate_existing=True))
_USAGES_FOR_UPDATE = _USAGES.with_for_update()
_INSERT_RESERVATION = sa.insert(models.Reservation.__table__)
_ADD_RESERVED = (sa.update(models.QuotaUsage.__table__)
                 .where(models.QuotaUsage.__table__.c.id == sa.bindparam("b_id"))
                 .values(reserved=models.QuotaUsage.__table__.c.reserved
                         + sa.bindparam("b_delta"),
                         updated_at=sa.bindparam("b_now")))
_RESOLVE_USAGE = (sa.update(models.QuotaUsage.__table__)
                  .where(models.QuotaUsage.__table__.c.id == sa.bindparam("b_id"))
                  .values(reserved=sa.bindparam("b_reserved"),
                          in_use=sa.bindparam("b_in_use"), updated_at=sa.bindparam("b_now")))
_RESOLVE_RESERVATIONS = (sa.update(models.Reservation.__table__)
                         .where(models.Reservation.__table__.c.id.in_(
                             sa.bindparam("b_ids", expanding=True)))
                         .values(deleted=True, deleted_at=sa.bindparam("b_now"),
                                 updated_at=sa.bindparam("b_now")))
# Table-level (Core) statements where no ORM object is needed: an ORM-enabled select costs
# about twice as much to execute as the same SQL from the table.
_QT, _RT, _UT = models.Quota.__table__, models.Reservation.__table__, models.QuotaUsage.__table__
_LIMITS = (sa.select(_QT.c.resource, _QT.c.hard_limit)
           .where(_QT.c.project_id == sa.bindparam("b_project")))
_LIVE_OF_OWNER = (sa.select(_RT.c.uuid, _RT.c.project_id, _RT.c.resource)
                  .where(_RT.c.owner == sa.bindparam("b_owner"), _RT.c.deleted.is_(False))
                  .order_by(_RT.c.id))
_LIVE_UUIDS_OF_OWNER = (sa.select(_RT.c.uuid)
                        .where(_RT.c.owner == sa.bindparam("b_owner"),
                               _RT.c.deleted.is_(False))
                        .order_by(_RT.c.id))
_KEYS_OF_UUIDS = (sa.select(_RT.c.project_id, _RT.c.resource)
                  .where(_RT.c.uuid.in_(sa.bindparam("b_uuids", expanding=True)),
                         _RT.c.deleted.is_(False))
                  .distinct())
_LIVE_BY_UUIDS_FOR_UPDATE = (
    sa.select(_RT.c.id, _RT.c.uuid, _RT.c.project_id, _RT.c.resource, _RT.c.delta)
    .where(_RT.c.uuid.in_(sa.bindparam("b_uuids", expanding=True)), _RT.c.deleted.is_(False))
    .order_by(_RT.c.id)
    .with_for_update())
#: Usage values (no ORM objects), locked, for callers that write them with Core statements.
_USAGE_VALUES_FOR_UPDATE = (
    sa.select(_UT.c.id, _UT.c.resource, _UT.c.in_use, _UT.c.reserved)
    .where(_UT.c.project_id == sa.bindparam("b_project"),
           _UT.c.resource.in_(sa.bindparam("b_resources", expanding=True)))
    .order_by(_UT.c.resource)
    .with_for_update())


def _select_usages(session: Session, project_id: str, resources: Iterable[str], *,
                   for_update: bool) -> dict[str, models.QuotaUsage]:
    stmt = _USAGES_FOR_UPDATE if for_update else _USAGES
    return {u.resource: u for u in session.scalars(
        stmt, {"b_project": project_id, "b_resources": sorted(set(resources))})}


def _live_deltas(session: Session, project_id: str, resource: str) -> list[int]:
    return [int(d) for d in session.scalars(
        sa.select(models.Reservation.delta)
        .where(models.Reservation.project_id == project_id,
               models.Reservation.resource == resource,
               models.Reservation.deleted.is_(False)))]


def _live_uuids_of(session: Session, owner: str) -> list[str]:
    return list(session.scalars(_LIVE_UUIDS_OF_OWNER, {"b_owner": owner}))


def _live_of(session: Session, owner: str) -> list[tuple[str, str, str]]:
    """``(uuid, project_id, resource)`` of ``owner``'s live reservations, oldest first."""
    return [tuple(row) for row in session.execute(_LIVE_OF_OWNER, {"b_owner": owner})]


def _reservation_keys(session: Session, uuids: list[str]) -> set[tuple[str, str]]:
    return {(project_id, resource) for project_id, resource in session.execute(
        _KEYS_OF_UUIDS, {"b_uuids": list(uuids)})}


def _all_projects(session: Session) -> list[str]:
    queries = [
        sa.select(models.QuotaUsage.project_id),
        sa.select(models.Reservation.project_id).where(models.Reservation.deleted.is_(False)),
        sa.select(models.Volume.project_id).where(models.Volume.deleted.is_(False)),
        sa.select(models.Snapshot.project_id).where(models.Snapshot.deleted.is_(False)),
        sa.select(models.Group.project_id).where(models.Group.deleted.is_(False)),
    ]
    projects: set[str] = set()
    for query in queries:
        projects.update(p for p in session.scalars(query.distinct()) if p)
    return sorted(projects)


def _check_fits(project_id: str, deltas: dict[str, int],
                usages: dict[str, models.QuotaUsage],
                limits: dict[str, int]) -> exception.BlockmgrError | None:
    """The error that applying ``deltas`` would cause, or None when they fit."""
    overs = sorted(r for r, d in deltas.items()
                   if d > 0 and limits[r] >= 0
                   and usages[r].in_use + usages[r].reserved + d > limits[r])
    if overs:
        return _over_quota(project_id, overs, deltas, limits,
                           {r: usages[r].in_use for r in deltas},
                           {r: usages[r].reserved for r in deltas})
    for resource, delta in sorted(deltas.items()):
        total = usages[resource].in_use + usages[resource].reserved + max(delta, 0)
        if total > MAX_QUOTA_VALUE:
            return exception.InvalidQuotaValue(
                resource=resource,
                reason="the usage would reach %d, beyond the largest supported value %d"
                       % (total, MAX_QUOTA_VALUE))
    return None


def _over_quota(project_id: str, overs: list[str], requested: dict[str, int],
                limits: dict[str, int], in_use: dict[str, int],
                reserved: dict[str, int]) -> exception.OverQuota:
    parts = []
    for r in overs:
        unit = _UNITS.get(r, "")
        unit = " " + unit if unit else ""
        free = max(0, limits[r] - in_use[r] - reserved[r])
        parts.append("%s: requested %d%s, only %d%s of the limit of %d%s left (%d in use, %d "
                     "reserved by operations in progress)"
                     % (r, requested[r], unit, free, unit, limits[r], unit, in_use[r],
                        reserved[r]))
    message = ("Quota exceeded for project %s: %s. Delete resources you no longer need, "
               "or ask an administrator to raise the limit (blockmgr-manage quota set)."
               % (project_id, "; ".join(parts)))
    return exception.OverQuota(
        message, overs=overs, limits={r: limits[r] for r in requested},
        in_use=dict(in_use), reserved=dict(reserved), requested=dict(requested),
        project_id=project_id)


def _add_in_use(usage: models.QuotaUsage, delta: int) -> None:
    usage.in_use = _in_use_plus(usage.project_id, usage.resource, usage.in_use, delta)


def _in_use_plus(project_id: str, resource: str, in_use: int, delta: int) -> int:
    """``in_use + delta``, clamped (and logged) at 0."""
    value = in_use + delta
    if value < 0:
        LOG.warning("%s usage of project %s would drop to %d; clamped at 0 (run "
                    "'blockmgr-manage quota check')", resource, project_id, value)
        value = 0
    return value


def _nonzero(deltas: dict[str, int]) -> dict[str, int]:
    return {r: d for r, d in deltas.items() if d != 0}


def _check_project(project_id) -> None:
    if not isinstance(project_id, str) or not project_id or len(project_id) > 255:
        raise exception.InvalidInput(
            reason="project_id must be a non-empty string of at most 255 characters, "
                   "not %r" % (project_id,))


def _check_owner(owner, required: bool = False) -> str | None:
    if owner is None and not required:
        return None
    if not isinstance(owner, str) or not owner or len(owner) > 36:
        raise exception.InvalidInput(
            reason="a reservation owner must be a flow id (a non-empty string of at most "
                   "36 characters), not %r" % (owner,))
    return owner


def _check_uuids(reservations) -> list[str]:
    if reservations is None:
        return []
    if isinstance(reservations, str):
        raise exception.InvalidInput(
            reason="reservations must be a list of uuids, not the single string %r"
                   % reservations)
    uuids = list(reservations)
    for item in uuids:
        if not isinstance(item, str):
            raise exception.InvalidInput(reason="reservation %r is not a uuid string"
                                         % (item,))
    return uuids


def _check_known(resource, known: tuple[str, ...]) -> None:
    if resource not in known:
        raise exception.UnknownQuotaResource(resources=resource, known=", ".join(known))


def _check_known_all(values: dict, known: tuple[str, ...],
                     limit_only: tuple[str, ...] = ()) -> None:
    unknown = sorted(str(r) for r in values if r not in known)
    if unknown:
        hint = ""
        if any(r in limit_only for r in unknown):
            hint = " (%s only has a limit: use limit_check)" % ", ".join(limit_only)
        raise exception.UnknownQuotaResource(resources=", ".join(unknown),
                                             known=", ".join(known) + hint)


def _check_int(resource: str, value) -> None:
    # bool is an int subclass: True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidQuotaValue(
            resource=resource, reason="%r is not an integer" % (value,))
    if abs(value) > MAX_QUOTA_VALUE:
        raise exception.InvalidQuotaValue(
            resource=resource, reason="%d is beyond the largest supported value %d"
                                      % (value, MAX_QUOTA_VALUE))
