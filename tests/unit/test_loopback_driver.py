"""Unit tests of the loopback driver: real files in tmp directories, losetup scripted.

Everything here does real file I/O (sparse files, copies, renames); only ``losetup`` is played
by :class:`FakeLosetup`, a command-recording double that keeps a table of "attached" files
the way the kernel would. Real loop devices are exercised in
``tests/functional/test_loopback_attach.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from oslo_config import cfg

from blockmgr import exception
from blockmgr.conf import backend as backend_conf
from blockmgr.conf import default as default_conf
from blockmgr.drivers.command import CommandRunner
from blockmgr.drivers.loopback import filecopy
from blockmgr.drivers.loopback import layout
from blockmgr.drivers.loopback import loopdev
from blockmgr.drivers.loopback.driver import LoopbackDriver
from blockmgr.interface.objects import GroupSnapshotView
from blockmgr.interface.objects import GroupView
from blockmgr.interface.objects import SnapshotView
from blockmgr.interface.objects import VolumeView

GiB = 1024 ** 3
MiB = 1024 ** 2
BACKEND = "lb1"


class FakeLosetup(CommandRunner):
    """Plays ``losetup`` against an in-memory table of attachments; records every call."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, ...]] = []
        self.attached: dict[str, str] = {}  # device -> path
        self._next = 40

    def execute(self, *cmd, **kwargs):
        self.calls.append(cmd)
        assert cmd[0] == "losetup", cmd
        if "--list" in cmd:
            devices = []
            for device, path in sorted(self.attached.items()):
                st = os.stat(path)
                devices.append({"name": device, "back-file": path, "back-ino": st.st_ino,
                                "back-maj:min": "%d:%d" % (os.major(st.st_dev),
                                                           os.minor(st.st_dev))})
            return json.dumps({"loopdevices": devices}), ""
        if cmd[1:3] == ("--find", "--show"):
            device = "/dev/loop%d" % self._next
            self._next += 1
            self.attached[device] = cmd[3]
            return device + "\n", ""
        if cmd[1] == "--detach":
            if cmd[2] not in self.attached:
                raise exception.CommandExecutionError(
                    cmd=" ".join(cmd), exit_code=1,
                    stderr="losetup: %s: detach failed: No such device or address" % cmd[2])
            del self.attached[cmd[2]]
            return "", ""
        if cmd[1] == "--set-capacity":
            return "", ""
        raise AssertionError("unexpected command %r" % (cmd,))

    def commands(self, verb: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if verb in c]


def make_conf(state_path, **overrides) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    default_conf.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("state_path", str(state_path))
    conf.register_opts(backend_conf.GENERIC_OPTS, group=BACKEND)
    conf.set_override("volume_driver", "loopback", group=BACKEND)
    backend_conf.register_backend(conf, BACKEND)
    for name, value in overrides.items():
        conf.set_override(name, value, group=BACKEND)
    return conf


def make_driver(tmp_path, runner=None, privileged=True, setup=True, **overrides):
    conf = make_conf(tmp_path, **overrides)
    driver = LoopbackDriver(conf[BACKEND], BACKEND, host="node1@" + BACKEND,
                            command_runner=runner or FakeLosetup(), privileged=privileged)
    if setup:
        driver.do_setup(None)
        driver.check_for_setup_error()
    return driver


@pytest.fixture
def losetup():
    return FakeLosetup()


@pytest.fixture
def driver(tmp_path, losetup):
    return make_driver(tmp_path, losetup)


def vol(ident="v1", size=1, **kw) -> VolumeView:
    return VolumeView(id=ident, size=size, **kw)


def snap(ident="s1", volume_id="v1", volume_size=1, **kw) -> SnapshotView:
    return SnapshotView(id=ident, volume_id=volume_id, volume_size=volume_size, **kw)


def path_of(driver, name) -> str:
    return os.path.join(driver.directory, name)


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def read_at(path, offset, length) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def foreign_file(driver, name, size_bytes, data=b""):
    path = path_of(driver, name)
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size_bytes)
    return path


# --- configuration and setup ----------------------------------------------------------------

