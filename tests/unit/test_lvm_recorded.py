"""LVM driver against a recorded lvm2: every command is captured at the subprocess boundary.

``processutils.execute`` (what the one chokepoint, CommandRunner, calls) is replaced by
:class:`FakeLVM`, a small model of lvm2's metadata behaviour: it records each command with the
environment it got and answers ``vgs``/``lvs`` from its state as lvm2's JSON report would. So
the real CommandRunner (LC_ALL=C, env, timeout) and the real command layer run; only the
process is simulated. This covers what this kernel cannot run: snapshots, thin pools, clones
and dd copies.
"""

from __future__ import annotations

import json
import uuid

import pytest
from oslo_concurrency import processutils
from oslo_config import cfg

from blockmgr import exception
from blockmgr.conf import backend as backend_conf
from blockmgr.drivers import command as command_mod
from blockmgr.drivers.lvm.driver import LVMDriver
from blockmgr.interface.objects import GroupSnapshotView, SnapshotView, VolumeView

GiB = 1024 ** 3
VG = "vg-test"
LVM_TOOLS = {"vgs", "lvs", "lvcreate", "lvremove", "lvrename", "lvextend", "lvchange",
             "lvconvert"}


def make_config(backend="lvm-1", **overrides):
    conf = cfg.ConfigOpts()
    conf.register_opts(backend_conf.GENERIC_OPTS + LVMDriver.list_opts(), group=backend)
    conf.set_override("volume_driver", "lvm", group=backend)
    conf(args=[], default_config_files=[])
    for key, value in overrides.items():
        conf.set_override(key, value, group=backend)
    return conf[backend]


def _size(text: str) -> int:
    units = {"g": GiB, "m": 1024 ** 2}
    return int(float(text[:-1]) * units[text[-1].lower()])


