"""Driver contracts: one abstract class per capability.

A driver inherits the interfaces it implements (no duck typing). ``blockmgr-manage driver
check`` compares a class's real function members and signatures against these classes, and
``blockmgr.testing`` exercises the behaviour each contract promises.
"""

from blockmgr.interface.base import DriverBase  # noqa: F401
from blockmgr.interface.consistencygroup import ConsistencyGroupDriver  # noqa: F401
from blockmgr.interface.snapshot_management import SnapshotManagementDriver  # noqa: F401
from blockmgr.interface.volume import VolumeDriver  # noqa: F401
from blockmgr.interface.volume_management import VolumeManagementDriver  # noqa: F401

#: Every capability interface, in the order ``driver check`` reports them.
ALL_INTERFACES = (VolumeDriver, VolumeManagementDriver, SnapshotManagementDriver,
                  ConsistencyGroupDriver)