class TestSetup:

    def test_default_directory_is_per_backend_under_state_path(self, tmp_path):
        driver = make_driver(tmp_path)
        assert driver.directory == str(tmp_path / "volumes" / BACKEND)
        assert os.stat(driver.directory).st_mode & 0o777 == 0o700

    def test_explicit_directory_is_used_as_is(self, tmp_path):
        driver = make_driver(tmp_path, loopback_directory=str(tmp_path / "mine"))
        assert driver.directory == str(tmp_path / "mine")

    def test_relative_directory_is_rejected(self, tmp_path):
        with pytest.raises(exception.ConfigurationError, match="not an absolute path"):
            make_driver(tmp_path, setup=False, loopback_directory="rel/dir")

    def test_directory_that_is_a_file_is_rejected(self, tmp_path):
        (tmp_path / "afile").write_text("x")
        with pytest.raises(exception.ConfigurationError, match="afile"):
            make_driver(tmp_path, loopback_directory=str(tmp_path / "afile"))

    def test_check_before_setup_fails(self, tmp_path):
        driver = make_driver(tmp_path, setup=False)
        with pytest.raises(exception.DriverNotInitialized, match="do_setup"):
            driver.check_for_setup_error()

    def test_setup_removes_leftover_temp_files_only(self, tmp_path):
        target = tmp_path / "volumes" / BACKEND
        target.mkdir(parents=True)
        old = target / (layout.TEMP_PREFIX + "volume-x-123")   # no owner in the name
        old.write_bytes(b"partial")
        os.utime(old, (0, 0))
        (target / "foreign.img").write_bytes(b"keep")
        make_driver(tmp_path)
        assert sorted(os.listdir(target)) == ["foreign.img"]

    def test_setup_removes_only_temp_files_of_dead_owners(self, tmp_path):
        """Cluster members share the directory: a starting member never removes a live
        peer's temp files (its clone would fail), only those of dead processes, and those of
        another host only once they are stale."""
        target = tmp_path / "volumes" / BACKEND
        target.mkdir(parents=True)
        host = layout.owner_tag().split("+")[0]
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()

        def temp(owner, purpose):
            name = "%s%s+%s-%s" % (layout.TEMP_PREFIX, owner, purpose, "0" * 32)
            (target / name).write_bytes(b"partial")
            return name

        own = temp(layout.owner_tag(), "volume-mine")                  # this process: live
        peer = temp("%s+1+%s" % (host, layout._start_token(1) or "0"), "volume-peer")
        gone = temp("%s+%d+%s" % (host, dead.pid, "12345"), "volume-gone")
        reused = temp("%s+1+%s" % (host, "999999999999"), "volume-reused")  # pid reused
        remote = temp("otherhost+42+7", "volume-remote")
        remote_old = temp("otherhost+42+7", "volume-remote-old")
        os.utime(target / remote_old, (0, 0))
        legacy = layout.TEMP_PREFIX + "volume-x-123"                    # no owner, fresh
        (target / legacy).write_bytes(b"partial")
        make_driver(tmp_path)
        assert set(os.listdir(target)) == {own, peer, remote, legacy}
        assert {gone, reused, remote_old}.isdisjoint(os.listdir(target))

    def test_two_members_starting_together_keep_each_others_work(self, tmp_path):
        first = make_driver(tmp_path)
        temp = first._directory.new_temp_path("volume-in-flight")
        with open(temp, "wb") as f:
            f.write(b"copy in progress")
        assert layout.temp_owner(os.path.basename(temp))[1] == os.getpid()
        make_driver(tmp_path)          # a second member starts on the same directory
        assert os.path.exists(temp)

    def test_reflink_probe_on_ext4_says_no(self, tmp_path):
        # tmp_path lives on the root filesystem (ext4 here: no reflink).
        driver = make_driver(tmp_path)
        supported, _why = filecopy.probe_reflink(driver.directory)
        assert driver.uses_reflink is supported

    def test_reflink_always_without_support_fails_at_setup(self, tmp_path):
        supported, _ = filecopy.probe_reflink(str(tmp_path))
        if supported:
            pytest.skip("tmp_path's filesystem supports reflink")
        with pytest.raises(exception.ConfigurationError, match="loopback_use_reflink"):
            make_driver(tmp_path, loopback_use_reflink="always")

    def test_reflink_never_is_honoured(self, tmp_path):
        assert make_driver(tmp_path, loopback_use_reflink="never").uses_reflink is False

    def test_unknown_reflink_mode_is_a_config_error(self, tmp_path):
        with pytest.raises(ValueError):
            make_driver(tmp_path, setup=False, loopback_use_reflink="sometimes")


# --- volumes ---------------------------------------------------------------------------------

class TestVolumes:

    def test_create_makes_sparse_file_of_size(self, driver):
        driver.create_volume(vol(size=2))
        st = os.stat(path_of(driver, "volume-v1"))
        assert st.st_size == 2 * GiB
        assert st.st_blocks == 0
        assert st.st_mode & 0o777 == 0o600

    def test_create_twice_same_size_is_ok(self, driver):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), 0, b"data")
        assert driver.create_volume(vol()) is None
        assert read_at(path_of(driver, "volume-v1"), 0, 4) == b"data"

    def test_create_over_file_of_other_size_conflicts_and_keeps_it(self, driver):
        driver.create_volume(vol(size=1))
        with pytest.raises(exception.Conflict, match="left untouched"):
            driver.create_volume(vol(size=2))
        assert os.path.getsize(path_of(driver, "volume-v1")) == GiB

    def test_names_cannot_escape_the_directory(self, driver, tmp_path):
        with pytest.raises(exception.InvalidInput, match="cannot contain '/'"):
            driver.create_volume(vol(name="../escape"))
        with pytest.raises(exception.InvalidInput):
            driver.create_volume(vol(name=".."))
        assert not (tmp_path / "volumes" / "escape").exists()

    def test_delete_removes_and_is_idempotent(self, driver):
        driver.create_volume(vol())
        driver.delete_volume(vol())
        assert not os.path.exists(path_of(driver, "volume-v1"))
        driver.delete_volume(vol())

    def test_delete_attached_volume_is_busy(self, driver, losetup):
        driver.create_volume(vol())
        losetup.attached["/dev/loop7"] = path_of(driver, "volume-v1")
        with pytest.raises(exception.VolumeIsBusy, match="/dev/loop7"):
            driver.delete_volume(vol())
        assert os.path.exists(path_of(driver, "volume-v1"))

    def test_delete_with_snapshots_proceeds_and_snapshot_stays_usable(self, driver):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), 4096, b"pattern")
        driver.create_snapshot(snap())
        driver.delete_volume(vol())
        driver.create_volume_from_snapshot(vol("v2"), snap())
        assert read_at(path_of(driver, "volume-v2"), 4096, 7) == b"pattern"

    def test_extend_grows_and_keeps_data(self, driver, losetup):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), GiB - 3, b"end")
        driver.extend_volume(vol(), 3)
        assert os.path.getsize(path_of(driver, "volume-v1")) == 3 * GiB
        assert read_at(path_of(driver, "volume-v1"), GiB - 3, 3) == b"end"
        assert losetup.commands("--set-capacity") == []
        driver.extend_volume(vol(size=3), 3)  # a resumed extend: nothing to do

    def test_extend_refreshes_attached_loop_device(self, driver, losetup):
        driver.create_volume(vol())
        losetup.attached["/dev/loop3"] = path_of(driver, "volume-v1")
        driver.extend_volume(vol(), 2)
        assert losetup.commands("--set-capacity") == [("losetup", "--set-capacity",
                                                       "/dev/loop3")]

    def test_extend_never_shrinks(self, driver):
        driver.create_volume(vol(size=2))
        with pytest.raises(exception.InvalidInput, match="cannot shrink"):
            driver.extend_volume(vol(size=2), 1)
        assert os.path.getsize(path_of(driver, "volume-v1")) == 2 * GiB

    def test_extend_missing_volume(self, driver):
        with pytest.raises(exception.VolumeNotFound):
            driver.extend_volume(vol(), 2)


