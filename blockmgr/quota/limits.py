"""Quota limits: per-project overrides over the ``[quota]`` defaults (-1: unlimited).

``per_volume_gigabytes`` is *limit-only*: checked with ``limit_check``, never counted. Part of
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

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")


class LimitsMixin:
    """The limit part of :class:`~blockmgr.quota.QuotaEngine`: overrides, defaults, the
    limit-only check, and the usage report."""

    def get_limits(self, project_id: str) -> dict[str, int]:
        """Every resource's limit for ``project_id``: its override, else the default."""
        checks.check_project(project_id)
        with self._db.reader() as session:
            return self._limits(session, project_id)

    def set_limit(self, project_id: str, resource: str, hard_limit: int) -> None:
        """Override one limit for a project (-1 = unlimited).

        A limit below the current usage is accepted: nothing is taken away, new reservations
        of that resource are refused until usage drops below it.
        """
        checks.check_project(project_id)
        checks.check_known(resource, self.RESOURCES + self.LIMIT_ONLY)
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
        """Drop a project's override so the ``[quota]`` default applies again."""
        checks.check_project(project_id)
        checks.check_known(resource, self.RESOURCES + self.LIMIT_ONLY)
        self._run(lambda session: session.execute(
            sa.delete(models.Quota).where(models.Quota.project_id == project_id,
                                          models.Quota.resource == resource)))

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
        limits = self.get_limits(project_id)
        overs = sorted(r for r, v in values.items() if 0 <= limits[r] < v)
        for resource in overs:
            if resource == "per_volume_gigabytes":
                raise exception.VolumeSizeExceedsLimit(size=values[resource],
                                                       limit=limits[resource])
        if overs:  # a limit-only resource added later without its own error
            raise checks.over_quota(project_id, overs, values, limits,
                              {r: 0 for r in values}, {r: 0 for r in values})

    def get_usages(self, project_id: str) -> dict[str, dict[str, int]]:
        """``{resource: {'in_use', 'reserved', 'limit'}}`` for every reservable resource."""
        checks.check_project(project_id)
        with self._db.reader() as session:
            limits = self._limits(session, project_id)
            rows = quota_sql.select_usages(session, project_id, self.RESOURCES, for_update=False)
        return {r: {"in_use": rows[r].in_use if r in rows else 0,
                    "reserved": rows[r].reserved if r in rows else 0,
                    "limit": limits[r]}
                for r in self.RESOURCES}

    def _limits(self, session: Session, project_id: str) -> dict[str, int]:
        limits = {r: getattr(self._conf.quota, r) for r in self.RESOURCES + self.LIMIT_ONLY}
        for resource, hard_limit in session.execute(quota_sql.LIMITS, {"b_project": project_id}):
            if resource in limits:
                limits[resource] = hard_limit
        return limits
