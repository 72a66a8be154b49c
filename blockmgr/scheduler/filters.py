"""Filters: which pools may take a request. Each says *why* it rejects, for the error message.

A filter is a function ``(pool, request) -> str | None``: None passes, a string is the reason
the pool was rejected. :func:`apply` runs them in order and keeps the reasons, so a
``NoValidBackend`` tells the operator what ruled each backend out instead of a bare "no
valid backend".

The capacity rules are those of Cinder's CapacityFilter (``docs/cinder-compat.md``):

* free ``infinite`` / ``unknown``: passes (the backend cannot tell).
* reserved = floor(total x reserved_percentage / 100).
* thin request (pool thin-capable and the type does not ask ``provisioning:type=thick``):
  a ratio < 1 rejects; virtual free = (total - reserved) x max_over_subscription_ratio -
  provisioned must be >= size, and the pool must still have physical space above its
  reserve (free > reserved) -- a thin pool that is physically full cannot take writes.
* otherwise (thick): min(free, total - reserved - provisioned) must be >= size; a pool that
  does not support thick provisioning rejects a thick request.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

from blockmgr.scheduler import host_state

Filter = Callable[[host_state.PoolState, "PlacementRequest"], "str | None"]

THIN, THICK = "thin", "thick"


@dataclasses.dataclass(frozen=True)
class PlacementRequest:
    """What a placement must satisfy (built from a request spec; JSON only).

    ``resource_backend``: the request must land on this backend (``host@backend``, or a pool
    ``host@backend#pool``): volumes created from a snapshot or a source volume, members of a
    group. ``excluded_backends``: already tried (reschedule). ``live_backends``: the volume
    services that are up, or None to skip the check. ``availability_zone``: the zone the
    request names (None: any); ``backend_zones``: ``host@backend`` -> the zone its volume
    service is in (a backend missing there is judged by the ``availability_zone`` it
    reports in its capabilities, if any).
    """

    size_gb: float = 0
    extra_specs: dict = dataclasses.field(default_factory=dict)
    resource_backend: str | None = None
    excluded_backends: frozenset = frozenset()
    live_backends: frozenset | None = None
    availability_zone: str | None = None
    backend_zones: dict = dataclasses.field(default_factory=dict)

    @property
    def provisioning(self) -> str | None:
        value = self.extra_specs.get("provisioning:type")
        return str(value).strip().lower() if value is not None else None

    def thin_on(self, pool: host_state.PoolState) -> bool:
        """Whether this request is thin-provisioned on ``pool``."""
        return pool.thin_provisioning_support and self.provisioning != THICK


def service_up(pool, request: PlacementRequest) -> str | None:
    if request.live_backends is not None and pool.backend not in request.live_backends:
        return "its volume service is down or disabled"
    return None


def not_tried(pool, request: PlacementRequest) -> str | None:
    if pool.backend in request.excluded_backends:
        return "the request already failed there"
    return None


def resource_backend(pool, request: PlacementRequest) -> str | None:
    wanted = request.resource_backend
    if not wanted:
        return None
    backend, _, pool_name = wanted.partition("#")
    if pool.backend != backend or (pool_name and pool.pool_name != pool_name):
        return "the request must be placed on %s" % wanted
    return None


def availability_zone(pool, request: PlacementRequest) -> str | None:
    """A request naming a zone only lands on a backend in that zone (Cinder's
    AvailabilityZoneFilter); a backend whose zone is unknown is not taken for it."""
    wanted = request.availability_zone
    if not wanted:
        return None
    zone = request.backend_zones.get(pool.backend)
    if zone is None:
        zone = pool.capabilities.get("availability_zone")
    if zone is None:
        return "its availability zone is unknown (wanted %r)" % (wanted,)
    if zone != wanted:
        return "it is in availability zone %r, not %r" % (zone, wanted)
    return None


#: Extra-spec scopes the capability filter ignores (they are for other components).
_FOREIGN_SCOPES = ("provisioning", "qos", "volume_type", "replication", "multiattach_scope")


def capabilities(pool, request: PlacementRequest) -> str | None:
    """Cinder's CapabilitiesFilter: ``volume_backend_name`` and every
    ``capabilities:<key>`` (or unscoped ``<key>``) extra spec must match the pool's
    capability of that name (:func:`spec_matches` for the operators). Unscoped keys the
    backend does not report are ignored (they may be meant for the driver); scoped ones
    are required."""
    caps = pool.capabilities
    for key, wanted in sorted(request.extra_specs.items()):
        scope, sep, name = key.partition(":")
        if not sep:
            scope, name = None, key
        elif scope != "capabilities":
            continue
        if scope is None and (name not in caps or name.split(":")[0] in _FOREIGN_SCOPES):
            if name == "volume_backend_name":
                return "it reports no volume_backend_name (wanted %r)" % (wanted,)
            continue
        have = caps.get(name)
        if not spec_matches(have, wanted):
            return "%s is %r, the volume type wants %r" % (name, have, wanted)
    return None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numeric(compare):
    def check(have, operand: str) -> bool:
        left, right = _number(have), _number(operand)
        return left is not None and right is not None and compare(left, right)
    return check


#: Cinder's extra-spec operators: the capability's value (left) against the operand.
#: ``=`` is "at least" for numbers, as in Cinder; ``s``-prefixed ones compare text.
_OPERATORS = {
    "=": _numeric(lambda a, b: a >= b),
    "==": _numeric(lambda a, b: a == b),
    "!=": _numeric(lambda a, b: a != b),
    ">=": _numeric(lambda a, b: a >= b),
    "<=": _numeric(lambda a, b: a <= b),
    "s==": lambda have, operand: str(have) == operand,
    "s!=": lambda have, operand: str(have) != operand,
    "s>=": lambda have, operand: str(have) >= operand,
    "s<=": lambda have, operand: str(have) <= operand,
    "s>": lambda have, operand: str(have) > operand,
    "s<": lambda have, operand: str(have) < operand,
    "<in>": lambda have, operand: operand in str(have),
    "<is>": lambda have, operand: host_state._bool(have) == (operand.lower() == "true"),
}


def spec_matches(have, wanted) -> bool:
    """Whether a capability value ``have`` satisfies the extra spec ``wanted``.

    Operators (Cinder's): ``<is> True|False``; ``<in> text`` (a substring, or an item of
    a reported list); ``<all-in> a b`` (every word); ``<or> a <or> b`` (one of them);
    numeric ``= N`` (at least N), ``== N``, ``!= N``, ``>= N``, ``<= N``; text ``s== s!=
    s>= s<= s> s<``. Without an operator the values must be equal (booleans and numbers
    compared as such). A capability the backend does not report matches nothing."""
    if have is None:
        return False
    text = str(wanted).strip()
    words = text.split()
    if "<or>" in words:
        return any(_equal(have, option.strip()) for option in text.split("<or>")
                   if option.strip())
    if words and words[0] == "<all-in>":
        items = have if isinstance(have, (list, tuple, set)) else str(have).split()
        return all(word in [str(i) for i in items] for word in words[1:])
    if len(words) >= 2 and words[0] in _OPERATORS:
        operand = text[len(words[0]):].strip()
        if words[0] == "<in>" and isinstance(have, (list, tuple, set)):
            return operand in [str(i) for i in have]
        return _OPERATORS[words[0]](have, operand)
    return _equal(have, text)


def _equal(have, text: str) -> bool:
    if isinstance(have, bool):
        return have == (text.lower() in ("true", "1", "yes"))
    if isinstance(have, (int, float)):
        try:
            return float(text) == float(have)
        except ValueError:
            return False
    return str(have) == text


def capacity(pool, request: PlacementRequest) -> str | None:
    size = float(request.size_gb or 0)
    free, total = pool.free_capacity_gb, pool.total_capacity_gb
    thin = request.thin_on(pool)
    if request.provisioning == THICK and not pool.thick_provisioning_support:
        return "it does not support thick provisioning"
    if request.provisioning == THIN and not pool.thin_provisioning_support:
        return "it does not support thin provisioning"
    if free in (host_state.INFINITE, host_state.UNKNOWN):
        return None
    if size <= 0:
        return None
    if total in (host_state.INFINITE, host_state.UNKNOWN):
        return None if free >= size else "only %.1f GiB free, %g GiB wanted" % (free, size)
    reserved = math.floor(total * pool.reserved_percentage / 100.0)
    provisioned = pool.provisioned_capacity_gb
    provisioned = provisioned if isinstance(provisioned, float) else 0.0
    if thin:
        ratio = pool.max_over_subscription_ratio
        if ratio < 1:
            return "its max_over_subscription_ratio %g is below 1" % ratio
        virtual_free = (total - reserved) * ratio - provisioned
        if virtual_free < size:
            return ("only %.1f GiB left to over-subscribe (ratio %g, %.1f GiB provisioned), "
                    "%g GiB wanted" % (virtual_free, ratio, provisioned, size))
        if free <= reserved:
            return "it is physically full (%.1f GiB free, %d GiB reserved)" % (free, reserved)
        return None
    usable = min(free, total - reserved - provisioned)
    if usable < size:
        return ("only %.1f GiB usable (%.1f free, %d reserved, %.1f provisioned), %g GiB "
                "wanted" % (usable, free, reserved, provisioned, size))
    return None


#: The order filters run in: cheap identity checks first.
DEFAULT_FILTERS: tuple[Filter, ...] = (service_up, not_tried, resource_backend,
                                       availability_zone, capabilities, capacity)


def apply(pools: Iterable[host_state.PoolState], request: PlacementRequest,
          filters: Iterable[Filter] = DEFAULT_FILTERS
          ) -> tuple[list[host_state.PoolState], dict[str, str]]:
    """``(passing pools, {rejected pool host: reason})``."""
    passed, rejected = [], {}
    filters = tuple(filters)
    for pool in pools:
        for check in filters:
            reason = check(pool, request)
            if reason is not None:
                rejected[pool.host] = reason
                break
        else:
            passed.append(pool)
    return passed, rejected