# --- snapshots and copies --------------------------------------------------------------------

class TestSnapshotsAndClones:

    def test_snapshot_is_point_in_time(self, driver):
        driver.create_volume(vol())
        path = path_of(driver, "volume-v1")
        write_at(path, MiB, b"A" * 4096)
        driver.create_snapshot(snap())
        write_at(path, MiB, b"B" * 4096)
        assert read_at(path_of(driver, "snapshot-s1"), MiB, 4096) == b"A" * 4096
        assert os.path.getsize(path_of(driver, "snapshot-s1")) == GiB

    def test_snapshot_twice_keeps_first_point_in_time(self, driver):
        driver.create_volume(vol())
        path = path_of(driver, "volume-v1")
        write_at(path, 0, b"first")
        driver.create_snapshot(snap())
        write_at(path, 0, b"later")
        driver.create_snapshot(snap())
        assert read_at(path_of(driver, "snapshot-s1"), 0, 5) == b"first"

    def test_snapshot_of_missing_volume(self, driver):
        with pytest.raises(exception.VolumeNotFound):
            driver.create_snapshot(snap())
        assert os.listdir(driver.directory) == []

    def test_delete_snapshot_idempotent(self, driver):
        driver.create_volume(vol())
        driver.create_snapshot(snap())
        driver.delete_snapshot(snap())
        driver.delete_snapshot(snap())
        assert os.listdir(driver.directory) == ["volume-v1"]

    def test_clone_holds_source_bytes_and_grows(self, driver):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), 123, b"clone me")
        driver.create_cloned_volume(vol("v2", size=2), vol())
        assert os.path.getsize(path_of(driver, "volume-v2")) == 2 * GiB
        assert read_at(path_of(driver, "volume-v2"), 123, 8) == b"clone me"
        driver.create_cloned_volume(vol("v2", size=2), vol())  # idempotent

    def test_clone_smaller_than_source_is_invalid(self, driver):
        driver.create_volume(vol(size=2))
        with pytest.raises(exception.InvalidInput, match="smaller"):
            driver.create_cloned_volume(vol("v2", size=1), vol(size=2))
        assert not os.path.exists(path_of(driver, "volume-v2"))

    def test_clone_of_missing_source(self, driver):
        with pytest.raises(exception.VolumeNotFound):
            driver.create_cloned_volume(vol("v2"), vol())

    def test_volume_from_missing_snapshot(self, driver):
        with pytest.raises(exception.SnapshotNotFound):
            driver.create_volume_from_snapshot(vol("v2"), snap())

    def test_no_temp_files_left_after_copies(self, driver):
        driver.create_volume(vol())
        driver.create_snapshot(snap())
        driver.create_cloned_volume(vol("v2"), vol())
        assert sorted(os.listdir(driver.directory)) == ["snapshot-s1", "volume-v1",
                                                        "volume-v2"]


class TestSparseCopy:
    """The fallback copy: same bytes, holes stay holes (ext4 here has no reflink)."""

    def _make_source(self, path):
        with open(path, "wb") as f:
            f.truncate(64 * MiB)
        write_at(path, 0, b"\x01" * 4096)                 # data at the start
        write_at(path, 10 * MiB + 17, os.urandom(70000))  # unaligned, spans blocks
        write_at(path, 30 * MiB, bytes(2 * MiB))          # allocated, but all zeros
        write_at(path, 64 * MiB - 5, b"tail!")            # data at the very end
        return path

    def test_bytes_equal_and_result_sparse(self, tmp_path):
        src = self._make_source(str(tmp_path / "src"))
        dst = str(tmp_path / "dst")
        method = filecopy.copy_file(src, dst, use_reflink=False)
        assert method == "sparse-copy"
        with open(src, "rb") as a, open(dst, "rb") as b:
            while True:
                x, y = a.read(4 * MiB), b.read(4 * MiB)
                assert x == y
                if not x:
                    break
        assert os.path.getsize(dst) == 64 * MiB
        # Data written: 4 KiB + ~70 KB + 5 bytes; the zero-filled 2 MiB is not copied.
        assert os.stat(dst).st_blocks * 512 < 512 * 1024
        assert os.stat(src).st_blocks * 512 >= 2 * MiB

    def test_fully_sparse_source(self, tmp_path):
        src = str(tmp_path / "src")
        with open(src, "wb") as f:
            f.truncate(GiB)
        dst = str(tmp_path / "dst")
        filecopy.copy_file(src, dst, use_reflink=False)
        assert os.path.getsize(dst) == GiB
        assert os.stat(dst).st_blocks == 0

    def test_auto_mode_falls_back_when_reflink_refused(self, tmp_path):
        src = self._make_source(str(tmp_path / "src"))
        dst = str(tmp_path / "dst")
        supported, _ = filecopy.probe_reflink(str(tmp_path))
        method = filecopy.copy_file(src, dst, use_reflink=True)
        assert method == ("reflink" if supported else "sparse-copy")
        assert read_at(dst, 64 * MiB - 5, 5) == b"tail!"

    def test_destination_must_not_exist(self, tmp_path):
        src = self._make_source(str(tmp_path / "src"))
        (tmp_path / "dst").write_bytes(b"precious")
        with pytest.raises(FileExistsError):
            filecopy.copy_file(src, str(tmp_path / "dst"), use_reflink=False)
        assert (tmp_path / "dst").read_bytes() == b"precious"