class FakeLVM:
    """Records commands; answers like lvm2 on a VG of ``vg_size`` bytes."""

    def __init__(self, vg_size=100 * GiB):
        self.calls: list[dict] = []
        self.vg_size = vg_size
        self.lvs: dict[str, dict] = {}
        self.vg_exists = True
        self.fail: dict[str, tuple[int, str]] = {}   # tool -> (exit code, stderr)
        self.merged: list[tuple[str, str]] = []       # (snapshot, origin) per merge

    # helpers for tests ------------------------------------------------------------------
    @property
    def commands(self) -> list[list[str]]:
        return [c["cmd"] for c in self.calls]

    def tools(self) -> list[str]:
        return [c[0] for c in self.commands]

    def add_lv(self, name, size, attr="-wi-a-----", origin="", pool_lv="", data_percent="",
               origin_size=None):
        self.lvs[name] = {"lv_name": name, "lv_size": str(size), "lv_attr": attr,
                          "origin": origin, "pool_lv": pool_lv, "data_percent": data_percent,
                          "origin_size": str(origin_size or ""), "lv_tags": "",
                          "lv_uuid": "AbCdEf-0000-1111-2222-3333-4444-%06d" % len(self.lvs)}

    # the execute replacement -------------------------------------------------------------
    def __call__(self, *cmd, env_variables=None, check_exit_code=None, process_input=None,
                 timeout=None):
        self.calls.append({"cmd": list(cmd), "env": dict(env_variables or {}),
                           "timeout": timeout})
        tool, args = cmd[0], list(cmd[1:])
        if tool in self.fail:
            code, err = self.fail[tool]
            raise processutils.ProcessExecutionError(exit_code=code, stderr=err,
                                                     cmd=" ".join(cmd))
        if tool == "dd":
            return "", "copied"
        if args[:2] == ["--driverloaded", "n"]:
            args = args[2:]
        return getattr(self, "_" + tool)(args)

    def _error(self, code, err):
        raise processutils.ProcessExecutionError(exit_code=code, stderr=err, cmd="lvm")

    def _report(self, kind, rows):
        return json.dumps({"report": [{kind: rows}]}), ""

    def _vgs(self, args):
        if not self.vg_exists:
            self._error(5, '  Volume group "%s" not found' % args[-1])
        used = sum(int(lv["lv_size"]) for lv in self.lvs.values() if not lv["pool_lv"])
        return self._report("vg", [{"vg_name": VG, "vg_size": str(self.vg_size),
                                    "vg_free": str(self.vg_size - used),
                                    "lv_count": str(len(self.lvs)), "vg_uuid": "x"}])

    def _lvs(self, args):
        assert args[-1] == VG
        return self._report("lv", sorted(self.lvs.values(), key=lambda r: r["lv_name"]))

    def _lvcreate(self, args):
        opts, positional, it = {}, [], iter(args)
        for arg in it:
            if arg in ("-n", "-L", "-V", "-l"):
                opts[arg] = next(it)
            elif arg.startswith("-"):
                opts[arg] = True
            else:
                positional.append(arg)
        target = positional[0]
        if "-T" in opts and "-V" not in opts:                     # thin pool
            name = target.split("/")[1]
            self.add_lv(name, self.vg_size * 95 // 100, attr="twi-a-tz--", data_percent="10.00")
            return "", ""
        name = opts["-n"]
        if name in self.lvs:
            self._error(5, '  Logical Volume "%s" already exists in volume group' % name)
        if "-s" in opts:
            origin = target.split("/")[1]
            if origin not in self.lvs:
                self._error(5, "origin not found")
            src = self.lvs[origin]
            if "-L" in opts:                                       # COW snapshot
                src["lv_attr"] = "o" + src["lv_attr"][1:]
                self.add_lv(name, _size(opts["-L"]), attr="swi-a-s---", origin=origin,
                            origin_size=src["lv_size"])
            else:                                                  # thin snapshot
                self.add_lv(name, int(src["lv_size"]), attr="Vwi-a-tz--", origin=origin,
                            pool_lv=src["pool_lv"], data_percent="0.00")
            return "", ""
        if "-V" in opts:
            self.add_lv(name, _size(opts["-V"]), attr="Vwi-a-tz--",
                        pool_lv=target.split("/")[1], data_percent="0.00")
        else:
            self.add_lv(name, _size(opts["-L"]))
        return "", ""

    def _lvremove(self, args):
        name = args[-1].split("/")[1]
        if name not in self.lvs:
            self._error(5, 'Failed to find logical volume "%s"' % args[-1])
        removed = self.lvs.pop(name)
        if removed["origin"] and removed["origin"] in self.lvs and "s" in removed["lv_attr"][0]:
            origin = self.lvs[removed["origin"]]
            if not any(lv["origin"] == removed["origin"] for lv in self.lvs.values()):
                origin["lv_attr"] = "-" + origin["lv_attr"][1:]
        return "", ""

    def _lvrename(self, args):
        vg, old, new = args
        self.lvs[new] = dict(self.lvs.pop(old), lv_name=new)
        return "", ""

    def _lvextend(self, args):
        self.lvs[args[-1].split("/")[1]]["lv_size"] = str(_size(args[args.index("-L") + 1]))
        return "", ""

    def _lvchange(self, args):
        if args[0] in ("--addtag", "--deltag"):
            row = self.lvs[args[-1].split("/")[1]]
            tags = [t for t in row["lv_tags"].split(",") if t and t != args[1]]
            if args[0] == "--addtag":
                tags.append(args[1])
            row["lv_tags"] = ",".join(tags)
        return "", ""

    def _lvconvert(self, args):
        """``--merge`` of a snapshot: the origin takes its data (``merged`` records which)
        and the snapshot LV is gone; an open origin defers it (lvm2 marks both merging)."""
        assert args[0] == "--merge"
        name = args[-1].split("/")[1]
        if name not in self.lvs:
            self._error(5, 'Failed to find logical volume "%s"' % args[-1])
        snap = self.lvs[name]
        origin = self.lvs[snap["origin"]]
        if origin["lv_attr"][5] == "o":
            snap["lv_attr"] = "S" + snap["lv_attr"][1:]
            origin["lv_attr"] = "O" + origin["lv_attr"][1:]
            return "", "Delaying merge since origin is open."
        self.merged.append((name, snap["origin"]))
        return self._lvremove(["-f", args[-1]])


@pytest.fixture
def fake_lvm(monkeypatch):
    fake = FakeLVM()
    monkeypatch.setattr(command_mod.processutils, "execute", fake)
    return fake


def make_driver(fake_lvm, **overrides):
    overrides.setdefault("volume_group", VG)
    driver = LVMDriver(make_config(**overrides), "lvm-1", host="node1@lvm-1")
    driver.do_setup(None)
    return driver


@pytest.fixture
def thick(fake_lvm):
    return make_driver(fake_lvm)


@pytest.fixture
def thin(fake_lvm):
    return make_driver(fake_lvm, lvm_type="thin")


def volume(size=1, **kw):
    return VolumeView(id=str(uuid.uuid4()), size=size, **kw)


def snapshot_of(vol):
    return SnapshotView(id=str(uuid.uuid4()), volume_id=vol.id, volume_size=vol.size,
                        volume_name=vol.name)


# --- the chokepoint contract -----------------------------------------------------------------

def test_every_command_gets_lc_all_c_the_full_environment_and_a_timeout(fake_lvm, monkeypatch):
    monkeypatch.setenv("BLOCKMGR_MARKER", "kept")
    driver = make_driver(fake_lvm, lvm_command_timeout=42)
    driver.create_volume(volume())
    assert fake_lvm.calls
    for call in fake_lvm.calls:
        assert call["env"]["LC_ALL"] == "C"
        assert call["env"]["BLOCKMGR_MARKER"] == "kept"
        assert "PATH" in call["env"]
        assert call["env"]["LVM_SUPPRESS_FD_WARNINGS"] == "1"
        assert call["timeout"] == 42


def test_driverloaded_false_adds_the_flag_to_every_lvm_command(fake_lvm):
    driver = make_driver(fake_lvm, lvm_driverloaded=False)
    vol = volume(2)
    driver.create_volume(vol)
    driver.extend_volume(vol, 3)
    driver.manage_existing(volume(), {"source-name": vol.name})
    driver.get_volume_stats(refresh=True)
    driver.get_manageable_volumes([], None, None, None, None, None)
    assert set(fake_lvm.tools()) >= {"vgs", "lvs", "lvcreate", "lvextend", "lvrename"}
    for cmd in fake_lvm.commands:
        assert cmd[1:3] == ["--driverloaded", "n"], cmd
    create = next(c for c in fake_lvm.commands if c[0] == "lvcreate")
    assert create == ["lvcreate", "--driverloaded", "n", "-an", "-Zn", "-n", vol.name,
                      "-L", "2g", VG]


def test_driverloaded_true_never_adds_the_flag(fake_lvm, thick):
    thick.create_volume(volume())
    assert all("--driverloaded" not in cmd for cmd in fake_lvm.commands)
    create = next(c for c in fake_lvm.commands if c[0] == "lvcreate")
    assert "-an" not in create and "-Zn" not in create


def test_lvm_conf_file_sets_lvm_system_dir(fake_lvm, tmp_path):
    conf_file = tmp_path / "lvm.conf"
    conf_file.write_text("")
    make_driver(fake_lvm, lvm_conf_file=str(conf_file))
    assert all(c["env"]["LVM_SYSTEM_DIR"] == str(tmp_path) for c in fake_lvm.calls)


@pytest.mark.parametrize("name,exists", [("lvm.conf", False), ("other.conf", True)])
def test_bad_lvm_conf_file_is_a_configuration_error(fake_lvm, tmp_path, name, exists):
    path = tmp_path / name
    if exists:
        path.write_text("")
    with pytest.raises(exception.ConfigurationError, match="lvm_conf_file"):
        make_driver(fake_lvm, lvm_conf_file=str(path))


def test_command_failure_is_typed_with_exit_code_and_stderr(fake_lvm, thick):
    fake_lvm.fail["lvcreate"] = (3, "Insufficient free space")
    with pytest.raises(exception.VolumeBackendAPIException,
                       match="exit code 3: Insufficient free space"):
        thick.create_volume(volume())


# --- setup -----------------------------------------------------------------------------------

def test_missing_vg_is_a_configuration_error(fake_lvm):
    fake_lvm.vg_exists = False
    with pytest.raises(exception.ConfigurationError, match="volume group 'vg-test' does not"):
        make_driver(fake_lvm)


def test_missing_lvm_tools_make_the_backend_unavailable(fake_lvm):
    fake_lvm.fail["vgs"] = (None, "No such file or directory: 'vgs'")
    with pytest.raises(exception.BackendUnavailable):
        make_driver(fake_lvm)


def test_invalid_volume_group_name_is_a_configuration_error(fake_lvm):
    with pytest.raises(exception.ConfigurationError, match="volume_group"):
        LVMDriver(make_config(volume_group="--all"), "lvm-1")
    assert fake_lvm.calls == []


def test_thin_setup_creates_the_pool_once(fake_lvm):
    make_driver(fake_lvm, lvm_type="thin")
    pool_cmds = [c for c in fake_lvm.commands if c[0] == "lvcreate"]
    assert pool_cmds == [["lvcreate", "-T", "-l", "95%FREE", VG + "/" + VG + "-pool"]]
    make_driver(fake_lvm, lvm_type="thin")
    assert len([c for c in fake_lvm.commands if c[0] == "lvcreate"]) == 1


def test_thin_setup_refuses_a_pool_name_taken_by_a_plain_lv(fake_lvm):
    fake_lvm.add_lv(VG + "-pool", GiB)
    with pytest.raises(exception.ConfigurationError, match="not a thin pool"):
        make_driver(fake_lvm, lvm_type="thin")


# --- volumes ---------------------------------------------------------------------------------

def test_thin_volume_is_created_in_the_pool(fake_lvm, thin):
    vol = volume(3)
    thin.create_volume(vol)
    assert fake_lvm.commands[-1] == ["lvcreate", "-T", "-V", "3g", "-n", vol.name,
                                     VG + "/" + VG + "-pool"]


def test_create_volume_retry_finds_the_lv_and_succeeds(fake_lvm, thick):
    vol = volume(2)
    thick.create_volume(vol)
    thick.create_volume(vol)
    assert fake_lvm.lvs[vol.name]["lv_size"] == str(2 * GiB)


def test_create_volume_over_an_lv_of_another_size_fails(fake_lvm, thick):
    vol = volume(2)
    fake_lvm.add_lv(vol.name, GiB)
    with pytest.raises(exception.VolumeBackendAPIException, match="already exists"):
        thick.create_volume(vol)


def test_delete_volume_wipes_thick_then_removes(fake_lvm, thick):
    vol = volume(1)
    thick.create_volume(vol)
    thick.delete_volume(vol)
    dd = next(c for c in fake_lvm.commands if c[0] == "dd")
    assert dd[1:3] == ["if=/dev/zero", "of=/dev/%s/%s" % (VG, vol.name)]
    assert "count=%d" % GiB in dd and "iflag=count_bytes" in dd
    assert fake_lvm.commands[-1] == ["lvremove", "-f", "%s/%s" % (VG, vol.name)]
    assert vol.name not in fake_lvm.lvs


def test_delete_volume_without_wipe_when_volume_clear_none(fake_lvm):
    driver = make_driver(fake_lvm, volume_clear="none")
    vol = volume()
    driver.create_volume(vol)
    driver.delete_volume(vol)
    assert "dd" not in fake_lvm.tools()


def test_delete_absent_volume_succeeds_without_removing_anything(fake_lvm, thick):
    thick.delete_volume(volume())
    assert "lvremove" not in fake_lvm.tools()


def test_delete_thick_origin_with_snapshot_is_busy_and_deletes_nothing(fake_lvm, thick):
    vol = volume()
    thick.create_volume(vol)
    thick.create_snapshot(snapshot_of(vol))
    with pytest.raises(exception.VolumeIsBusy):
        thick.delete_volume(vol)
    assert vol.name in fake_lvm.lvs
    assert "lvremove" not in fake_lvm.tools() and "dd" not in fake_lvm.tools()


def test_delete_thin_origin_keeps_its_independent_thin_snapshot(fake_lvm, thin):
    vol = volume()
    thin.create_volume(vol)
    snap = snapshot_of(vol)
    thin.create_snapshot(snap)
    thin.delete_volume(vol)
    assert vol.name not in fake_lvm.lvs and "_snapshot-" + snap.id in fake_lvm.lvs
    assert "dd" not in fake_lvm.tools()        # thin volumes are never wiped


def test_extend(fake_lvm, thick):
    vol = volume(1)
    thick.create_volume(vol)
    thick.extend_volume(vol, 4)
    assert fake_lvm.commands[-1] == ["lvextend", "-L", "4g", "%s/%s" % (VG, vol.name)]
    thick.extend_volume(vol, 4)             # already that size: nothing to do
    assert fake_lvm.commands[-1][0] == "lvs"
    with pytest.raises(exception.InvalidInput, match="shrink"):
        thick.extend_volume(vol, 2)


def test_extend_thick_origin_deactivates_around_lvextend(fake_lvm, thick):
    vol = volume(1)
    thick.create_volume(vol)
    thick.create_snapshot(snapshot_of(vol))
    thick.extend_volume(vol, 2)
    path = "%s/%s" % (VG, vol.name)
    assert fake_lvm.commands[-3:] == [["lvchange", "-an", path], ["lvextend", "-L", "2g", path],
                                      ["lvchange", "-ay", "-K", path]]


def test_extend_missing_lv_is_a_backend_error(fake_lvm, thick):
    with pytest.raises(exception.VolumeBackendAPIException, match="does not exist"):
        thick.extend_volume(volume(), 2)


# --- snapshots, clones -----------------------------------------------------------------------

def test_thick_snapshot_is_cow_as_large_as_the_origin(fake_lvm, thick):
    vol = volume(3)
    thick.create_volume(vol)
    snap = snapshot_of(vol)
    thick.create_snapshot(snap)
    assert fake_lvm.commands[-1] == ["lvcreate", "-s", "-n", "_snapshot-" + snap.id,
                                     "-L", "3g", "%s/%s" % (VG, vol.name)]
    thick.create_snapshot(snap)     # retry: found, nothing created
    assert fake_lvm.commands[-1][0] == "lvs"


def test_thin_snapshot_has_no_size_and_no_activation_skip(fake_lvm, thin):
    vol = volume(3)
    thin.create_volume(vol)
    snap = snapshot_of(vol)
    thin.create_snapshot(snap)
    assert fake_lvm.commands[-1] == ["lvcreate", "-s", "-n", "_snapshot-" + snap.id, "-kn",
                                     "%s/%s" % (VG, vol.name)]


def test_snapshot_with_driverloaded_false_is_inactive_and_not_zeroed_flagless(fake_lvm):
    driver = make_driver(fake_lvm, lvm_driverloaded=False)
    vol = volume()
    driver.create_volume(vol)
    driver.create_snapshot(snapshot_of(vol))
    create = fake_lvm.commands[-1]
    assert create[:5] == ["lvcreate", "--driverloaded", "n", "-an", "-s"]
    assert "-Zn" not in create        # lvm2 rejects --zero with snapshots


def test_snapshot_of_a_missing_volume_fails_and_creates_nothing(fake_lvm, thick):
    with pytest.raises(exception.VolumeBackendAPIException, match="does not exist"):
        thick.create_snapshot(snapshot_of(volume()))
    assert "lvcreate" not in fake_lvm.tools()


def test_snapshot_name_taken_by_another_lv_fails(fake_lvm, thick):
    vol = volume()
    thick.create_volume(vol)
    snap = snapshot_of(vol)
    fake_lvm.add_lv("_snapshot-" + snap.id, GiB)
    with pytest.raises(exception.VolumeBackendAPIException, match="not a snapshot of"):
        thick.create_snapshot(snap)


def test_delete_snapshot_idempotent(fake_lvm, thick):
    vol = volume()
    thick.create_volume(vol)
    snap = snapshot_of(vol)
    thick.create_snapshot(snap)
    thick.delete_snapshot(snap)
    thick.delete_snapshot(snap)
    assert [c for c in fake_lvm.commands if c[0] == "lvremove"] == [
        ["lvremove", "-f", "%s/_snapshot-%s" % (VG, snap.id)]]
    thick.delete_volume(vol)        # no longer an origin: deletable


def test_thick_volume_from_snapshot_creates_and_copies(fake_lvm, thick):
    vol = volume(1)
    thick.create_volume(vol)
    snap = snapshot_of(vol)
    thick.create_snapshot(snap)
    new = volume(2)
    thick.create_volume_from_snapshot(new, snap)
    assert ["lvcreate", "-n", new.name, "-L", "2g", VG] in fake_lvm.commands
    dd = fake_lvm.commands[-1]
    assert dd[:3] == ["dd", "if=/dev/%s/_snapshot-%s" % (VG, snap.id),
                      "of=/dev/%s/%s" % (VG, new.name)]
    assert "count=%d" % GiB in dd          # the snapshot's data size, not its COW size
    assert "conv=fdatasync,notrunc" in dd


def test_failed_copy_removes_the_new_volume(fake_lvm, thick):
    vol = volume(1)
    thick.create_volume(vol)
    snap = snapshot_of(vol)
    thick.create_snapshot(snap)
    fake_lvm.fail["dd"] = (1, "Input/output error")
    new = volume(1)
    with pytest.raises(exception.VolumeBackendAPIException, match="Input/output error"):
        thick.create_volume_from_snapshot(new, snap)
    assert new.name not in fake_lvm.lvs


def test_thin_volume_from_snapshot_is_a_thin_snapshot_grown(fake_lvm, thin):
    vol = volume(1)
    thin.create_volume(vol)
    snap = snapshot_of(vol)
    thin.create_snapshot(snap)
    new = volume(3)
    thin.create_volume_from_snapshot(new, snap)
    assert fake_lvm.commands[-2] == ["lvcreate", "-s", "-n", new.name, "-kn",
                                     "%s/_snapshot-%s" % (VG, snap.id)]
    assert fake_lvm.commands[-1] == ["lvextend", "-L", "3g", "%s/%s" % (VG, new.name)]
    assert "dd" not in fake_lvm.tools()
    thin.create_volume_from_snapshot(new, snap)   # retry: found, nothing new
    assert fake_lvm.commands[-1][0] == "lvs"


def test_volume_from_snapshot_smaller_than_source_is_refused(fake_lvm, thin):
    vol = volume(2)
    thin.create_volume(vol)
    snap = snapshot_of(vol)
    thin.create_snapshot(snap)
    with pytest.raises(exception.InvalidInput, match="smaller"):
        thin.create_volume_from_snapshot(volume(1), snap)


def test_thin_clone_is_a_thin_snapshot_of_the_source(fake_lvm, thin):
    src = volume(1)
    thin.create_volume(src)
    clone = volume(1)
    thin.create_cloned_volume(clone, src)
    assert fake_lvm.commands[-1] == ["lvcreate", "-s", "-n", clone.name, "-kn",
                                     "%s/%s" % (VG, src.name)]


def test_thick_clone_copies_from_a_temporary_snapshot_always_removed(fake_lvm, thick):
    src = volume(1)
    thick.create_volume(src)
    clone = volume(2)
    thick.create_cloned_volume(clone, src)
    temp = "_clone-snap-" + clone.id
    cmds = fake_lvm.commands
    assert ["lvcreate", "-s", "-n", temp, "-L", "1g", "%s/%s" % (VG, src.name)] in cmds
    dd = next(c for c in cmds if c[0] == "dd")
    assert dd[1:3] == ["if=/dev/%s/%s" % (VG, temp), "of=/dev/%s/%s" % (VG, clone.name)]
    assert cmds[-1] == ["lvremove", "-f", "%s/%s" % (VG, temp)]
    assert temp not in fake_lvm.lvs and clone.name in fake_lvm.lvs
    thick.delete_volume(src)         # the temporary snapshot no longer pins the source


def test_thick_clone_failure_removes_the_clone_and_the_temporary_snapshot(fake_lvm, thick):
    src = volume(1)
    thick.create_volume(src)
    fake_lvm.fail["dd"] = (1, "No space left on device")
    clone = volume(1)
    with pytest.raises(exception.VolumeBackendAPIException):
        thick.create_cloned_volume(clone, src)
    assert set(fake_lvm.lvs) == {src.name}


def test_data_operations_are_unsupported_without_device_mapper(fake_lvm):
    driver = make_driver(fake_lvm, lvm_driverloaded=False)
    src = volume()
    driver.create_volume(src)
    before = len(fake_lvm.calls)
    with pytest.raises(exception.Unsupported, match="device-mapper"):
        driver.create_cloned_volume(volume(), src)
    for call in (lambda: driver.create_export(None, src, {}),
                 lambda: driver.initialize_connection(src, {})):
        with pytest.raises(exception.Unsupported):
            call()
    assert all(c[0] == "lvs" for c in fake_lvm.commands[before:])


# --- exports ---------------------------------------------------------------------------------

def test_local_connection_info_and_no_op_teardown(fake_lvm, thick):
    vol = volume()
    thick.create_volume(vol)
    assert thick.create_export(None, vol, {}) is None
    assert fake_lvm.commands[-1] == ["lvchange", "-ay", "-K", "%s/%s" % (VG, vol.name)]
    assert thick.initialize_connection(vol, {}) == {
        "driver_volume_type": "local", "data": {"device_path": "/dev/%s/%s" % (VG, vol.name)}}
    count = len(fake_lvm.calls)
    assert thick.terminate_connection(vol, {}) is None
    assert thick.remove_export(None, vol) is None
    assert len(fake_lvm.calls) == count


# --- manage existing -------------------------------------------------------------------------

@pytest.mark.parametrize("ref", [
    {"source-name": "--force"}, {"source-name": "-an"}, {"source-name": "../x"},
    {"source-name": "a/b"}, {"source-name": "/dev/sda"}, {"source-name": ".."},
    {"source-name": "."}, {"source-name": ""}, {"source-name": "snapshot1"},
    {"source-name": "x_tmeta"}, {"source-name": "a b"}, {"source-name": "x" * 128},
    {"source-name": 5}, {"source-name": None}, {"source-id": "../x"},
    {"source-id": str(uuid.uuid4())}, {"other": "x"}, {}, None, "lv1", ["lv1"],
])
def test_bad_references_raise_and_run_nothing(fake_lvm, thick, ref):
    fake_lvm.calls.clear()
    for call in (lambda: thick.manage_existing(volume(), ref),
                 lambda: thick.manage_existing_get_size(volume(), ref),
                 lambda: thick.manage_existing_snapshot(snapshot_of(volume()), ref),
                 lambda: thick.manage_existing_snapshot_get_size(snapshot_of(volume()), ref)):
        with pytest.raises(exception.ManageExistingInvalidReference) as info:
            call()
        assert info.value.msg
    assert fake_lvm.calls == []


def test_manage_existing_renames_and_get_size_rounds_up(fake_lvm, thick):
    fake_lvm.add_lv("legacy", GiB + 4 * 1024 ** 2)
    vol = volume(2)
    assert thick.manage_existing_get_size(vol, {"source-name": "legacy"}) == 2
    assert thick.manage_existing(vol, {"source-name": "legacy"}) is None
    assert fake_lvm.commands[-1] == ["lvrename", VG, "legacy", vol.name]
    # a retry of the same manage finds the LV renamed and succeeds
    assert thick.manage_existing(vol, {"source-name": vol.name}) is None
    with pytest.raises(exception.ManageExistingInvalidReference, match="no such LV"):
        thick.manage_existing_get_size(vol, {"source-name": "legacy"})


def test_manage_existing_by_lv_uuid(fake_lvm, thick):
    fake_lvm.add_lv("legacy", GiB)
    lv_uuid = fake_lvm.lvs["legacy"]["lv_uuid"]
    vol = volume()
    thick.manage_existing(vol, {"source-id": lv_uuid})
    assert vol.name in fake_lvm.lvs
    with pytest.raises(exception.ManageExistingInvalidReference, match="different LVs"):
        thick.manage_existing(volume(), {"source-name": vol.name,
                                         "source-id": "AbCdEf-0000-1111-2222-3333-4444-999999"})


@pytest.mark.parametrize("attr,origin,reason", [
    ("twi-a-tz--", "", "not a plain volume"),
    ("swi-a-s---", "x", "not a plain volume"),
    ("-wi-ao----", "", "open"),
])
def test_manage_existing_refuses_pools_snapshots_and_open_lvs(fake_lvm, thick, attr, origin,
                                                              reason):
    fake_lvm.add_lv("x", GiB)
    fake_lvm.add_lv("candidate", GiB, attr=attr, origin=origin)
    with pytest.raises(exception.ManageExistingInvalidReference, match=reason):
        thick.manage_existing(volume(), {"source-name": "candidate"})
    assert "lvrename" not in fake_lvm.tools()


def test_manage_existing_refuses_when_the_target_name_is_taken(fake_lvm, thick):
    vol = volume()
    fake_lvm.add_lv("legacy", GiB)
    fake_lvm.add_lv(vol.name, GiB)
    with pytest.raises(exception.ManageExistingInvalidReference, match="already exists"):
        thick.manage_existing(vol, {"source-name": "legacy"})


def test_manage_source_resolves_a_source_id_to_the_lv_name_before_the_rename(fake_lvm, thick):
    fake_lvm.add_lv("legacy", GiB)
    lv_uuid = fake_lvm.lvs["legacy"]["lv_uuid"]
    vol = volume()
    fake_lvm.calls.clear()
    assert thick.manage_existing_source(vol, {"source-id": lv_uuid}) == {"source-name": "legacy"}
    assert "lvrename" not in fake_lvm.tools()
    with pytest.raises(exception.ManageExistingInvalidReference):
        thick.manage_existing_source(vol, {"source-name": "missing"})


def test_restore_managed_name_renames_back_and_is_idempotent(fake_lvm, thick):
    fake_lvm.add_lv("legacy", GiB)
    vol = volume()
    source = thick.manage_existing_source(vol, {"source-name": "legacy"})
    thick.manage_existing(vol, {"source-name": "legacy"})
    thick.restore_managed_name(vol, source)
    assert fake_lvm.commands[-1] == ["lvrename", VG, vol.name, "legacy"]
    assert "legacy" in fake_lvm.lvs and vol.name not in fake_lvm.lvs
    fake_lvm.calls.clear()
    thick.restore_managed_name(vol, source)          # again: nothing bound, nothing run
    thick.restore_managed_name(volume(), source)     # never renamed
    assert "lvrename" not in fake_lvm.tools()


def test_restore_managed_name_never_takes_a_name_in_use(fake_lvm, thick):
    fake_lvm.add_lv("legacy", GiB)
    vol = volume()
    thick.manage_existing(vol, {"source-name": "legacy"})
    fake_lvm.add_lv("legacy", 2 * GiB)               # someone created it meanwhile
    thick.restore_managed_name(vol, {"source-name": "legacy"})
    assert fake_lvm.lvs["legacy"]["lv_size"] == str(2 * GiB)
    assert fake_lvm.commands[-1] == ["lvrename", VG, vol.name, "unmanaged-" + vol.name]
    assert vol.name not in fake_lvm.lvs


def test_restore_managed_snapshot_name(fake_lvm, thick):
    vol = volume()
    thick.create_volume(vol)
    fake_lvm.add_lv("mine", GiB, attr="swi-a-s---", origin=vol.name, origin_size=GiB)
    snap = snapshot_of(vol)
    source = thick.manage_existing_snapshot_source(snap, {"source-name": "mine"})
    thick.manage_existing_snapshot(snap, {"source-name": "mine"})
    thick.restore_managed_snapshot_name(snap, source)
    assert "mine" in fake_lvm.lvs and "_snapshot-" + snap.id not in fake_lvm.lvs


def test_unmanage_runs_nothing(fake_lvm, thick):
    fake_lvm.calls.clear()
    vol = volume()
    assert thick.unmanage(vol) is None
    assert thick.unmanage_snapshot(snapshot_of(vol)) is None
    assert fake_lvm.calls == []


def test_manage_existing_snapshot_checks_the_origin(fake_lvm, thick):
    vol, other = volume(), volume()
    for v in (vol, other):
        thick.create_volume(v)
    fake_lvm.add_lv("backup", GiB, attr="swi-a-s---", origin=other.name, origin_size=GiB)
    snap = snapshot_of(vol)
    with pytest.raises(exception.ManageExistingInvalidReference, match="not of the snapshot"):
        thick.manage_existing_snapshot(snap, {"source-name": "backup"})
    with pytest.raises(exception.ManageExistingInvalidReference, match="not a snapshot"):
        thick.manage_existing_snapshot(snap, {"source-name": other.name})
    fake_lvm.add_lv("mine", 256 * 1024 ** 2, attr="swi-a-s---", origin=vol.name,
                    origin_size=GiB + 1)
    assert thick.manage_existing_snapshot_get_size(snap, {"source-name": "mine"}) == 2
    thick.manage_existing_snapshot(snap, {"source-name": "mine"})
    assert fake_lvm.commands[-1] == ["lvrename", VG, "mine", "_snapshot-" + snap.id]


# --- manageable listings ---------------------------------------------------------------------

def test_manageable_volumes_exclude_ours_pools_snapshots_and_internal(fake_lvm, thin):
    ours, unmanaged = volume(), volume()
    for v in (ours, unmanaged):
        thin.create_volume(v)
    snap = snapshot_of(ours)
    thin.create_snapshot(snap)
    fake_lvm.add_lv("foreign", 3 * GiB - 1)
    fake_lvm.add_lv("busy", GiB, attr="-wi-ao----")
    fake_lvm.add_lv("_clone-snap-" + str(uuid.uuid4()), GiB, attr="swi-a-s---", origin="busy")
    entries = thin.get_manageable_volumes([ours], None, None, None, ["identifier"], ["asc"])
    by_name = {e["reference"]["source-name"]: e for e in entries}
    assert set(by_name) == {"busy", "foreign", unmanaged.name}
    assert by_name["foreign"]["size"] == 3 and by_name["foreign"]["safe_to_manage"]
    assert by_name["busy"]["reason_not_safe"] == "volume in use"
    assert by_name[unmanaged.name]["safe_to_manage"]
    assert all(e["cinder_id"] is None for e in entries)

    snaps = thin.get_manageable_snapshots([], None, None, None, None, None)
    assert [e["reference"] for e in snaps] == [{"source-name": "_snapshot-" + snap.id}]
    assert snaps[0]["source_reference"] == {"source-name": ours.name}
    assert thin.get_manageable_snapshots([snap], None, None, None, None, None) == []


def test_manageable_listing_sorts_and_pages(fake_lvm, thick):
    for name, size in (("b", 2 * GiB), ("a", 3 * GiB), ("c", GiB), ("d", 2 * GiB)):
        fake_lvm.add_lv(name, size)

    def names(**kw):
        args = dict(marker=None, limit=None, offset=None, sort_keys=None, sort_dirs=None)
        args.update(kw)
        return [e["reference"]["source-name"] for e in thick.get_manageable_volumes(
            [], args["marker"], args["limit"], args["offset"], args["sort_keys"],
            args["sort_dirs"])]

    assert names() == ["a", "b", "c", "d"]
    assert names(sort_keys=["size"]) == ["c", "b", "d", "a"]
    assert names(sort_keys=["size"], sort_dirs=["desc"]) == ["a", "b", "d", "c"]
    assert names(sort_keys=["size", "identifier"], sort_dirs=["asc", "desc"]) == \
        ["c", "d", "b", "a"]
    assert names(marker={"source-name": "b"}, limit=1) == ["c"]
    assert names(offset=1, limit=2) == ["b", "c"]
    assert names(offset=10) == []
    for bad in (dict(sort_keys=["name"]), dict(sort_dirs=["up"]),
                dict(marker={"source-name": "zz"}), dict(limit=-1)):
        with pytest.raises(exception.InvalidInput):
            names(**bad)


# --- stats -----------------------------------------------------------------------------------

def test_thick_stats_from_vgs_only_and_cached(fake_lvm, thick):
    thick.create_volume(volume(10))
    fake_lvm.calls.clear()
    stats = thick.get_volume_stats(refresh=True)
    assert fake_lvm.tools() == ["vgs"]
    pool = stats["pools"][0]
    assert pool["total_capacity_gb"] == 100 and pool["free_capacity_gb"] == 90
    assert pool["provisioned_capacity_gb"] == 10 and pool["total_volumes"] == 1
    assert pool["thick_provisioning_support"] and not pool["thin_provisioning_support"]
    assert stats["storage_protocol"] == "local" and stats["volume_backend_name"] == "lvm-1"
    fake_lvm.calls.clear()
    stats["pools"][0]["total_capacity_gb"] = -1           # callers get a copy
    assert thick.get_volume_stats()["pools"][0]["total_capacity_gb"] == 100
    assert fake_lvm.calls == []                            # served from the cache


def test_thin_stats_use_the_pool_and_count_only_its_lvs(fake_lvm, thin):
    thin.create_volume(volume(50))
    thin.create_volume(volume(100))
    fake_lvm.add_lv("outside", GiB)
    pool = thin.get_volume_stats(refresh=True)["pools"][0]
    assert pool["total_capacity_gb"] == 95
    assert pool["free_capacity_gb"] == 85.5               # 10 % of the pool is used
    assert pool["provisioned_capacity_gb"] == 150 and pool["total_volumes"] == 2
    assert pool["thin_provisioning_support"] and not pool["thick_provisioning_support"]


def test_stats_of_a_vanished_vg_report_the_backend_unavailable(fake_lvm, thick):
    fake_lvm.vg_exists = False
    with pytest.raises(exception.BackendUnavailable, match="does not exist"):
        thick.get_volume_stats(refresh=True)


# --- consistency groups ----------------------------------------------------------------------

def test_cgsnapshot_snapshots_every_member(fake_lvm, thick):
    members = [volume() for _ in range(3)]
    for m in members:
        thick.create_volume(m)
    snaps = [snapshot_of(m) for m in members]
    cgsnap = GroupSnapshotView(id=str(uuid.uuid4()), group_id="g")
    model, updates = thick.create_cgsnapshot(None, cgsnap, snaps)
    assert model == {"status": "available"}
    assert {u["id"] for u in updates} == {s.id for s in snaps}
    assert all("_snapshot-" + s.id in fake_lvm.lvs for s in snaps)


def test_cgsnapshot_failure_removes_the_snapshots_already_taken(fake_lvm, thick):
    members = [volume() for _ in range(2)]
    thick.create_volume(members[0])           # the second member's LV is missing
    snaps = [snapshot_of(m) for m in members]
    model, updates = thick.create_cgsnapshot(None, GroupSnapshotView(id="c", group_id="g"),
                                             snaps)
    assert model == {"status": "error"}
    assert all(u["status"] == "error" for u in updates)
    assert not any(name.startswith("_snapshot-") for name in fake_lvm.lvs)


def test_group_from_snapshots_and_from_volumes(fake_lvm, thin):
    members = [volume() for _ in range(2)]
    for m in members:
        thin.create_volume(m)
    snaps = [snapshot_of(m) for m in members]
    thin.create_cgsnapshot(None, GroupSnapshotView(id="c", group_id="g"), snaps)
    copies = [volume(snapshot_id=s.id) for s in snaps]
    assert thin.create_consistencygroup_from_src(None, None, copies, cgsnapshot=object(),
                                                 snapshots=snaps) == (None, None)
    clones = [volume(source_volid=m.id) for m in members]
    thin.create_consistencygroup_from_src(None, None, clones, source_cg=object(),
                                          source_vols=members)
    for v, origin in zip(copies + clones, ["_snapshot-" + s.id for s in snaps] +
                         [m.name for m in members]):
        assert fake_lvm.lvs[v.name]["origin"] == origin
    with pytest.raises(exception.InvalidInput, match="no matching source"):
        thin.create_consistencygroup_from_src(None, None, [volume()], source_cg=object(),
                                              source_vols=members)
    with pytest.raises(exception.InvalidInput):
        thin.create_consistencygroup_from_src(None, None, [volume()])


def test_delete_group_reports_each_member(fake_lvm, thick):
    members = [volume() for _ in range(2)]
    for m in members:
        thick.create_volume(m)
    thick.create_snapshot(snapshot_of(members[1]))       # makes member 1 busy
    model, updates = thick.delete_consistencygroup(None, None, members)
    assert model == {"status": "error_deleting"}
    assert updates == [{"id": members[0].id, "status": "deleted"},
                       {"id": members[1].id, "status": "error_deleting"}]


# --- revert to snapshot ----------------------------------------------------------------------

def _revert_setup(fake_lvm, driver, size=1):
    vol = volume(size)
    driver.create_volume(vol)
    snap = snapshot_of(vol)
    driver.create_snapshot(snap)
    del fake_lvm.calls[:]
    return vol, snap, "%s/%s" % (VG, vol.name), "%s/_snapshot-%s" % (VG, snap.id)


def _changes(fake_lvm):
    return [c for c in fake_lvm.commands if c[0] != "lvs"]


def test_thick_revert_merges_then_takes_the_snapshot_again(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick, size=2)
    tag = "blockmgr-revert-" + snap.id
    assert thick.revert_to_snapshot(None, vol, snap) is None
    assert _changes(fake_lvm) == [
        ["lvchange", "--addtag", tag, origin],
        ["lvconvert", "--merge", snap_path],
        ["lvcreate", "-s", "-n", "_snapshot-" + snap.id, "-L", "2g", origin],
        ["lvchange", "--deltag", tag, origin]]
    assert fake_lvm.merged == [("_snapshot-" + snap.id, vol.name)]
    assert fake_lvm.lvs["_snapshot-" + snap.id]["origin"] == vol.name
    assert fake_lvm.lvs[vol.name]["lv_tags"] == ""


def test_thin_revert_merges_the_thin_snapshot_and_takes_it_again(fake_lvm, thin):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thin)
    thin.revert_to_snapshot(None, vol, snap)
    changes = _changes(fake_lvm)
    assert changes[1] == ["lvconvert", "--merge", snap_path]
    assert changes[2] == ["lvcreate", "-s", "-n", "_snapshot-" + snap.id, "-kn", origin]
    assert fake_lvm.lvs["_snapshot-" + snap.id]["lv_attr"][0] == "V"


