"""The LVM driver against real lvm2 on a loop-backed volume group.

This kernel has no device-mapper, so lvm2 runs with ``--driverloaded n`` and only metadata
operations work: thick create (``-an -Zn``), rename (manage existing), extend, remove, reports.
Those run for real here. Snapshots and thin pools need device-mapper: the tests for them at the
end run only where it exists and are skipped here with that reason.

Needs root and lvm2: skipped otherwise, except under CI=true where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid

import pytest

from blockmgr import exception
from blockmgr.drivers.lvm.driver import LVMDriver
from blockmgr.interface.objects import SnapshotView, VolumeView
from tests.conftest import IN_CI
from tests.unit.test_lvm_recorded import make_config

GiB = 1024 ** 3
MiB = 1024 ** 2
LVM_ENV = {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}


def device_mapper_available() -> bool:
    if not os.path.exists("/dev/mapper/control") or shutil.which("dmsetup") is None:
        return False
    return subprocess.run(["dmsetup", "version"], capture_output=True).returncode == 0


def require_lvm_host() -> None:
    missing = None
    if os.geteuid() != 0:
        missing = "not running as root (loop devices and lvm2 need it)"
    elif shutil.which("lvcreate") is None or shutil.which("losetup") is None:
        missing = "lvm2 or losetup is not installed (apt-get install lvm2)"
    if missing:
        if IN_CI:
            pytest.fail("CI=true and the LVM test environment is missing: " + missing)
        pytest.skip(missing)


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=LVM_ENV, timeout=60)
    if done.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), done.returncode,
                                                   done.stderr.strip()))
    return done.stdout


class LoopVolumeGroup:
    """A sparse file -> ``losetup --find --show`` -> PV -> VG with a unique name."""

    def __init__(self, directory, size_bytes: int, driverloaded: bool):
        self.flags = [] if driverloaded else ["--driverloaded", "n"]
        self.name = "bmtest-%s" % uuid.uuid4().hex[:10]
        self.image = os.path.join(str(directory), self.name + ".img")
        self.size_bytes = size_bytes
        self.device = None

    def lvm(self, tool: str, *args: str) -> str:
        return _run(tool, *self.flags, *args)

    def create_lv(self, name: str, size_bytes: int) -> None:
        """lvm2 takes sizes in 512-byte sectors and rounds up to whole extents (4 MiB)."""
        extra = ["-an", "-Zn"] if self.flags else []
        sectors = -(-size_bytes // 512)
        self.lvm("lvcreate", *extra, "-n", name, "-L", "%ds" % sectors, self.name)

    def lv_names(self) -> set[str]:
        out = self.lvm("lvs", "--noheadings", "-o", "lv_name", self.name)
        return {line.strip() for line in out.splitlines() if line.strip()}

    def __enter__(self):
        with open(self.image, "wb") as handle:
            handle.truncate(self.size_bytes)
        try:
            self.device = _run("losetup", "--find", "--show", self.image).strip()
            self.lvm("pvcreate", self.device)
            self.lvm("vgcreate", self.name, self.device)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info):
        """Undo everything that was done, each step even if an earlier one failed."""
        errors = []
        if self.device:
            for cmd in (("vgremove", "-f", self.name), ("pvremove", "-ff", "-y", self.device)):
                with contextlib.suppress(RuntimeError):
                    self.lvm(*cmd)
            try:
                _run("losetup", "-d", self.device)
            except RuntimeError as exc:
                errors.append(str(exc))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.image)
        if errors and exc_info[0] is None:
            raise RuntimeError("; ".join(errors))


@pytest.fixture
def loop_vg(tmp_path):
    require_lvm_host()
    with LoopVolumeGroup(tmp_path, 20 * GiB, driverloaded=device_mapper_available()) as vg:
        yield vg


def make_real_driver(vg: LoopVolumeGroup, **overrides) -> LVMDriver:
    overrides.setdefault("lvm_driverloaded", not vg.flags)
    overrides.setdefault("volume_group", vg.name)
    driver = LVMDriver(make_config(**overrides), "lvm-real",
                       host="node1@lvm-real")
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


@pytest.fixture
def driver(loop_vg):
    return make_real_driver(loop_vg)


def volume(size=1, **kw) -> VolumeView:
    return VolumeView(id=str(uuid.uuid4()), size=size, **kw)


def lv_sizes(vg: LoopVolumeGroup) -> dict[str, int]:
    out = vg.lvm("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size",
                 vg.name)
    return {name: int(size) for name, size in (line.split() for line in out.splitlines()
                                               if line.strip())}


# --- what this kernel can do -----------------------------------------------------------------

def test_create_extend_delete_for_real(loop_vg, driver):
    vol = volume(2)
    driver.create_volume(vol)
    driver.create_volume(vol)                  # retry: the LV is there with that size
    assert lv_sizes(loop_vg)[vol.name] == 2 * GiB
    driver.extend_volume(vol, 3)
    assert lv_sizes(loop_vg)[vol.name] == 3 * GiB
    driver.extend_volume(vol, 3)
    with pytest.raises(exception.InvalidInput):
        driver.extend_volume(vol, 1)
    driver.delete_volume(vol)
    assert vol.name not in loop_vg.lv_names()
    driver.delete_volume(vol)                  # already gone: success


def test_create_in_a_full_vg_fails_typed_and_leaves_nothing(loop_vg, driver):
    vol = volume(100)
    with pytest.raises(exception.VolumeBackendAPIException, match="exit code"):
        driver.create_volume(vol)
    assert vol.name not in loop_vg.lv_names()


def test_manage_existing_renames_with_size_rounded_up(loop_vg, driver):
    loop_vg.create_lv("legacy-data", GiB + 4 * MiB)       # not a whole GiB (4 MiB extents)
    vol = volume(2)
    ref = {"source-name": "legacy-data"}
    assert driver.manage_existing_get_size(vol, ref) == 2
    driver.manage_existing(vol, ref)
    assert loop_vg.lv_names() == {vol.name}
    with pytest.raises(exception.ManageExistingInvalidReference):
        driver.manage_existing_get_size(vol, ref)
    driver.unmanage(vol)
    assert loop_vg.lv_names() == {vol.name}                # unmanage never deletes


def test_manage_existing_by_uuid_for_real(loop_vg, driver):
    loop_vg.create_lv("by-uuid", GiB)
    lv_uuid = loop_vg.lvm("lvs", "--noheadings", "-o", "lv_uuid",
                          "%s/by-uuid" % loop_vg.name).strip()
    vol = volume()
    driver.manage_existing(vol, {"source-id": lv_uuid})
    assert loop_vg.lv_names() == {vol.name}


def test_bad_references_never_reach_lvm(loop_vg, driver):
    loop_vg.create_lv("keep", GiB)
    for name in ("--force", "../keep", "%s/keep" % loop_vg.name, "-an", "/dev/loop0"):
        with pytest.raises(exception.ManageExistingInvalidReference):
            driver.manage_existing(volume(), {"source-name": name})
    assert loop_vg.lv_names() == {"keep"}


def test_manageable_listing_for_real(loop_vg, driver):
    ours, gone = volume(1), volume(1)
    driver.create_volume(ours)
    driver.create_volume(gone)
    driver.unmanage(gone)
    for name, size in (("f-small", 512 * MiB), ("f-big", 2 * GiB + 4 * MiB)):
        loop_vg.create_lv(name, size)
    entries = driver.get_manageable_volumes([ours], None, None, None, ["size"], ["desc"])
    assert [(e["reference"]["source-name"], e["size"], e["safe_to_manage"])
            for e in entries] == [("f-big", 3, True), ("f-small", 1, True), (gone.name, 1, True)]
    page = driver.get_manageable_volumes([ours], {"source-name": "f-small"}, 1, None,
                                         ["size"], ["desc"])
    assert [e["reference"]["source-name"] for e in page] == [gone.name]
    assert driver.get_manageable_snapshots([], None, None, None, None, None) == []


def test_stats_from_real_vgs(loop_vg, driver):
    before = driver.get_volume_stats(refresh=True)["pools"][0]
    assert 19 < before["total_capacity_gb"] <= 20
    assert before["free_capacity_gb"] == before["total_capacity_gb"]
    assert before["provisioned_capacity_gb"] == 0
    driver.create_volume(volume(3))
    cached = driver.get_volume_stats()["pools"][0]
    assert cached == before                          # no lvm2 call without refresh
    after = driver.get_volume_stats(refresh=True)["pools"][0]
    assert after["provisioned_capacity_gb"] == 3 and after["total_volumes"] == 1
    assert after["free_capacity_gb"] == pytest.approx(before["free_capacity_gb"] - 3, abs=0.01)


def test_setup_fails_on_a_missing_vg(loop_vg):
    with pytest.raises(exception.ConfigurationError, match="does not exist"):
        make_real_driver(loop_vg, volume_group=loop_vg.name + "-missing")


def test_cleanup_removes_the_loop_device_and_vg_even_after_a_failure(tmp_path):
    require_lvm_host()
    flags_vg = LoopVolumeGroup(tmp_path, GiB, driverloaded=device_mapper_available())
    with pytest.raises(ZeroDivisionError):
        with flags_vg:
            device = flags_vg.device
            1 / 0
    assert device not in _run("losetup", "-a")
    assert not os.path.exists(flags_vg.image)
    assert flags_vg.name not in _run("vgs", *flags_vg.flags, "--noheadings", "-o", "vg_name")


# --- device-mapper only: snapshots and thin ----------------------------------------------------

needs_dm = pytest.mark.skipif(
    not device_mapper_available(),
    reason="no device-mapper in this kernel (/dev/mapper/control missing, dmsetup version "
           "fails): lvm2 cannot create snapshots or thin pools here")


@needs_dm
def test_thick_snapshot_and_busy_origin_for_real(loop_vg, driver):
    vol = volume(1)
    driver.create_volume(vol)
    snap = SnapshotView(id=str(uuid.uuid4()), volume_id=vol.id, volume_size=1,
                        volume_name=vol.name)
    driver.create_snapshot(snap)
    with pytest.raises(exception.VolumeIsBusy):
        driver.delete_volume(vol)
    copy = volume(1)
    driver.create_volume_from_snapshot(copy, snap)
    driver.delete_snapshot(snap)
    driver.delete_snapshot(snap)
    for v in (vol, copy):
        driver.delete_volume(v)
    assert loop_vg.lv_names() == set()


@needs_dm
def test_thin_pool_snapshot_and_clone_for_real(loop_vg):
    driver = make_real_driver(loop_vg, lvm_type="thin")
    vol = volume(1)
    driver.create_volume(vol)
    snap = SnapshotView(id=str(uuid.uuid4()), volume_id=vol.id, volume_size=1,
                        volume_name=vol.name)
    driver.create_snapshot(snap)
    clone, copy = volume(2), volume(1)
    driver.create_cloned_volume(clone, vol)
    driver.create_volume_from_snapshot(copy, snap)
    stats = driver.get_volume_stats(refresh=True)["pools"][0]
    assert stats["provisioned_capacity_gb"] == 5 and stats["thin_provisioning_support"]
    driver.delete_snapshot(snap)
    for v in (vol, clone, copy):
        driver.delete_volume(v)