# --- capacity --------------------------------------------------------------------------------

class TestStats:

    def test_fields_and_consistency(self, tmp_path):
        driver = make_driver(tmp_path, reserved_percentage=7, max_over_subscription_ratio=3.5,
                             volume_backend_name="fast")
        stats = driver.get_volume_stats(refresh=True)
        assert stats["volume_backend_name"] == "fast"
        assert stats["vendor_name"] and stats["driver_version"] == LoopbackDriver.VERSION
        assert stats["storage_protocol"] == "local"
        (pool,) = stats["pools"]
        assert pool["pool_name"] == BACKEND
        assert 0 <= pool["free_capacity_gb"] <= pool["total_capacity_gb"]
        assert pool["reserved_percentage"] == 7
        assert pool["max_over_subscription_ratio"] == 3.5
        assert pool["thin_provisioning_support"] is True
        assert pool["thick_provisioning_support"] is False
        assert pool["provisioned_capacity_gb"] == 0
        assert driver.directory in pool["location_info"]

    def test_provisioned_counts_volumes_and_snapshots_and_cache(self, driver):
        driver.get_volume_stats(refresh=True)
        driver.create_volume(vol(size=2))
        driver.create_snapshot(snap(volume_size=2))
        foreign_file(driver, "not-ours.img", 5 * GiB)
        cached = driver.get_volume_stats()
        assert cached["pools"][0]["provisioned_capacity_gb"] == 0
        fresh = driver.get_volume_stats(refresh=True)["pools"][0]
        assert fresh["provisioned_capacity_gb"] == 4
        assert fresh["total_volumes"] == 1
        cached["pools"][0]["total_volumes"] = 99  # callers get copies
        assert driver.get_volume_stats()["pools"][0]["total_volumes"] == 1


# --- attach ----------------------------------------------------------------------------------

class TestAttach:

    def test_attach_uses_losetup_find_show(self, driver, losetup):
        driver.create_volume(vol())
        info = driver.initialize_connection(vol(), {"host": "node1"})
        path = path_of(driver, "volume-v1")
        assert info == {"driver_volume_type": "local",
                        "data": {"device_path": "/dev/loop40", "file_path": path}}
        assert losetup.commands("--find") == [("losetup", "--find", "--show", path)]

    def test_attach_reuses_existing_attachment(self, driver, losetup):
        driver.create_volume(vol())
        first = driver.initialize_connection(vol(), {})
        second = driver.initialize_connection(vol(), {})
        assert first == second
        assert len(losetup.commands("--find")) == 1

    def test_attach_missing_volume(self, driver):
        with pytest.raises(exception.VolumeNotFound):
            driver.initialize_connection(vol(), {})

    def test_attach_without_root_says_so(self, tmp_path, losetup):
        driver = make_driver(tmp_path, losetup, privileged=False)
        driver.create_volume(vol())
        with pytest.raises(exception.VolumeDriverException, match="needs root") as err:
            driver.initialize_connection(vol(), {})
        assert "loopback_attach = file" in str(err.value)
        assert losetup.commands("--find") == []

    def test_file_mode_hands_out_the_file(self, tmp_path, losetup):
        driver = make_driver(tmp_path, losetup, privileged=False, loopback_attach="file")
        driver.create_volume(vol())
        info = driver.initialize_connection(vol(), {})
        assert info["data"]["device_path"] == path_of(driver, "volume-v1")
        driver.terminate_connection(vol(), {})
        assert losetup.calls == []

    def test_terminate_detaches_and_is_idempotent(self, driver, losetup):
        driver.create_volume(vol())
        driver.initialize_connection(vol(), {})
        driver.terminate_connection(vol(), {})
        assert losetup.attached == {}
        driver.terminate_connection(vol(), None)
        assert len(losetup.commands("--detach")) == 1

    def test_detach_race_is_tolerated(self, driver, losetup):
        driver.create_volume(vol())
        driver.initialize_connection(vol(), {})
        real_execute = losetup.execute

        def vanish_then_detach(*cmd, **kw):
            if "--detach" in cmd:
                losetup.attached.clear()  # someone else detached it meanwhile
            return real_execute(*cmd, **kw)

        losetup.execute = vanish_then_detach
        driver.terminate_connection(vol(), {})

    def test_exports_are_noops_and_remove_export_detaches_leftovers(self, driver, losetup):
        driver.create_volume(vol())
        assert driver.create_export(None, vol(), {}) is None
        assert driver.ensure_export(None, vol()) is None
        driver.remove_export(None, vol())
        assert losetup.commands("--detach") == []
        driver.initialize_connection(vol(), {})
        driver.remove_export(None, vol())
        assert losetup.attached == {}


# --- manage existing -------------------------------------------------------------------------

