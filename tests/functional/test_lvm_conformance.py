"""The driver conformance suite on the LVM driver over a real loop-backed volume group.

Without device-mapper (this kernel) lvm2 only edits metadata: the tests that need snapshots or
an attachable device are skipped by name with that reason, and ``volume_io`` is None so the data
tests skip. Where device-mapper exists everything runs, data included (through the LV's device
node).
"""

from __future__ import annotations

import os
import uuid

import pytest

from blockmgr.drivers.lvm import names
from blockmgr.interface.objects import SnapshotView
from blockmgr.testing.conformance import DriverConformanceTests
from tests.functional.test_lvm_real import (LoopVolumeGroup, device_mapper_available,
                                            make_real_driver, require_lvm_host)

GiB = 1024 ** 3
HAS_DM = device_mapper_available()
NO_DM = ("no device-mapper in this kernel: lvm2 runs with --driverloaded n and cannot create "
         "snapshots")
NO_ATTACH = ("no device-mapper in this kernel: LVs cannot be activated, so there is no device "
             "to export (the driver raises Unsupported)")


class DeviceIO:
    """Reads and writes an LV through its device node (needs device-mapper)."""

    def __init__(self, vg_name: str):
        self.vg_name = vg_name

    def _path(self, view) -> str:
        lv = names.snapshot_lv_name(view) if isinstance(view, SnapshotView) else view.name
        return "/dev/%s/%s" % (self.vg_name, lv)

    def write(self, view, offset: int, data: bytes) -> None:
        fd = os.open(self._path(view), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, view, offset: int, length: int) -> bytes:
        fd = os.open(self._path(view), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)


class ForeignLVs:
    """LVs the driver did not create, for the manage tests."""

    def __init__(self, vg: LoopVolumeGroup):
        self.vg = vg

    def volume(self, size_bytes: int) -> dict:
        name = "foreign-%s" % uuid.uuid4().hex[:8]
        self.vg.create_lv(name, size_bytes)      # lvm2 rounds up to whole 4 MiB extents
        return {"source-name": name}

    def snapshot(self, volume, size_bytes: int) -> dict:
        name = "fsnap-%s" % uuid.uuid4().hex[:8]
        self.vg.lvm("lvcreate", "-s", "-n", name, "-L", "%ds" % -(-size_bytes // 512),
                    "%s/%s" % (self.vg.name, volume.name))
        return {"source-name": name}


class TestLVMConformance(DriverConformanceTests):

    skip_tests = {} if HAS_DM else {
        "test_create_snapshot_twice_succeeds": NO_DM,
        "test_delete_snapshot_twice_succeeds": NO_DM,
        "test_delete_volume_with_snapshot_is_refused_or_keeps_snapshot": NO_DM,
        "test_create_volume_from_snapshot_and_clone_succeed": NO_DM,
        "test_unmanage_snapshot_then_manage_again_keeps_data": NO_DM,
        "test_manageable_snapshot_listing_marks_own_snapshots": NO_DM,
        "test_manage_existing_snapshot_get_size_rounds_up": NO_DM,
        "test_manage_existing_snapshot_binds_object": NO_DM,
        "test_failed_snapshot_manage_restores_the_original_name": NO_DM,
        "test_cgsnapshot_covers_every_member": NO_DM,
        "test_consistencygroup_from_src_holds_source_data": NO_DM,
        "test_export_lifecycle_is_idempotent": NO_ATTACH,
        "test_initialize_connection_returns_connection_info": NO_ATTACH,
    }

    @pytest.fixture
    def loop_vg(self, tmp_path):
        require_lvm_host()
        with LoopVolumeGroup(tmp_path, 40 * GiB, driverloaded=HAS_DM) as vg:
            yield vg

    @pytest.fixture
    def driver(self, loop_vg):
        return make_real_driver(loop_vg)

    @pytest.fixture
    def volume_io(self, loop_vg):
        return DeviceIO(loop_vg.name) if HAS_DM else None

    @pytest.fixture
    def foreign_object(self, loop_vg):
        return ForeignLVs(loop_vg)
