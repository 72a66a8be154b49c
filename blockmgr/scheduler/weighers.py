"""Weighers: order the pools that passed the filters; the first one wins.

One weigher today, free capacity (Cinder's CapacityWeigher): thick requests weigh a pool by
``free - reserved``, thin ones by the virtual free space ``(total - reserved) x ratio -
provisioned``. ``infinite`` weighs most, ``unknown`` least. The multiplier
(``[scheduler] capacity_weight_multiplier``) spreads volumes when positive and stacks them
when negative. Ties go to the pool whose host sorts first, so placement is deterministic.
"""

from __future__ import annotations

import math

from blockmgr.scheduler import filters as bm_filters
from blockmgr.scheduler import host_state


def free_capacity(pool: host_state.PoolState, request: bm_filters.PlacementRequest) -> float:
    free, total = pool.free_capacity_gb, pool.total_capacity_gb
    if free == host_state.INFINITE:
        return math.inf
    if free == host_state.UNKNOWN:
        return -math.inf
    if total in (host_state.INFINITE, host_state.UNKNOWN):
        return free
    reserved = math.floor(total * pool.reserved_percentage / 100.0)
    if request.thin_on(pool):
        provisioned = pool.provisioned_capacity_gb
        provisioned = provisioned if isinstance(provisioned, float) else 0.0
        return (total - reserved) * pool.max_over_subscription_ratio - provisioned
    return free - reserved


def order(pools: list[host_state.PoolState], request: bm_filters.PlacementRequest,
          multiplier: float = 1.0) -> list[host_state.PoolState]:
    """``pools`` best first."""
    def key(pool):
        weight = free_capacity(pool, request) * multiplier
        if math.isnan(weight):   # inf x 0
            weight = 0.0
        return (-weight, pool.host)
    return sorted(pools, key=key)