class TestManageVolumes:

    def test_manage_renames_and_rounds_size_up(self, driver):
        foreign_file(driver, "disk.img", GiB + 1, b"hello")
        ref = {"source-name": "disk.img"}
        assert driver.manage_existing_get_size(vol(), ref) == 2
        assert driver.manage_existing(vol(), ref) is None
        assert os.listdir(driver.directory) == ["volume-v1"]
        assert read_at(path_of(driver, "volume-v1"), 0, 5) == b"hello"
        # A resumed flow asks again after the rename happened.
        assert driver.manage_existing_get_size(vol(), ref) == 2
        assert driver.manage_existing(vol(), ref) is None

    def test_exact_gib_is_not_rounded(self, driver):
        foreign_file(driver, "disk.img", GiB)
        assert driver.manage_existing_get_size(vol(), {"source-name": "disk.img"}) == 1

    @pytest.mark.parametrize("ref, reason", [
        ("disk.img", "must be a dict"),
        ({}, "'source-name'"),
        ({"source-id": "7"}, "cannot find files by 'source-id'"),
        ({"source-name": "disk.img", "pool": "x"}, "unknown key"),
        ({"source-name": "../etc/passwd"}, "cannot contain '/'"),
        ({"source-name": ".."}, "is not a file name"),
        ({"source-name": ".hidden"}, "hidden"),
        ({"source-name": ""}, "non-empty"),
        ({"source-name": 42}, "non-empty string"),
        ({"source-name": "absent.img"}, "no file named"),
    ])
    def test_bad_references(self, driver, ref, reason):
        for call in (driver.manage_existing, driver.manage_existing_get_size):
            with pytest.raises(exception.ManageExistingInvalidReference, match=reason):
                call(vol(), ref)

    def test_symlink_empty_and_attached_files_are_refused(self, driver, losetup, tmp_path):
        outside = tmp_path / "outside.img"
        outside.write_bytes(b"x" * 10)
        os.symlink(str(outside), path_of(driver, "link.img"))
        foreign_file(driver, "empty.img", 0)
        foreign_file(driver, "busy.img", GiB)
        losetup.attached["/dev/loop5"] = path_of(driver, "busy.img")
        for name, reason in (("link.img", "symbolic link"), ("empty.img", "empty"),
                             ("busy.img", "/dev/loop5")):
            with pytest.raises(exception.ManageExistingInvalidReference, match=reason):
                driver.manage_existing(vol(), {"source-name": name})
        assert sorted(os.listdir(driver.directory)) == ["busy.img", "empty.img", "link.img"]

    def test_our_own_names_are_already_managed(self, driver):
        driver.create_volume(vol("other"))
        with pytest.raises(exception.ManageExistingAlreadyManaged, match="volume-other"):
            driver.manage_existing(vol(), {"source-name": "volume-other"})
        with pytest.raises(exception.ManageExistingAlreadyManaged):
            driver.manage_existing_get_size(vol(), {"source-name": "snapshot-x"})

    def test_manage_onto_existing_volume_name_conflicts(self, driver):
        driver.create_volume(vol())
        foreign_file(driver, "disk.img", GiB)
        with pytest.raises(exception.Conflict, match="already exists"):
            driver.manage_existing(vol(), {"source-name": "disk.img"})
        assert os.path.exists(path_of(driver, "disk.img"))

    def test_unmanage_keeps_data_under_foreign_name_and_can_be_managed_again(self, driver):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), 0, b"keep me")
        driver.unmanage(vol())
        assert os.listdir(driver.directory) == ["unmanaged-volume-v1"]
        listed = driver.get_manageable_volumes([], None, None, None, None, None)
        assert [e["reference"] for e in listed] == [{"source-name": "unmanaged-volume-v1"}]
        assert listed[0]["safe_to_manage"] is True
        driver.manage_existing(vol("v9"), {"source-name": "unmanaged-volume-v1"})
        assert read_at(path_of(driver, "volume-v9"), 0, 7) == b"keep me"

    def test_unmanage_twice_and_name_collisions(self, driver):
        driver.create_volume(vol())
        driver.unmanage(vol())
        driver.unmanage(vol())  # nothing left to forget
        driver.create_volume(vol())
        driver.unmanage(vol())
        assert sorted(os.listdir(driver.directory)) == ["unmanaged-volume-v1",
                                                        "unmanaged-volume-v1-2"]

    def test_restore_managed_name_gives_the_file_its_name_back(self, driver):
        foreign_file(driver, "legacyB", GiB)
        write_at(path_of(driver, "legacyB"), 0, b"user data")
        source = driver.manage_existing_source(vol(), {"source-name": "legacyB"})
        assert source == {"source-name": "legacyB"}
        driver.manage_existing(vol(), {"source-name": "legacyB"})
        driver.restore_managed_name(vol(), source)
        assert os.listdir(driver.directory) == ["legacyB"]
        assert read_at(path_of(driver, "legacyB"), 0, 9) == b"user data"
        driver.restore_managed_name(vol(), source)      # idempotent
        assert os.listdir(driver.directory) == ["legacyB"]

    def test_restore_managed_name_taken_meanwhile_falls_back_to_unmanage(self, driver):
        foreign_file(driver, "legacyB", GiB)
        driver.manage_existing(vol(), {"source-name": "legacyB"})
        foreign_file(driver, "legacyB", GiB)
        driver.restore_managed_name(vol(), {"source-name": "legacyB"})
        assert sorted(os.listdir(driver.directory)) == ["legacyB", "unmanaged-volume-v1"]


