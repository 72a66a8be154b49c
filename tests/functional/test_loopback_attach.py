"""Attach and detach loopback volumes with the real ``losetup`` (root only).

Every test detaches, in its teardown, any loop device still backed by a file of its
directory, so a failing assertion never leaks a device.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from oslo_config import cfg

from blockmgr import exception
from blockmgr.conf import backend as backend_conf
from blockmgr.conf import default as default_conf
from blockmgr.drivers.loopback.driver import LoopbackDriver
from blockmgr.interface.objects import VolumeView

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(os.geteuid() != 0, reason="attaching loop devices needs root")]

BACKEND = "loopback-attach"
GiB = 1024 ** 3
CONNECTOR = {"host": "attach-test"}


def _losetup_backing(directory: str) -> dict[str, str]:
    """device -> backing file, for loop devices backed by files in ``directory``."""
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].startswith(directory.rstrip("/") + "/"):
            found[parts[0]] = parts[1].strip()
    return found


@pytest.fixture
def driver(tmp_path):
    conf = cfg.ConfigOpts()
    default_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("state_path", str(tmp_path))
    conf.register_opts(backend_conf.GENERIC_OPTS, group=BACKEND)
    conf.set_override("volume_driver", "loopback", group=BACKEND)
    backend_conf.register_backend(conf, BACKEND)
    drv = LoopbackDriver(conf[BACKEND], BACKEND, host="node@" + BACKEND)
    drv.do_setup(None)
    drv.check_for_setup_error()
    try:
        yield drv
    finally:
        for device in _losetup_backing(drv.directory):
            subprocess.run(["losetup", "--detach", device], check=False, timeout=60)


def _device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def test_attach_write_detach(driver):
    volume = VolumeView(id="a1", size=1)
    driver.create_volume(volume)
    path = os.path.join(driver.directory, volume.name)
    info = driver.initialize_connection(volume, CONNECTOR)
    device = info["data"]["device_path"]
    assert info["driver_volume_type"] == "local"
    assert info["data"]["file_path"] == path
    assert device.startswith("/dev/loop")
    assert _losetup_backing(driver.directory) == {device: path}
    assert _device_size(device) == GiB

    fd = os.open(device, os.O_RDWR)
    try:
        os.pwrite(fd, b"through the loop device", 5 * 1024 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        f.seek(5 * 1024 * 1024)
        assert f.read(23) == b"through the loop device"

    # A second attach of the same volume reuses the device.
    assert driver.initialize_connection(volume, CONNECTOR) == info
    assert len(_losetup_backing(driver.directory)) == 1

    driver.terminate_connection(volume, CONNECTOR)
    assert _losetup_backing(driver.directory) == {}
    driver.terminate_connection(volume, CONNECTOR)  # idempotent
    driver.delete_volume(volume)


def test_delete_refuses_attached_volume_until_detached(driver):
    volume = VolumeView(id="a2", size=1)
    driver.create_volume(volume)
    device = driver.initialize_connection(volume, CONNECTOR)["data"]["device_path"]
    with pytest.raises(exception.VolumeIsBusy, match=device):
        driver.delete_volume(volume)
    assert os.path.exists(os.path.join(driver.directory, volume.name))
    driver.remove_export(None, volume)  # detaches what a consumer left attached
    assert _losetup_backing(driver.directory) == {}
    driver.delete_volume(volume)


def test_extend_while_attached_resizes_the_device(driver):
    volume = VolumeView(id="a3", size=1)
    driver.create_volume(volume)
    device = driver.initialize_connection(volume, CONNECTOR)["data"]["device_path"]
    driver.extend_volume(volume, 2)
    assert _device_size(device) == 2 * GiB
    driver.terminate_connection(volume, CONNECTOR)
    driver.delete_volume(volume)


def test_manage_refuses_a_file_attached_by_someone_else(driver):
    path = os.path.join(driver.directory, "busy.img")
    with open(path, "wb") as f:
        f.truncate(GiB)
    device = subprocess.run(["losetup", "--find", "--show", path], check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    ref = {"source-name": "busy.img"}
    with pytest.raises(exception.ManageExistingInvalidReference, match=device):
        driver.manage_existing(VolumeView(id="a4", size=1), ref)
    (entry,) = driver.get_manageable_volumes([], None, None, None, None, None)
    assert entry["safe_to_manage"] is False and device in entry["reason_not_safe"]


def test_os_brick_local_connector_consumes_the_connection_info(driver):
    connector_mod = pytest.importorskip("os_brick.initiator.connector",
                                        reason="os-brick is not installed")
    local = connector_mod.InitiatorConnector.factory("LOCAL", root_helper=None)
    volume = VolumeView(id="a5", size=1)
    driver.create_volume(volume)
    info = driver.initialize_connection(volume, CONNECTOR)
    try:
        assert info["driver_volume_type"].upper() == "LOCAL"
        attached = local.connect_volume(info["data"])
        assert attached == {"type": "local", "path": info["data"]["device_path"]}
        local.disconnect_volume(info["data"], attached)
    finally:
        driver.terminate_connection(volume, CONNECTOR)
    driver.delete_volume(volume)