def test_revert_resumed_after_the_merge_only_takes_the_snapshot_again(fake_lvm, thick):
    """A crash after lvconvert: the snapshot LV is gone, the tag says why."""
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    fake_lvm.fail["lvcreate"] = (5, "  Insufficient free space")
    with pytest.raises(exception.VolumeBackendAPIException, match="free space"):
        thick.revert_to_snapshot(None, vol, snap)
    assert "_snapshot-" + snap.id not in fake_lvm.lvs
    del fake_lvm.fail["lvcreate"]
    del fake_lvm.calls[:]
    thick.revert_to_snapshot(None, vol, snap)
    assert [c[:2] for c in _changes(fake_lvm)] == [["lvcreate", "-s"],
                                                   ["lvchange", "--deltag"]]
    assert len(fake_lvm.merged) == 1
    assert "_snapshot-" + snap.id in fake_lvm.lvs


def test_revert_resumed_after_the_tag_merges(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    fake_lvm.fail["lvconvert"] = (5, "  merge failed")
    with pytest.raises(exception.VolumeBackendAPIException, match="merge failed"):
        thick.revert_to_snapshot(None, vol, snap)
    del fake_lvm.fail["lvconvert"]
    del fake_lvm.calls[:]
    thick.revert_to_snapshot(None, vol, snap)
    assert [c[:2] for c in _changes(fake_lvm)] == [
        ["lvconvert", "--merge"], ["lvcreate", "-s"], ["lvchange", "--deltag"]]


def test_revert_twice_gives_the_same_result(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    thick.revert_to_snapshot(None, vol, snap)
    thick.revert_to_snapshot(None, vol, snap)
    assert len(fake_lvm.merged) == 2
    assert "_snapshot-" + snap.id in fake_lvm.lvs
    assert fake_lvm.lvs[vol.name]["lv_tags"] == ""


def test_revert_to_a_missing_snapshot_changes_nothing(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    with pytest.raises(exception.SnapshotNotFound):
        thick.revert_to_snapshot(None, vol, snapshot_of(vol))
    assert _changes(fake_lvm) == []


def test_revert_of_an_open_volume_is_busy_and_changes_nothing(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    row = fake_lvm.lvs[vol.name]
    row["lv_attr"] = row["lv_attr"][:5] + "o" + row["lv_attr"][6:]
    with pytest.raises(exception.VolumeIsBusy, match="open"):
        thick.revert_to_snapshot(None, vol, snap)
    assert _changes(fake_lvm) == []


def test_a_deferred_merge_is_a_backend_error_and_resumes(fake_lvm, thick):
    """lvm2 deferred the merge (the origin was opened meanwhile): the revert fails, the tag
    stays, and a later run does not ask for the merge again."""
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    real = fake_lvm._lvchange

    def open_after_tagging(args):
        out = real(args)
        if args[0] == "--addtag":
            row = fake_lvm.lvs[vol.name]
            row["lv_attr"] = row["lv_attr"][:5] + "o" + row["lv_attr"][6:]
        return out

    fake_lvm._lvchange = open_after_tagging
    with pytest.raises(exception.VolumeBackendAPIException, match="has not completed"):
        thick.revert_to_snapshot(None, vol, snap)
    assert fake_lvm.lvs["_snapshot-" + snap.id]["lv_attr"][0] == "S"
    assert "blockmgr-revert-" + snap.id in fake_lvm.lvs[vol.name]["lv_tags"]
    del fake_lvm.calls[:]
    with pytest.raises(exception.VolumeBackendAPIException, match="has not completed"):
        thick.revert_to_snapshot(None, vol, snap)
    assert _changes(fake_lvm) == []


def test_revert_needs_device_mapper(fake_lvm):
    driver = make_driver(fake_lvm, lvm_driverloaded=False)
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, driver)
    with pytest.raises(exception.Unsupported, match="device-mapper"):
        driver.revert_to_snapshot(None, vol, snap)
    assert fake_lvm.commands == []


def test_revert_refuses_a_snapshot_lv_of_another_origin(fake_lvm, thick):
    vol, snap, origin, snap_path = _revert_setup(fake_lvm, thick)
    other = volume()
    thick.create_volume(other)
    del fake_lvm.calls[:]
    with pytest.raises(exception.VolumeBackendAPIException, match="not a snapshot of"):
        thick.revert_to_snapshot(None, other, snap)
    assert _changes(fake_lvm) == []