class TestManageableVolumes:

    def _populate(self, driver, losetup, tmp_path):
        driver.create_volume(vol("mine"))
        foreign_file(driver, "b.img", 3 * GiB)
        foreign_file(driver, "a.img", GiB + 5)
        foreign_file(driver, "c.img", GiB)
        foreign_file(driver, "busy.img", GiB)
        foreign_file(driver, "volume-orphan", GiB)
        foreign_file(driver, "volume-mine@snap1", GiB)  # snapshot-like: not a volume
        os.mkdir(path_of(driver, "subdir"))
        os.symlink(str(tmp_path), path_of(driver, "link"))
        losetup.attached["/dev/loop8"] = path_of(driver, "busy.img")

    def test_listing_content(self, driver, losetup, tmp_path):
        self._populate(driver, losetup, tmp_path)
        listed = driver.get_manageable_volumes([vol("mine")], None, None, None, None, None)
        by_name = {e["reference"]["source-name"]: e for e in listed}
        assert sorted(by_name) == ["a.img", "b.img", "busy.img", "c.img", "link",
                                   "volume-orphan"]
        assert by_name["a.img"]["size"] == 2 and by_name["a.img"]["safe_to_manage"]
        assert by_name["a.img"]["reason_not_safe"] is None
        assert by_name["a.img"]["cinder_id"] is None
        assert "/dev/loop8" in by_name["busy.img"]["reason_not_safe"]
        assert not by_name["link"]["safe_to_manage"]
        assert "rename" in by_name["volume-orphan"]["reason_not_safe"]

    def test_sorting_and_paging(self, driver, losetup, tmp_path):
        self._populate(driver, losetup, tmp_path)
        names = lambda entries: [e["reference"]["source-name"] for e in entries]  # noqa: E731
        everything = driver.get_manageable_volumes([vol("mine")], None, None, None,
                                                   ["identifier"], ["asc"])
        assert names(everything) == ["a.img", "b.img", "busy.img", "c.img", "link",
                                     "volume-orphan"]
        by_size = driver.get_manageable_volumes([vol("mine")], None, None, None,
                                                ["size"], ["desc"])
        assert names(by_size)[:2] == ["b.img", "a.img"]
        assert names(by_size)[2:] == ["busy.img", "c.img", "volume-orphan", "link"]
        page = driver.get_manageable_volumes([vol("mine")], {"source-name": "b.img"}, 2, 1,
                                             ["identifier"], ["asc"])
        assert names(page) == ["c.img", "link"]

    @pytest.mark.parametrize("args, reason", [
        ((None, None, None, ["colour"], None), "unknown sort key"),
        ((None, None, None, ["size"], ["sideways"]), "unknown sort direction"),
        (({"source-name": "nope"}, None, None, None, None), "marker"),
        ((None, -1, None, None, None), "limit must be >= 0"),
        ((None, None, -1, None, None), "offset must be >= 0"),
    ])
    def test_bad_listing_arguments(self, driver, args, reason):
        with pytest.raises(exception.InvalidInput, match=reason):
            driver.get_manageable_volumes([], *args)


class TestManageSnapshots:

    def test_manage_snapshot_like_file(self, driver):
        driver.create_volume(vol())
        foreign_file(driver, "volume-v1@nightly", GiB + 1, b"snapdata")
        ref = {"source-name": "volume-v1@nightly"}
        assert driver.manage_existing_snapshot_get_size(snap(), ref) == 2
        driver.manage_existing_snapshot(snap(), ref)
        assert read_at(path_of(driver, "snapshot-s1"), 0, 8) == b"snapdata"
        driver.manage_existing_snapshot(snap(), ref)  # resumed

    def test_snapshot_of_another_volume_is_refused(self, driver):
        foreign_file(driver, "volume-other@x", GiB)
        with pytest.raises(exception.ManageExistingInvalidReference, match="not of volume v1"):
            driver.manage_existing_snapshot(snap(), {"source-name": "volume-other@x"})
        with pytest.raises(exception.ManageExistingInvalidReference, match="not of volume"):
            driver.manage_existing_snapshot_get_size(snap(), {"source-name": "volume-other@x"})

    def test_plain_foreign_file_can_become_a_snapshot(self, driver):
        foreign_file(driver, "golden.img", GiB)
        driver.manage_existing_snapshot(snap(), {"source-name": "golden.img"})
        assert os.listdir(driver.directory) == ["snapshot-s1"]

    def test_bad_snapshot_references(self, driver):
        with pytest.raises(exception.ManageExistingInvalidReference, match="no file named"):
            driver.manage_existing_snapshot(snap(), {"source-name": "volume-v1@gone"})
        with pytest.raises(exception.ManageExistingInvalidReference, match="source-id"):
            driver.manage_existing_snapshot_get_size(snap(), {"source-id": "1"})

    def test_restore_managed_snapshot_name(self, driver):
        driver.create_volume(vol())
        foreign_file(driver, "legacyS", GiB)
        driver.manage_existing_snapshot(snap(), {"source-name": "legacyS"})
        driver.restore_managed_snapshot_name(snap(volume_name="volume-v1"),
                                             {"source-name": "legacyS"})
        assert sorted(os.listdir(driver.directory)) == ["legacyS", "volume-v1"]

    def test_unmanage_snapshot_then_list_and_manage_again(self, driver):
        driver.create_volume(vol())
        write_at(path_of(driver, "volume-v1"), 0, b"v1 data")
        driver.create_snapshot(snap())
        driver.unmanage_snapshot(snap())
        assert sorted(os.listdir(driver.directory)) == ["volume-v1", "volume-v1@snapshot-s1"]
        listed = driver.get_manageable_snapshots([], None, None, None, None, None)
        assert listed == [{
            "reference": {"source-name": "volume-v1@snapshot-s1"}, "size": 1,
            "safe_to_manage": True, "reason_not_safe": None, "cinder_id": None,
            "extra_info": listed[0]["extra_info"],
            "source_reference": {"source-name": "volume-v1"}}]
        driver.manage_existing_snapshot(snap("s2"), {"source-name": "volume-v1@snapshot-s1"})
        assert read_at(path_of(driver, "snapshot-s2"), 0, 7) == b"v1 data"
        driver.unmanage_snapshot(snap("gone"))  # absent: nothing to do

    def test_snapshot_listing_marks_orphans_unsafe(self, driver):
        foreign_file(driver, "volume-gone@x", GiB)
        foreign_file(driver, "disk.img@y", GiB)
        listed = {e["reference"]["source-name"]: e
                  for e in driver.get_manageable_snapshots([], None, None, None, None, None)}
        assert "does not exist" in listed["volume-gone@x"]["reason_not_safe"]
        assert "not a managed volume" in listed["disk.img@y"]["reason_not_safe"]
        assert listed["disk.img@y"]["source_reference"] == {"source-name": "disk.img"}


