"""The capacity report a volume backend publishes to the schedulers (cinder-reference §2.8).

``build_report`` takes the driver's stats (``VolumeDriver.get_volume_stats``) and adds what
only the worker knows: per pool, ``allocated_capacity_gb`` (the sizes this backend has
placed there, :class:`~blockmgr.volume.capacity.AllocatedCapacity`; on a single-pool backend
volumes whose host names no pool count for that pool), and the backend
section's ``reserved_percentage`` / ``max_over_subscription_ratio`` where the driver left
them out. The result is JSON (it crosses RPC).
"""

from __future__ import annotations

import copy

from blockmgr import exception
from blockmgr.volume import capacity


def build_report(stats: dict, allocated: dict[str, int], *, backend_name: str,
                 reserved_percentage: int = 0,
                 max_over_subscription_ratio: float = 20.0) -> dict:
    """A copy of ``stats`` with the worker's additions (module docstring).

    :param allocated: pool name -> GiB allocated by this worker.
    :raises DriverError: the stats have no ``pools`` list (the interface requires one).
    """
    report = copy.deepcopy(stats)
    pools = report.get("pools")
    if not isinstance(pools, list) or not pools:
        raise exception.VolumeDriverException(
            reason="get_volume_stats must return a non-empty 'pools' list, got %r"
            % (pools,))
    report.setdefault("volume_backend_name", backend_name)
    for pool in pools:
        name = pool.get("pool_name")
        gb = allocated.get(name, 0)
        if len(pools) == 1 and name != capacity.DEFAULT_POOL:
            gb += allocated.get(capacity.DEFAULT_POOL, 0)   # volumes whose host has no #pool
        pool["allocated_capacity_gb"] = int(gb)
        pool.setdefault("reserved_percentage", reserved_percentage)
        pool.setdefault("max_over_subscription_ratio", max_over_subscription_ratio)
    return report
