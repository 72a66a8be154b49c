"""Which optional capabilities a driver class implements, decided once when it loads.

A driver *declares* a capability interface by inheriting it (there is no duck typing) and
declares the optional :class:`~blockmgr.interface.volume.VolumeDriver` features by overriding
``revert_to_snapshot`` / setting ``online_extend_support``. The loader
(:func:`blockmgr.drivers.contracts.verify_driver_class`) checks every declared interface
completely when the driver loads and records the answer as a :class:`DriverCapabilities`;
the manager asks that object afterwards instead of testing the driver object at each
request, so a driver that declares a capability but lacks a method never serves a request.
"""

from __future__ import annotations

import dataclasses
import enum

from blockmgr import exception


class Capability(str, enum.Enum):
    """An optional part of the driver contract (``VolumeDriver`` itself is mandatory)."""

    #: :class:`~blockmgr.interface.volume_management.VolumeManagementDriver`.
    VOLUME_MANAGEMENT = "volume_management"
    #: :class:`~blockmgr.interface.snapshot_management.SnapshotManagementDriver`.
    SNAPSHOT_MANAGEMENT = "snapshot_management"
    #: :class:`~blockmgr.interface.consistencygroup.ConsistencyGroupDriver`.
    CONSISTENCY_GROUPS = "consistency_groups"
    #: ``VolumeDriver.revert_to_snapshot`` is overridden (the default raises Unsupported).
    REVERT_TO_SNAPSHOT = "revert_to_snapshot"
    #: ``VolumeDriver.online_extend_support`` is True.
    ONLINE_EXTEND = "online_extend"

    @property
    def contract(self) -> str:
        """What a driver implements to have it, as an author reads it in messages."""
        return _CONTRACTS[self]


_CONTRACTS = {
    Capability.VOLUME_MANAGEMENT: "VolumeManagementDriver",
    Capability.SNAPSHOT_MANAGEMENT: "SnapshotManagementDriver",
    Capability.CONSISTENCY_GROUPS: "ConsistencyGroupDriver",
    Capability.REVERT_TO_SNAPSHOT: "VolumeDriver.revert_to_snapshot",
    Capability.ONLINE_EXTEND: "VolumeDriver.online_extend_support",
}


@dataclasses.dataclass(frozen=True)
class DriverCapabilities:
    """What one driver class implements; built by the loader, read by the manager.

    :param driver: ``module.Class`` of the driver, for messages.
    :param capabilities: the :class:`Capability` members the class implements.
    """

    driver: str
    capabilities: frozenset[Capability] = frozenset()

    def __contains__(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability, operation: str, host: str) -> None:
        """Refuse ``operation`` on backend ``host`` unless the driver implements it.

        :raises Unsupported: it does not (the message names the driver and what it lacks).
        """
        if capability not in self.capabilities:
            raise exception.Unsupported(
                operation=operation,
                what="driver %s of backend %s (it does not implement %s)"
                     % (self.driver.rpartition(".")[2], host, capability.contract))

    def names(self) -> list[str]:
        """The capability names, sorted (for logs and reports)."""
        return sorted(c.value for c in self.capabilities)
