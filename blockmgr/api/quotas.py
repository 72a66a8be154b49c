"""Quota sets of the client library: a project's limits (and usages), defaults, updates.

A *quota set* is every limit of one project, by resource name: the counted resources of
:attr:`blockmgr.quota.QuotaEngine.RESOURCES`, the limit-only ones of
:attr:`~blockmgr.quota.QuotaEngine.LIMIT_ONLY`, and ``volumes_<type>``, ``snapshots_<type>``
and ``gigabytes_<type>`` for every existing volume type (unlimited unless set; they leave
the set when their type is deleted); -1 means unlimited. Who may do what:

* reading: an admin reads any project's; anyone else only their own project's (another
  project's is :class:`~blockmgr.exception.NotAuthorized`: a quota set exists for every
  project name, so there is no id to hide);
* changing (:meth:`QuotaSetService.update`, :meth:`~QuotaSetService.reset`): admins only.

Updates are all-or-nothing at the input level: every name and value is checked before the
first limit is written, so a bad request changes nothing.
"""

from __future__ import annotations

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr.api import common
from blockmgr.quota import per_type


class QuotaSetService:
    """:param conf: config with ``[quota]`` registered (the defaults).
    :param quota: :class:`blockmgr.quota.QuotaEngine`."""

    def __init__(self, conf, quota: bm_quota.QuotaEngine):
        self.conf = conf
        self.quota = quota

    @property
    def resources(self) -> tuple[str, ...]:
        """Every resource with a limit now: the project-wide counted ones, the limit-only
        ones, then the per-type ones of the existing volume types."""
        return self.quota.limited_resources()

    def defaults(self, ctx, project_id: str) -> dict[str, int]:
        """The defaults (what a project without overrides gets): the ``[quota]`` options,
        -1 for the per-type resources."""
        self._check_read(ctx, project_id)
        return self.quota.default_limits()

    def show(self, ctx, project_id: str, *, usage: bool = False) -> dict:
        """A project's limits ``{resource: limit}``; with ``usage``
        ``{resource: {'limit', 'in_use', 'reserved'}}`` (limit-only resources have
        ``in_use`` and ``reserved`` 0: they are never counted)."""
        self._check_read(ctx, project_id)
        if not isinstance(usage, bool):
            raise exception.InvalidInput(reason="usage must be a boolean")
        if not usage:
            return self.quota.get_limits(project_id)
        usages = self.quota.get_usages(project_id)
        limits = self.quota.get_limits(project_id)
        # The limits' keys are the resources (a type created or deleted between the two
        # reads only changes which of them has usage figures).
        return {r: usages.get(r, {"in_use": 0, "reserved": 0, "limit": limit})
                for r, limit in limits.items()}

    def update(self, ctx, project_id: str, values: dict) -> dict[str, int]:
        """Override limits of a project (admin only); returns the project's limits after.

        :param values: ``{resource: int}``, each -1 (unlimited) up to
            :data:`blockmgr.quota.MAX_QUOTA_VALUE`.
        :raises NotAuthorized: not an admin.
        :raises UnknownQuotaResource: a name that is no resource now, e.g.
            ``volumes_<type>`` of a type that does not exist.
        :raises InvalidQuotaValue, InvalidInput: nothing written.
        """
        self._check_admin(ctx, "change quotas")
        _check_project(project_id)
        if not isinstance(values, dict) or not values:
            raise exception.InvalidInput(reason="give at least one quota to change, as "
                                                "{resource: limit}")
        resources = self.resources
        unknown = sorted(str(r) for r in values if r not in resources)
        if unknown:
            raise exception.UnknownQuotaResource(resources=", ".join(unknown),
                                                 known=_known_text(resources))
        for resource, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise exception.InvalidQuotaValue(resource=resource,
                                                  reason="%r is not an integer" % (value,))
            if not -1 <= value <= bm_quota.MAX_QUOTA_VALUE:
                raise exception.InvalidQuotaValue(
                    resource=resource, reason="%d is not -1 (unlimited) or between 0 and %d"
                                              % (value, bm_quota.MAX_QUOTA_VALUE))
        for resource, value in sorted(values.items()):
            self.quota.set_limit(project_id, resource, value)
        return self.quota.get_limits(project_id)

    def reset(self, ctx, project_id: str) -> dict[str, int]:
        """Drop every override of a project so the defaults apply (admin only), per-type
        ones included (also those of deleted types, which a new type of the same name would
        otherwise inherit); returns the limits after. Usages are kept."""
        self._check_admin(ctx, "reset quotas")
        _check_project(project_id)
        self.quota.reset_limits(project_id)
        return self.quota.get_limits(project_id)

    # --- policy ---------------------------------------------------------------------------

    def _check_read(self, ctx, project_id) -> None:
        ctx = common.check_context(ctx)
        _check_project(project_id)
        if not ctx.is_admin and ctx.project_id != project_id:
            raise exception.NotAuthorized(reason="project %s may only read its own quota, "
                                                 "not project %s's"
                                                 % (ctx.project_id, project_id))

    @staticmethod
    def _check_admin(ctx, action: str) -> None:
        ctx = common.check_context(ctx)
        if not ctx.is_admin:
            raise exception.NotAuthorized(reason="only an admin may %s" % action)


def _check_project(project_id) -> None:
    if not isinstance(project_id, str) or not project_id or len(project_id) > 255:
        raise exception.InvalidInput(reason="project id must be a non-empty string of at "
                                            "most 255 characters, not %r" % (project_id,))


def _known_text(resources: tuple[str, ...]) -> str:
    """The valid names for an error message: the project-wide ones, then the per-type ones
    (whose type names say which types exist)."""
    base = [r for r in resources if not per_type.is_per_type(r)]
    typed = [r for r in resources if per_type.is_per_type(r)]
    text = ", ".join(base)
    if typed:
        text += "; per volume type: " + ", ".join(typed)
    else:
        text += " (and volumes_<type>, snapshots_<type>, gigabytes_<type> once volume types exist)"
    return text
