"""Driver contracts: one abstract class per capability, and the types that cross it.

A driver inherits the interfaces it implements (no duck typing). Everything here is
contract: the interfaces (whose docstrings say what each method promises), the read-only
views drivers receive (:mod:`~blockmgr.interface.objects`), the stats report
(:mod:`~blockmgr.interface.stats`), the model updates and other results drivers return
(:mod:`~blockmgr.interface.updates`) and the capabilities a loaded driver is recorded with
(:mod:`~blockmgr.interface.capabilities`). Helpers that implement parts of a contract live in
:mod:`blockmgr.drivers` (e.g. :mod:`blockmgr.drivers.manageable`).

``blockmgr-manage driver check`` compares a class's real function members and signatures
against these classes, the loader runs the same check before a backend uses the driver
(:mod:`blockmgr.drivers.contracts`), and ``blockmgr.testing`` exercises the behaviour each
contract promises.
"""

from blockmgr.interface.base import DriverBase  # noqa: F401
from blockmgr.interface.capabilities import Capability, DriverCapabilities  # noqa: F401
from blockmgr.interface.consistencygroup import ConsistencyGroupDriver  # noqa: F401
from blockmgr.interface.snapshot_management import SnapshotManagementDriver  # noqa: F401
from blockmgr.interface.volume import VolumeDriver  # noqa: F401
from blockmgr.interface.volume_management import VolumeManagementDriver  # noqa: F401

#: Every capability interface, in the order ``driver check`` reports them.
ALL_INTERFACES = (VolumeDriver, VolumeManagementDriver, SnapshotManagementDriver,
                  ConsistencyGroupDriver)

#: The capability each optional interface gives the driver class that implements it.
INTERFACE_CAPABILITIES = {VolumeManagementDriver: Capability.VOLUME_MANAGEMENT,
                          SnapshotManagementDriver: Capability.SNAPSHOT_MANAGEMENT,
                          ConsistencyGroupDriver: Capability.CONSISTENCY_GROUPS}
