"""Quota limits: per-project overrides over the ``[quota]`` defaults (-1: unlimited).

``per_volume_gigabytes`` is *limit-only*: checked with ``limit_check``, never counted. Every
existing volume type adds ``volumes_<type>``, ``snapshots_<type>`` and ``gigabytes_<type>``
(:mod:`blockmgr.quota.per_type`), unlimited unless overridden; they come and go with the
type, so the lists of resources are read from the database (:meth:`counted_resources`). Part of
:class:`blockmgr.quota.QuotaEngine`, which supplies the database (``_db``), the options
(``_conf``) and the transaction runner (``_run``).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import quota_sql
from blockmgr.quota import checks
from blockmgr.quota import per_type

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")


class LimitsMixin:
    """The limit part of :class:`~blockmgr.quota.QuotaEngine`: overrides, defaults, the
    limit-only check, and the usage report."""

    def counted_resources(self, session: Session | None = None) -> tuple[str, ...]:
        """Every counted resource now: :attr:`RESOURCES`, then the per-type resources of
        every existing volume type (by type name)."""
        if session is None:
            with self._db.reader() as reader:
                return self.counted_resources(reader)
        return self.RESOURCES + tuple(
            per_type.resources_of_types(quota_sql.live_type_names(session)))

    def limited_resources(self, session: Session | None = None) -> tuple[str, ...]:
        """Every resource with a limit now: the counted ones and :attr:`LIMIT_ONLY`."""
        counted = self.counted_resources(session)
        return counted[:len(self.RESOURCES)] + self.LIMIT_ONLY + counted[len(self.RESOURCES):]

    def default_limits(self) -> dict[str, int]:
        """What a project without overrides gets: the ``[quota]`` options, and -1
        (unlimited) for every per-type resource."""
        return {r: self._default(r) for r in self.limited_resources()}

    def get_limits(self, project_id: str) -> dict[str, int]:
        """Every resource's limit for ``project_id`` (:meth:`limited_resources`): its
        override, else the default. Overrides of per-type resources whose type no longer
        exists are left out."""
        checks.check_project(project_id)
        with self._db.reader() as session:
            resources = self.limited_resources(session)
            limits = self._limits(session, project_id, resources)
        return {r: limits[r] for r in resources}

    def set_limit(self, project_id: str, resource: str, hard_limit: int) -> None:
        """Override one limit for a project (-1 = unlimited).

        A limit below the current usage is accepted: nothing is taken away, new reservations
        of that resource are refused until usage drops below it.

        :raises UnknownQuotaResource: not a resource of :meth:`limited_resources` (a
            per-type resource of a type that does not exist, for instance).
        """
        checks.check_project(project_id)
        self._check_limited(resource)
        checks.check_int(resource, hard_limit)
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
        """Drop a project's override so the default applies again. A per-type resource is
        accepted even when its type is gone, so that its leftover override can be removed."""
        checks.check_project(project_id)
        if not per_type.is_per_type(resource):
            checks.check_known(resource, self.RESOURCES + self.LIMIT_ONLY)
        self._run(lambda session: session.execute(
            sa.delete(models.Quota).where(models.Quota.project_id == project_id,
                                          models.Quota.resource == resource)))

    def reset_limits(self, project_id: str) -> int:
        """Drop every override of a project (per-type ones of deleted types included);
        return how many there were. Usages are kept."""
        checks.check_project(project_id)
        return self._run(lambda session: session.execute(
            sa.delete(models.Quota).where(models.Quota.project_id == project_id)).rowcount)

    def limit_check(self, project_id: str, **values: int) -> None:
        """Check values of limit-only resources, e.g. ``per_volume_gigabytes=size``.

        :raises VolumeSizeExceedsLimit: a volume is larger than ``per_volume_gigabytes``.
        :raises UnknownQuotaResource: a name that is not a limit-only resource.
        :raises InvalidQuotaValue: a value that is not an integer >= 0.
        """
        checks.check_project(project_id)
        checks.check_known_all(values, self.LIMIT_ONLY)
        for resource, value in values.items():
            checks.check_int(resource, value)
            if value < 0:
                raise exception.InvalidQuotaValue(
                    resource=resource, reason="%d is negative" % value)
        if not values:
            return
        with self._db.reader() as session:   # the limit-only ones: no need of the types
            limits = self._limits(session, project_id)
        overs = sorted(r for r, v in values.items() if 0 <= limits[r] < v)
        for resource in overs:
            if resource == "per_volume_gigabytes":
                raise exception.VolumeSizeExceedsLimit(size=values[resource],
                                                       limit=limits[resource])
        if overs:  # a limit-only resource added later without its own error
            raise checks.over_quota(project_id, overs, values, limits,
                              {r: 0 for r in values}, {r: 0 for r in values})

    def get_usages(self, project_id: str) -> dict[str, dict[str, int]]:
        """``{resource: {'in_use', 'reserved', 'limit'}}`` for every counted resource
        (:meth:`counted_resources`)."""
        checks.check_project(project_id)
        with self._db.reader() as session:
            resources = self.counted_resources(session)
            limits = self._limits(session, project_id, resources)
            rows = quota_sql.select_usages(session, project_id, resources, for_update=False)
        return {r: {"in_use": rows[r].in_use if r in rows else 0,
                    "reserved": rows[r].reserved if r in rows else 0,
                    "limit": limits[r]}
                for r in resources}

    def _default(self, resource: str) -> int:
        if per_type.is_per_type(resource):
            return per_type.DEFAULT_LIMIT
        return getattr(self._conf.quota, resource)

    def _check_limited(self, resource) -> None:
        """A resource an override may be set for: a per-type one only while its type
        exists."""
        if resource in self.RESOURCES + self.LIMIT_ONLY:
            return
        parsed = per_type.parse(resource)
        if parsed is not None and resource in self.counted_resources():
            return
        known = ", ".join(self.RESOURCES + self.LIMIT_ONLY)
        if parsed is not None:
            raise exception.UnknownQuotaResource(
                resources=resource,
                known="%s, and %s_<type> for each existing volume type; there is no volume "
                      "type named %r (list them with GET /types)"
                      % (known, parsed[0], parsed[1][:64]))
        checks.check_known(resource, self.RESOURCES + self.LIMIT_ONLY)

    def _limits(self, session: Session, project_id: str,
                resources=()) -> dict[str, int]:
        """The limits of the project-wide resources and of the per-type ones among
        ``resources`` (others are left out): the override, else the default."""
        limits = {r: getattr(self._conf.quota, r) for r in self.RESOURCES + self.LIMIT_ONLY}
        for resource in resources:
            if resource not in limits and per_type.is_per_type(resource):
                limits[resource] = per_type.DEFAULT_LIMIT
        for resource, hard_limit in session.execute(quota_sql.LIMITS, {"b_project": project_id}):
            if resource in limits:
                limits[resource] = hard_limit
        return limits
