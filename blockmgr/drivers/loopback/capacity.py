"""The loopback backend's capacity report (one pool: the volume directory's filesystem).

Real capacity comes from ``statvfs`` of the directory: ``total`` is the filesystem's size and
``free`` what an unprivileged writer may still allocate (``f_bavail``). The files are sparse,
so the backend is thin: ``provisioned_capacity_gb`` is the sum of the *apparent* sizes of the
managed volume and snapshot files, which the scheduler weighs against
``(total - reserved) x max_over_subscription_ratio``. The filesystem may hold other data, which
shows as ``total - free`` being larger than what our files use.
"""

from __future__ import annotations

import os
import stat

from blockmgr.drivers.loopback import layout
from blockmgr.interface.stats import VolumeStats

VENDOR_NAME = "blockmgr"
STORAGE_PROTOCOL = "local"


def _gib(size_bytes: int) -> float:
    return round(size_bytes / layout.GiB, 2)


def measure(directory: layout.VolumeDirectory) -> dict:
    """Raw figures in bytes: filesystem total/free and our files' apparent/allocated sizes."""
    fs = os.statvfs(directory.path)
    figures = {"total_bytes": fs.f_blocks * fs.f_frsize, "free_bytes": fs.f_bavail * fs.f_frsize,
               "provisioned_bytes": 0, "allocated_bytes": 0, "volumes": 0, "snapshots": 0}
    for name in directory.names():
        if not layout.is_managed_name(name):
            continue
        st = directory.stat(name)
        if st is None or not _is_regular(st):
            continue
        figures["provisioned_bytes"] += st.st_size
        figures["allocated_bytes"] += st.st_blocks * 512
        figures["volumes" if name.startswith(layout.VOLUME_PREFIX) else "snapshots"] += 1
    return figures


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def build_report(figures: dict, *, backend_name: str, pool_name: str, driver_version: str,
                 reserved_percentage: int, max_over_subscription_ratio: float,
                 location_info: str, reflink: bool) -> VolumeStats:
    """The stats report (the standard keys that apply to a local file backend)
    plus the loopback-specific capabilities ``reflink`` and ``allocated_bytes_on_disk``."""
    pool = {   # a PoolStats plus the loopback-specific keys below
        "pool_name": pool_name,
        "total_capacity_gb": _gib(figures["total_bytes"]),
        "free_capacity_gb": _gib(figures["free_bytes"]),
        "provisioned_capacity_gb": _gib(figures["provisioned_bytes"]),
        "reserved_percentage": reserved_percentage,
        "max_over_subscription_ratio": max_over_subscription_ratio,
        "thin_provisioning_support": True,
        "thick_provisioning_support": False,
        "location_info": location_info,
        "QoS_support": False,
        "total_volumes": figures["volumes"],
        "total_snapshots": figures["snapshots"],
        "allocated_bytes_on_disk": figures["allocated_bytes"],
        "multiattach": False,
        "backend_state": "up",
        "reflink": reflink,
    }
    return {
        "volume_backend_name": backend_name,
        "vendor_name": VENDOR_NAME,
        "driver_version": driver_version,
        "storage_protocol": STORAGE_PROTOCOL,
        "sparse_copy_volume": True,
        "online_extend_support": True,
        "replication_enabled": False,
        "shared_targets": False,
        "pools": [pool],
    }