# --- consistency groups ----------------------------------------------------------------------

GROUP = GroupView(id="g1")


class TestConsistencyGroups:

    def _members(self, driver, count=3):
        volumes = [vol("m%d" % i, group_id="g1") for i in range(count)]
        for index, volume in enumerate(volumes):
            driver.create_volume(volume)
            write_at(path_of(driver, volume.name), 0, b"member-%d" % index)
        return volumes

    def test_create_and_update_group(self, driver):
        assert driver.create_consistencygroup(None, GROUP) == {"status": "available"}
        volumes = self._members(driver, 2)
        assert driver.update_consistencygroup(None, GROUP, volumes, []) == (None, None, None)
        with pytest.raises(exception.InvalidVolume, match="elsewhere"):
            driver.update_consistencygroup(None, GROUP, [vol("elsewhere")], None)

    def test_cgsnapshot_covers_every_member_at_one_pass(self, driver):
        volumes = self._members(driver)
        snapshots = [snap("cs%d" % i, volume_id=v.id, group_snapshot_id="gs1")
                     for i, v in enumerate(volumes)]
        model, updates = driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"),
                                                  snapshots)
        assert model == {"status": "available"}
        assert updates == [{"id": s.id, "status": "available"} for s in snapshots]
        for index, volume in enumerate(volumes):
            write_at(path_of(driver, volume.name), 0, b"changed!!")
            assert read_at(path_of(driver, "snapshot-cs%d" % index), 0, 8) == \
                b"member-%d" % index

    def test_cgsnapshot_with_missing_member_leaves_nothing(self, driver):
        volumes = self._members(driver, 2)
        snapshots = [snap("cs0", volume_id=volumes[0].id), snap("cs1", volume_id="missing")]
        with pytest.raises(exception.VolumeNotFound):
            driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"), snapshots)
        assert sorted(os.listdir(driver.directory)) == ["volume-m0", "volume-m1"]

    def test_cgsnapshot_rerun_retakes_all_members(self, driver):
        volumes = self._members(driver, 2)
        snapshots = [snap("cs%d" % i, volume_id=v.id) for i, v in enumerate(volumes)]
        driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"), snapshots)
        write_at(path_of(driver, "volume-m0"), 0, b"second!!")
        driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"), snapshots)
        assert read_at(path_of(driver, "snapshot-cs0"), 0, 8) == b"second!!"

    def test_delete_cgsnapshot(self, driver):
        volumes = self._members(driver, 2)
        snapshots = [snap("cs%d" % i, volume_id=v.id) for i, v in enumerate(volumes)]
        driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"), snapshots)
        model, updates = driver.delete_cgsnapshot(None, GroupSnapshotView("gs1", "g1"),
                                                  snapshots)
        assert model == {"status": "deleted"}
        assert updates == [{"id": "cs0", "status": "deleted"},
                           {"id": "cs1", "status": "deleted"}]
        assert sorted(os.listdir(driver.directory)) == ["volume-m0", "volume-m1"]

    def test_delete_group_reports_per_volume(self, driver, losetup):
        volumes = self._members(driver, 3)
        losetup.attached["/dev/loop9"] = path_of(driver, "volume-m1")
        model, updates = driver.delete_consistencygroup(None, GROUP, volumes)
        assert model == {"status": "error"}
        assert updates == [{"id": "m0", "status": "deleted"},
                           {"id": "m1", "status": "available"},
                           {"id": "m2", "status": "deleted"}]
        assert os.listdir(driver.directory) == ["volume-m1"]
        losetup.attached.clear()
        model, updates = driver.delete_consistencygroup(None, GROUP, volumes)
        assert model == {"status": "deleted"}
        assert os.listdir(driver.directory) == []

    def test_delete_group_with_unusable_name_is_error_deleting(self, driver):
        model, updates = driver.delete_consistencygroup(None, GROUP, [vol("a/b")])
        assert model == {"status": "error_deleting"}
        assert updates == [{"id": "a/b", "status": "error_deleting"}]

    def test_group_from_cgsnapshot_pairs_by_snapshot_id(self, driver):
        volumes = self._members(driver, 2)
        snapshots = [snap("cs%d" % i, volume_id=v.id) for i, v in enumerate(volumes)]
        driver.create_cgsnapshot(None, GroupSnapshotView("gs1", "g1"), snapshots)
        targets = [vol("n1", snapshot_id="cs1"), vol("n0", size=2, snapshot_id="cs0")]
        model, updates = driver.create_consistencygroup_from_src(
            None, GroupView("g2"), targets, cgsnapshot=GroupSnapshotView("gs1", "g1"),
            snapshots=snapshots)
        assert model == {"status": "available"}
        assert updates == [{"id": "n1", "status": "available"},
                           {"id": "n0", "status": "available"}]
        assert read_at(path_of(driver, "volume-n1"), 0, 8) == b"member-1"
        assert read_at(path_of(driver, "volume-n0"), 0, 8) == b"member-0"
        assert os.path.getsize(path_of(driver, "volume-n0")) == 2 * GiB

    def test_group_from_source_group(self, driver):
        volumes = self._members(driver, 2)
        targets = [vol("c0"), vol("c1")]
        driver.create_consistencygroup_from_src(None, GroupView("g2"), targets,
                                                source_cg=GROUP, source_vols=volumes)
        assert read_at(path_of(driver, "volume-c1"), 0, 8) == b"member-1"

    def test_group_from_src_errors_create_nothing(self, driver):
        volumes = self._members(driver, 2)
        before = sorted(os.listdir(driver.directory))
        with pytest.raises(exception.InvalidInput, match="needs a group snapshot"):
            driver.create_consistencygroup_from_src(None, GroupView("g2"), [vol("x")])
        with pytest.raises(exception.InvalidInput, match="2 members"):
            driver.create_consistencygroup_from_src(None, GroupView("g2"), [vol("x")],
                                                    source_cg=GROUP, source_vols=volumes)
        with pytest.raises(exception.VolumeNotFound):
            driver.create_consistencygroup_from_src(
                None, GroupView("g2"), [vol("x"), vol("y")], source_cg=GROUP,
                source_vols=[volumes[0], vol("absent")])
        assert sorted(os.listdir(driver.directory)) == before


