"""The capacity report a volume backend publishes to the schedulers.

``build_report`` takes the driver's stats (``VolumeDriver.get_volume_stats``) and adds what
only the worker knows: per pool, ``allocated_capacity_gb`` (the sizes this backend has
placed there, :class:`~blockmgr.volume.capacity.AllocatedCapacity`; on a single-pool backend
volumes whose host names no pool count for that pool), and the backend name where the
report has none. The result is JSON (it crosses RPC).

:func:`validate_stats` is where a driver's report is checked against its contract
(:class:`~blockmgr.interface.stats.VolumeStats`): once per report, when the worker receives
it, so a driver returning a wrong report fails loudly, naming the key, and the schedulers
never place volumes on figures they would misread.
"""

from __future__ import annotations

import copy
import types
import typing

from blockmgr import exception
from blockmgr.interface import stats as stats_contract
from blockmgr.volume import capacity


def _accepted(annotation) -> tuple[tuple[type, ...], frozenset[str]]:
    """(Python types, allowed words) an annotation of the stats TypedDicts accepts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds, words = (), frozenset()
        for arg in typing.get_args(annotation):
            more_kinds, more_words = _accepted(arg)
            kinds, words = kinds + more_kinds, words | more_words
        return kinds, words
    if origin is typing.Literal:
        return (), frozenset(typing.get_args(annotation))
    return ((origin or annotation),), frozenset()


def _key_types(typed_dict) -> dict[str, tuple[tuple[type, ...], frozenset[str]]]:
    return {key: _accepted(hint) for key, hint in typing.get_type_hints(typed_dict).items()}


#: Built once from the contract, so the check follows the TypedDicts as they change.
_TOP_KEYS = _key_types(stats_contract.VolumeStats)
_POOL_KEYS = _key_types(stats_contract.PoolStats)
_NON_NEGATIVE = ("total_capacity_gb", "free_capacity_gb", "provisioned_capacity_gb",
                 "allocated_capacity_gb")


def _check_value(driver: str, where: str, key: str, value, accepted) -> None:
    kinds, words = accepted
    if isinstance(value, str) and value in words:
        return
    # bool is an int to Python, never a number (or a word) here; a number is never a bool.
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        wanted = [k.__name__ for k in kinds] + [repr(w) for w in sorted(words)]
        raise exception.InvalidDriverStats(
            driver=driver, key=where + key,
            reason="must be %s, got %r" % (" or ".join(wanted), value))


def _check_keys(driver: str, where: str, data: dict, spec, required) -> None:
    for key in sorted(required):
        if key not in data:
            raise exception.InvalidDriverStats(driver=driver, key=where + key,
                                               reason="is missing")
    for key, accepted in spec.items():
        if key in data:
            _check_value(driver, where, key, data[key], accepted)


def validate_stats(stats, driver: str) -> stats_contract.VolumeStats:
    """Check a ``get_volume_stats`` report against its contract; return it unchanged.

    Required keys present, every declared key of the accepted type (``bool`` and numbers
    are told apart), pools a non-empty list with unique names, capacities not negative and
    ``free <= total`` when both are numbers, ``reserved_percentage`` within 0-100,
    ``max_over_subscription_ratio`` at least 1 (or ``'auto'``), and thin or thick
    provisioning supported. Undeclared keys are capabilities and pass as they are.

    :param driver: the driver's name for the message (``module.Class``).
    :raises InvalidDriverStats: naming the driver and the first bad key
        (``pools[1].free_capacity_gb``).
    """
    if not isinstance(stats, dict):
        raise exception.InvalidDriverStats(driver=driver, key="the report",
                                           reason="must be a dict, got %r" % (stats,))
    _check_keys(driver, "", stats, _TOP_KEYS, stats_contract.VolumeStats.__required_keys__)
    pools = stats["pools"]
    if not pools:
        raise exception.InvalidDriverStats(driver=driver, key="pools",
                                           reason="must list at least one pool")
    names = set()
    for index, pool in enumerate(pools):
        where = "pools[%d]." % index
        if not isinstance(pool, dict):
            raise exception.InvalidDriverStats(driver=driver, key=where[:-1],
                                               reason="must be a dict, got %r" % (pool,))
        _check_keys(driver, where, pool, _POOL_KEYS, stats_contract.PoolStats.__required_keys__)
        _check_pool(driver, where, pool)
        if pool["pool_name"] in names or not pool["pool_name"]:
            raise exception.InvalidDriverStats(
                driver=driver, key=where + "pool_name",
                reason="must be a non-empty name no other pool has, got %r"
                % (pool["pool_name"],))
        names.add(pool["pool_name"])
    return stats


def _check_pool(driver: str, where: str, pool: dict) -> None:
    def bad(key, reason):
        return exception.InvalidDriverStats(driver=driver, key=where + key,
                                            reason="%s, got %r" % (reason, pool[key]))

    for key in _NON_NEGATIVE:
        if isinstance(pool.get(key), (int, float)) and pool[key] < 0:
            raise bad(key, "must not be negative")
    total, free = pool["total_capacity_gb"], pool["free_capacity_gb"]
    if isinstance(total, (int, float)) and isinstance(free, (int, float)) and free > total:
        raise bad("free_capacity_gb", "must not exceed total_capacity_gb (%r)" % (total,))
    if not 0 <= pool["reserved_percentage"] <= 100:
        raise bad("reserved_percentage", "must be within 0-100")
    ratio = pool["max_over_subscription_ratio"]
    if not isinstance(ratio, str) and ratio < 1:
        raise bad("max_over_subscription_ratio", "must be at least 1 (or 'auto')")
    if not (pool["thin_provisioning_support"] or pool["thick_provisioning_support"]):
        raise bad("thick_provisioning_support",
                  "thin_provisioning_support or thick_provisioning_support must be true")


def build_report(stats: stats_contract.VolumeStats, allocated: dict[str, int], *,
                 backend_name: str, driver: str) -> stats_contract.VolumeStats:
    """A copy of ``stats`` with the worker's additions (module docstring), once
    :func:`validate_stats` accepted it.

    :param allocated: pool name -> GiB allocated by this worker.
    :param driver: the driver's name, for the error.
    :raises InvalidDriverStats: the report breaks its contract.
    """
    report = copy.deepcopy(validate_stats(stats, driver))
    pools = report["pools"]
    report.setdefault("volume_backend_name", backend_name)
    for pool in pools:
        name = pool.get("pool_name")
        gb = allocated.get(name, 0)
        if len(pools) == 1 and name != capacity.DEFAULT_POOL:
            gb += allocated.get(capacity.DEFAULT_POOL, 0)   # volumes whose host has no #pool
        pool["allocated_capacity_gb"] = int(gb)
    return report
