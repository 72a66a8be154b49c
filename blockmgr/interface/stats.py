"""The capacity report a driver returns from ``VolumeDriver.get_volume_stats``.

The worker checks every report it receives against these types once per polling interval
(:func:`blockmgr.volume.capabilities.validate_stats`) before it publishes it to the
schedulers, so a driver returning a wrong report fails loudly with the key at fault instead
of misleading the placement of volumes. The keys, their names and units are Cinder's
(``get_volume_stats`` of a Cinder driver), so capacity reports read the same to an operator.

Capacities are GiB as numbers, or ``'unknown'`` / ``'infinite'`` when the backend cannot tell.
Keys beyond those declared here are allowed and published as they are: every key of the
report (top level and pool, the pool's winning) is a *capability* a volume type's extra
specs may match (``capabilities:<key>``), so a driver may add vendor-specific ones.
"""

# No ``from __future__ import annotations`` here: TypedDict reads NotRequired[...] only from
# evaluated annotations (string ones would make every key required).
from typing import Literal, NotRequired, TypedDict, Union

#: A capacity: GiB, or ``'unknown'`` / ``'infinite'``.
Capacity = Union[float, int, Literal["unknown", "infinite"]]


class PoolStats(TypedDict):
    """One pool of the backend (a backend without pools reports one, named after itself).

    Required keys are what the scheduler's capacity filter and weigher and the capacity
    metrics read; the optional ones are read by the capability filter when a volume type
    asks for them.
    """

    #: The pool's name, the ``#pool`` part of a volume's ``host``; unique in the report.
    pool_name: str
    total_capacity_gb: Capacity
    #: What a new volume may still take; ``0 <= free <= total`` when both are numbers.
    free_capacity_gb: Capacity
    #: Sum of the sizes of the volumes (and snapshots, where they take pool space) on the
    #: pool, GiB; thin pools are weighed by it against ``total x ratio``.
    provisioned_capacity_gb: float | int
    #: 0-100: the share of ``total`` the scheduler keeps free.
    reserved_percentage: float | int
    #: >= 1, or ``'auto'`` (taken as 1).
    max_over_subscription_ratio: float | int | Literal["auto"]
    thin_provisioning_support: bool
    thick_provisioning_support: bool
    #: Added by the worker (GiB it placed on the pool); a driver's value is overwritten.
    allocated_capacity_gb: NotRequired[float | int]
    total_volumes: NotRequired[int]
    total_snapshots: NotRequired[int]
    #: Opaque; drivers use it to recognise their own pools (migration).
    location_info: NotRequired[str]
    #: True only if two consumers can use one volume at once (``multiattach`` extra spec).
    multiattach: NotRequired[bool]
    QoS_support: NotRequired[bool]
    #: ``'up'`` or ``'down'``.
    backend_state: NotRequired[str]
    #: Matched by the availability-zone filter when present.
    availability_zone: NotRequired[str]


class VolumeStats(TypedDict):
    """The whole report: who the backend is, and its pools."""

    #: ``volume_backend_name`` of the backend section (volume types select backends by it).
    volume_backend_name: str
    vendor_name: str
    #: The driver class's ``VERSION``.
    driver_version: str
    #: ``'iSCSI'``, ``'NVMe-oF'``, ``'local'``...: what an attached consumer connects with.
    storage_protocol: str
    #: Non-empty.
    pools: list[PoolStats]
    #: Copies (snapshots, clones, extends) allocate no more than their source.
    sparse_copy_volume: NotRequired[bool]
    #: Reported by the worker from ``VolumeDriver.online_extend_support``.
    online_extend_support: NotRequired[bool]
    replication_enabled: NotRequired[bool]
    shared_targets: NotRequired[bool]