# --- without root ----------------------------------------------------------------------------

NON_ROOT_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests_dir!r})
    from tests.unit.test_loopback_driver import make_driver, vol, snap, write_at, read_at
    from blockmgr import exception
    from blockmgr.drivers.command import CommandRunner
    assert os.geteuid() != 0
    driver = make_driver({state!r}, runner=CommandRunner(), privileged=None)
    driver.create_volume(vol())
    path = os.path.join(driver.directory, "volume-v1")
    write_at(path, 0, b"as nobody")
    driver.create_snapshot(snap())
    driver.create_cloned_volume(vol("v2", size=2), vol())
    driver.extend_volume(vol(), 2)
    driver.get_volume_stats(refresh=True)
    driver.get_manageable_volumes([], None, None, None, None, None)
    try:
        driver.initialize_connection(vol(), {{}})
        raise SystemExit("attach as nobody should have failed")
    except exception.VolumeDriverException as exc:
        assert "needs root" in str(exc), exc
    driver.terminate_connection(vol(), None)
    for view in (vol(), vol("v2")):
        driver.delete_volume(view)
    assert read_at(os.path.join(driver.directory, "snapshot-s1"), 0, 9) == b"as nobody"
    driver.delete_snapshot(snap())
    print("ok")
""")


def _reachable_by_others(path: str) -> bool:
    """Every directory from / down to ``path`` lets other users through (``o+x``)."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the 'nobody' user")
def test_everything_but_attach_runs_without_root():
    """The real driver (real losetup listing) as uid nobody: only attaching needs root."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not _reachable_by_others(checkout):
        pytest.skip("the checkout %s is in a directory other users cannot enter, so the "
                    "'nobody' user cannot import the code under test" % checkout)
    # pytest's tmp_path is under a 0700 root-only directory; nobody needs its own.
    state = tempfile.mkdtemp(prefix="blockmgr-nonroot-")
    try:
        os.chown(state, 65534, 65534)
        tests_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        script = NON_ROOT_SCRIPT.format(tests_dir=tests_dir, state=state)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", script], capture_output=True, text=True, timeout=120,
            env={**os.environ, "HOME": state}, cwd=state)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith("ok")
    finally:
        shutil.rmtree(state)


# --- loop device bookkeeping -----------------------------------------------------------------

class ScriptedRunner(CommandRunner):
    """Answers each losetup call with the next scripted (stdout or exception)."""

    def __init__(self, *answers):
        super().__init__()
        self.answers = list(answers)
        self.calls = []

    def execute(self, *cmd, **kwargs):
        self.calls.append(cmd)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer, ""


class TestLoopDevices:

    def test_unparseable_listing_is_a_backend_error(self, tmp_path):
        devices = loopdev.LoopDevices(ScriptedRunner("not json"))
        with pytest.raises(exception.VolumeBackendAPIException, match="cannot parse"):
            devices.list_all()

    def test_attach_output_that_is_not_a_device(self, tmp_path):
        target = tmp_path / "f"
        target.write_bytes(b"x")
        devices = loopdev.LoopDevices(ScriptedRunner('{"loopdevices": []}', "garbage\n"))
        with pytest.raises(exception.VolumeBackendAPIException, match="instead of a device"):
            devices.attach(str(target))

    def test_matches_by_backing_path_when_device_numbers_differ(self, tmp_path):
        # btrfs: losetup's BACK-MAJ:MIN is not stat's st_dev; the path still identifies it.
        target = tmp_path / "f"
        target.write_bytes(b"x")
        listing = json.dumps({"loopdevices": [
            {"name": "/dev/loop1", "back-file": str(target), "back-ino": 1,
             "back-maj:min": "0:999"},
            {"name": "/dev/loop2", "back-file": str(target) + " (deleted)"},
            {"name": "/dev/loop3", "back-file": str(tmp_path / "other")}]})
        devices = loopdev.LoopDevices(ScriptedRunner(listing))
        assert devices.attached_to(str(target)) == ["/dev/loop1"]

    def test_detach_failure_other_than_gone_propagates(self, tmp_path):
        target = tmp_path / "f"
        target.write_bytes(b"x")
        listing = json.dumps({"loopdevices": [{"name": "/dev/loop1",
                                               "back-file": str(target)}]})
        busy = exception.CommandExecutionError(cmd="losetup --detach /dev/loop1", exit_code=1,
                                               stderr="Permission denied")
        devices = loopdev.LoopDevices(ScriptedRunner(listing, busy))
        with pytest.raises(exception.CommandExecutionError, match="Permission denied"):
            devices.detach_all(str(target))

    def test_missing_losetup_surfaces_as_command_error(self, tmp_path):
        missing = exception.CommandExecutionError(cmd="losetup", exit_code=None,
                                                  stderr="No such file or directory")
        driver = make_driver(tmp_path, ScriptedRunner(missing))
        driver.create_volume(vol())
        with pytest.raises(exception.CommandExecutionError):
            driver.delete_volume(vol())
        assert os.path.exists(path_of(driver, "volume-v1"))
