"""The driver conformance suite, run for real on the loopback driver.

Three runs of :class:`~blockmgr.testing.conformance.DriverConformanceTests`:

- ``TestLoopbackOnRootFilesystem``: files in a tmp directory (ext4 here: no reflink, so every
  snapshot and clone is a sparse copy); data read and written in the files directly.
- ``TestLoopbackThroughLoopDevices`` (root only): same backend, but every data access
  attaches the volume with ``initialize_connection`` (a real ``losetup``), reads/writes the
  loop device and detaches with ``terminate_connection``.
- ``TestLoopbackOnReflinkFilesystem`` (root, btrfs-progs): the directory is a btrfs filesystem
  on a loop device and ``loopback_use_reflink = always``, so every copy is a FICLONE.

Plus reflink-specific checks on btrfs and xfs (``reflink=1``): snapshots share extents and
unshare on write. Every loop device and mount made here is removed, even on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from oslo_config import cfg

from blockmgr.conf import backend as backend_conf
from blockmgr.conf import default as default_conf
from blockmgr.drivers.loopback.driver import LoopbackDriver
from blockmgr.interface.objects import SnapshotView
from blockmgr.interface.objects import VolumeView
from blockmgr.testing.conformance import DriverConformanceTests

pytestmark = pytest.mark.functional

BACKEND = "loopback-conformance"
MiB = 1024 ** 2
GiB = 1024 ** 3
IS_ROOT = os.geteuid() == 0


def build_driver(state_path, **overrides) -> LoopbackDriver:
    conf = cfg.ConfigOpts()
    default_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("state_path", str(state_path))
    conf.register_opts(backend_conf.GENERIC_OPTS, group=BACKEND)
    conf.set_override("volume_driver", "loopback", group=BACKEND)
    backend_conf.register_backend(conf, BACKEND)
    for name, value in overrides.items():
        conf.set_override(name, value, group=BACKEND)
    driver = LoopbackDriver(conf[BACKEND], BACKEND, host="conformance@" + BACKEND)
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


class FileIO:
    """``volume_io`` reading and writing the volume and snapshot files directly."""

    def __init__(self, driver: LoopbackDriver):
        self.driver = driver

    def _path(self, view) -> str:
        return os.path.join(self.driver.directory, view.name)

    def write(self, view, offset: int, data: bytes) -> None:
        fd = os.open(self._path(view), os.O_WRONLY)
        try:
            assert os.pwrite(fd, data, offset) == len(data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, view, offset: int, length: int) -> bytes:
        fd = os.open(self._path(view), os.O_RDONLY)
        try:
            return _read_exactly(fd, offset, length)
        finally:
            os.close(fd)

    def allocated_bytes(self, view) -> int:
        return os.stat(self._path(view)).st_blocks * 512


class LoopDeviceIO(FileIO):
    """``volume_io`` going through the attach path: volumes are attached with
    ``initialize_connection`` and accessed as the block device it returns, then detached
    (the driver refuses to delete attached volumes, so nothing may stay attached). Snapshots
    cannot be attached through the interface and are read from their files."""

    CONNECTOR = {"host": "conformance"}

    def _with_device(self, view, flags, action):
        info = self.driver.initialize_connection(view, self.CONNECTOR)
        device = info["data"]["device_path"]
        assert device.startswith("/dev/loop"), info
        try:
            fd = os.open(device, flags)
            try:
                return action(fd)
            finally:
                os.close(fd)
        finally:
            self.driver.terminate_connection(view, self.CONNECTOR)

    def write(self, view, offset: int, data: bytes) -> None:
        if isinstance(view, SnapshotView):
            raise AssertionError("the suite never writes snapshots")

        def write(fd):
            assert os.pwrite(fd, data, offset) == len(data)
            os.fsync(fd)
        self._with_device(view, os.O_RDWR, write)

    def read(self, view, offset: int, length: int) -> bytes:
        if isinstance(view, SnapshotView):
            return super().read(view, offset, length)
        return self._with_device(view, os.O_RDONLY,
                                 lambda fd: _read_exactly(fd, offset, length))


def _read_exactly(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    assert len(data) == length, "short read: %d of %d bytes at %d" % (len(data), length,
                                                                     offset)
    return data


class ForeignFiles:
    """``foreign_object``: files the driver did not create, dropped into its directory."""

    def __init__(self, driver: LoopbackDriver):
        self.driver = driver
        self.created: list[str] = []

    def _make(self, name: str, size_bytes: int) -> dict:
        path = os.path.join(self.driver.directory, name)
        with open(path, "wb") as f:
            f.write(b"foreign data")
            f.truncate(size_bytes)
        self.created.append(path)
        return {"source-name": name}

    def volume(self, size_bytes: int) -> dict:
        return self._make("foreign-%s.img" % uuid.uuid4().hex[:8], size_bytes)

    def snapshot(self, volume: VolumeView, size_bytes: int) -> dict:
        return self._make("%s@foreign-%s" % (volume.name, uuid.uuid4().hex[:8]), size_bytes)

    def cleanup(self) -> None:
        for path in self.created:
            if os.path.exists(path):
                os.unlink(path)


class _LoopbackFixtures(DriverConformanceTests):

    driver_options: dict = {}

    @pytest.fixture
    def state_path(self, tmp_path):
        return tmp_path

    @pytest.fixture
    def driver(self, state_path):
        driver = build_driver(state_path, **self.driver_options)
        yield driver
        leftovers = sorted(os.listdir(driver.directory))
        shutil.rmtree(driver.directory, ignore_errors=True)
        assert not [n for n in leftovers if n.startswith(("volume-", "snapshot-"))], (
            "the suite left driver objects behind: %r" % leftovers)

    @pytest.fixture
    def volume_io(self, driver):
        return FileIO(driver)

    @pytest.fixture
    def foreign_object(self, driver):
        factory = ForeignFiles(driver)
        yield factory
        factory.cleanup()


class TestLoopbackOnRootFilesystem(_LoopbackFixtures):
    """Sparse-copy snapshots and clones (the root filesystem cannot reflink)."""


@pytest.mark.skipif(not IS_ROOT, reason="attaching loop devices needs root")
class TestLoopbackThroughLoopDevices(_LoopbackFixtures):
    """Data goes through real loop devices attached by initialize_connection."""

    @pytest.fixture
    def volume_io(self, driver):
        yield LoopDeviceIO(driver)
        assert not _loop_devices_under(driver.directory), "a loop device was left attached"


# --- a reflink-capable filesystem on a loop device --------------------------------------------

def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def _loop_devices_under(directory: str) -> list[str]:
    out = _run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")
    found = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(directory.rstrip("/") + "/"):
            found.append(parts[0])
    return found


MKFS = {"btrfs": ("mkfs.btrfs", ["-f", "-q"]),
        "xfs": ("mkfs.xfs", ["-f", "-q", "-m", "reflink=1"])}


def mounted_filesystem(kind: str, workdir: str):
    """Generator: make a ``kind`` filesystem in a sparse image on a loop device, mount it,
    yield the mount point; unmount and detach in every case."""
    if not IS_ROOT:
        pytest.skip("making a filesystem on a loop device needs root")
    tool, args = MKFS[kind]
    if shutil.which(tool) is None:
        pytest.skip("%s is not installed (apt-get install -y %s)"
                    % (tool, "btrfs-progs" if kind == "btrfs" else "xfsprogs"))
    image = os.path.join(workdir, "%s.img" % kind)
    mountpoint = os.path.join(workdir, "%s-mnt" % kind)
    os.makedirs(mountpoint)
    with open(image, "wb") as f:
        f.truncate(512 * MiB)
    device = None
    mounted = False
    try:
        device = _run("losetup", "--find", "--show", image).strip()
        _run(tool, *args, device)
        _run("mount", device, mountpoint)
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            subprocess.run(["umount", mountpoint], check=False, timeout=120)
        if device:
            subprocess.run(["losetup", "--detach", device], check=False, timeout=60)
        os.unlink(image)


@pytest.fixture(scope="module")
def btrfs_mount(tmp_path_factory):
    yield from mounted_filesystem("btrfs", str(tmp_path_factory.mktemp("btrfs")))


@pytest.fixture(scope="module", params=["btrfs", "xfs"])
def reflink_mount(request, tmp_path_factory):
    yield from mounted_filesystem(request.param,
                                  str(tmp_path_factory.mktemp(request.param)))


class TestLoopbackOnReflinkFilesystem(_LoopbackFixtures):
    """Every snapshot and clone is a FICLONE (``loopback_use_reflink = always``)."""

    driver_options = {"loopback_use_reflink": "always"}

    @pytest.fixture
    def state_path(self, btrfs_mount):
        path = os.path.join(btrfs_mount, uuid.uuid4().hex[:8])
        os.mkdir(path)
        return path


def _shared_extents(path: str) -> int:
    out = _run("filefrag", "-v", path)
    return sum(1 for line in out.splitlines() if "shared" in line)


def test_reflink_snapshot_shares_extents_and_unshares_on_write(reflink_mount):
    driver = build_driver(os.path.join(reflink_mount, "state"), loopback_use_reflink="always")
    assert driver.uses_reflink
    volume = VolumeView(id="r1", size=1)
    snapshot = SnapshotView(id="rs1", volume_id="r1", volume_size=1)
    io = FileIO(driver)
    try:
        driver.create_volume(volume)
        payload = os.urandom(8 * MiB)
        io.write(volume, 64 * MiB, payload)
        free_before = os.statvfs(driver.directory).f_bavail
        driver.create_snapshot(snapshot)
        snap_path = os.path.join(driver.directory, snapshot.name)
        # Shared, not copied: both files report shared extents and no 8 MiB was allocated.
        assert _shared_extents(snap_path) > 0
        freed = (free_before - os.statvfs(driver.directory).f_bavail) * \
            os.statvfs(driver.directory).f_frsize
        assert freed < 4 * MiB, "a reflink snapshot consumed %d bytes" % freed
        io.write(volume, 64 * MiB, b"\0" * 4096)
        assert io.read(snapshot, 64 * MiB, len(payload)) == payload
        assert io.read(volume, 64 * MiB, 4096) == b"\0" * 4096
        clone = VolumeView(id="r2", size=2)
        driver.create_cloned_volume(clone, volume)
        assert io.read(clone, 64 * MiB + 4096, 4096) == payload[4096:8192]
        assert os.path.getsize(os.path.join(driver.directory, clone.name)) == 2 * GiB
    finally:
        for view in (VolumeView(id="r2", size=2), volume):
            driver.delete_volume(view)
        driver.delete_snapshot(snapshot)
