"""Validation of quota arguments, and the arithmetic of limits and usages.

Shared by every part of the quota engine (:mod:`blockmgr.quota`): what a valid project id,
owner, reservation list, resource name or quota value is, whether deltas fit under the limits
(and the :class:`~blockmgr.exception.OverQuota` that says why not), and the clamping of usage
at zero.
"""

from __future__ import annotations

import logging

from blockmgr import exception
from blockmgr.db import models
from blockmgr.quota import per_type

#: The package logs under one name, whichever part of it speaks.
LOG = logging.getLogger("blockmgr.quota")

#: Largest limit, delta or usage the engine stores (``quotas.hard_limit`` is a 32-bit integer).
MAX_QUOTA_VALUE = 2 ** 31 - 1

#: Units shown in messages (per-type gigabytes too: :func:`unit_of`).
UNITS = {"gigabytes": "GiB", "per_volume_gigabytes": "GiB"}


def unit_of(resource: str) -> str:
    """The unit a resource is counted in for messages ('' for a count)."""
    parsed = per_type.parse(resource)
    return UNITS.get(parsed[0] if parsed else resource, "")


def check_fits(project_id: str, deltas: dict[str, int],
                usages: dict[str, models.QuotaUsage],
                limits: dict[str, int]) -> exception.BlockmgrError | None:
    """The error that applying ``deltas`` would cause, or None when they fit."""
    overs = sorted(r for r, d in deltas.items()
                   if d > 0 and limits[r] >= 0
                   and usages[r].in_use + usages[r].reserved + d > limits[r])
    if overs:
        return over_quota(project_id, overs, deltas, limits,
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


def over_quota(project_id: str, overs: list[str], requested: dict[str, int],
                limits: dict[str, int], in_use: dict[str, int],
                reserved: dict[str, int]) -> exception.OverQuota:
    parts = []
    for r in overs:
        unit = unit_of(r)
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


def add_in_use(usage: models.QuotaUsage, delta: int) -> None:
    usage.in_use = in_use_plus(usage.project_id, usage.resource, usage.in_use, delta)


def in_use_plus(project_id: str, resource: str, in_use: int, delta: int) -> int:
    """``in_use + delta``, clamped (and logged) at 0."""
    value = in_use + delta
    if value < 0:
        LOG.warning("%s usage of project %s would drop to %d; clamped at 0 (run "
                    "'blockmgr-manage quota check')", resource, project_id, value)
        value = 0
    return value


def nonzero(deltas: dict[str, int]) -> dict[str, int]:
    return {r: d for r, d in deltas.items() if d != 0}


def check_project(project_id) -> None:
    if not isinstance(project_id, str) or not project_id or len(project_id) > 255:
        raise exception.InvalidInput(
            reason="project_id must be a non-empty string of at most 255 characters, "
                   "not %r" % (project_id,))


def check_owner(owner, required: bool = False) -> str | None:
    if owner is None and not required:
        return None
    if not isinstance(owner, str) or not owner or len(owner) > 36:
        raise exception.InvalidInput(
            reason="a reservation owner must be a flow id (a non-empty string of at most "
                   "36 characters), not %r" % (owner,))
    return owner


def check_uuids(reservations) -> list[str]:
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


def check_known(resource, known: tuple[str, ...]) -> None:
    if resource not in known:
        raise exception.UnknownQuotaResource(resources=resource, known=", ".join(known))


def check_known_all(values: dict, known: tuple[str, ...],
                     limit_only: tuple[str, ...] = (), per_type_hint: bool = False) -> None:
    unknown = sorted(str(r) for r in values if r not in known)
    if unknown:
        hint = ""
        if any(r in limit_only for r in unknown):
            hint = " (%s only has a limit: use limit_check)" % ", ".join(limit_only)
        if per_type_hint and any(per_type.is_per_type(r) for r in unknown):
            hint += (" (per-type resources are reserved by passing the volume's type: "
                     "volume_type_id= or by_type=)")
        raise exception.UnknownQuotaResource(resources=", ".join(unknown),
                                             known=", ".join(known) + hint)


def check_int(resource: str, value) -> None:
    # bool is an int subclass: True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.InvalidQuotaValue(
            resource=resource, reason="%r is not an integer" % (value,))
    if abs(value) > MAX_QUOTA_VALUE:
        raise exception.InvalidQuotaValue(
            resource=resource, reason="%d is beyond the largest supported value %d"
                                      % (value, MAX_QUOTA_VALUE))
