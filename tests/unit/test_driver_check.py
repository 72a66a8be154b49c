"""``driver check``: the checker finds real gaps (missing methods, wrong signatures, duck
typing) and the CLI reports them with the documented exit status."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from blockmgr import exception
from blockmgr.drivers import checker
from blockmgr.interface import VolumeDriver
from blockmgr.testing.fake_driver import FakeDriver

MANAGE = str(pathlib.Path(sys.executable).with_name("blockmgr-manage"))
REPO = pathlib.Path(__file__).resolve().parents[2]


# --- deliberately broken drivers (importable by dotted path for the CLI tests) ---------------

class WrongSignatureDriver(FakeDriver):
    """create_volume renamed its argument; manage_existing swapped its arguments."""

    def create_volume(self, vol):
        return super().create_volume(vol)

    def manage_existing(self, existing_ref, volume):
        return super().manage_existing(volume, existing_ref)


class MissingMethodDriver(VolumeDriver):
    """Implements every core method except extend_volume."""

    def do_setup(self, context): pass
    def check_for_setup_error(self): pass
    def get_volume_stats(self, refresh=False): return {}
    def create_volume(self, volume): return None
    def delete_volume(self, volume): pass
    def create_snapshot(self, snapshot): return None
    def delete_snapshot(self, snapshot): pass
    def create_volume_from_snapshot(self, volume, snapshot): return None
    def create_cloned_volume(self, volume, src_vref): return None
    def create_export(self, context, volume, connector): return None
    def ensure_export(self, context, volume): return None
    def remove_export(self, context, volume): pass
    def initialize_connection(self, volume, connector): return {}
    def terminate_connection(self, volume, connector, **kwargs): pass


class DuckTypedDriver:
    """Has every VolumeDriver method but does not inherit the interface."""


for _name in VolumeDriver.__abstractmethods__:
    setattr(DuckTypedDriver, _name, getattr(FakeDriver, _name))


def _result(report, interface):
    return next(r for r in report.interfaces if r.interface == interface)


# --- the checker --------------------------------------------------------------------------

def test_fake_driver_implements_all_four_interfaces():
    report = checker.check_driver(FakeDriver)
    assert report.ok
    assert [r.status for r in report.interfaces] == ["implemented"] * 4


def test_wrong_signature_is_reported_as_mismatch():
    report = checker.check_driver(WrongSignatureDriver)
    assert not report.ok
    core = _result(report, "VolumeDriver")
    assert core.status == "incomplete" and not core.missing
    assert "'vol'" in core.mismatched["create_volume"]
    assert "'volume'" in core.mismatched["create_volume"]
    manage = _result(report, "VolumeManagementDriver")
    assert "parameter 1 is 'existing_ref'" in manage.mismatched["manage_existing"]
    # Interfaces it did not break stay implemented.
    assert _result(report, "SnapshotManagementDriver").implemented


def test_missing_method_is_reported_and_class_cannot_be_instantiated():
    report = checker.check_driver(MissingMethodDriver)
    core = _result(report, "VolumeDriver")
    assert core.missing == ["extend_volume"]
    assert not report.ok
    assert any("abstract methods extend_volume" in p for p in report.problems)
    with pytest.raises(TypeError, match="extend_volume"):
        MissingMethodDriver(None, "b")


def test_duck_typing_is_not_conformance():
    report = checker.check_driver(DuckTypedDriver)
    assert [r.status for r in report.interfaces] == ["not claimed"] * 4
    assert not report.ok
    assert any("DriverBase" in p for p in report.problems)


def test_unclaimed_optional_interfaces_do_not_fail_a_core_driver():
    class CoreOnly(MissingMethodDriver):
        def extend_volume(self, volume, new_size): pass

    report = checker.check_driver(CoreOnly)
    assert report.ok
    assert [r.status for r in report.interfaces] == [
        "implemented", "not claimed", "not claimed", "not claimed"]


@pytest.mark.parametrize("source, fragment", [
    ("def get_volume_stats(self, refresh): return {}", "needs a default"),
    ("def get_volume_stats(self, *, refresh=False): return {}", "keyword-only"),
    ("def get_volume_stats(self, refresh=False, /): return {}", "positional-only"),
    ("def create_volume(self, volume, pool): return None", "extra parameter 'pool'"),
    ("def create_volume(self): return None", "parameter 'volume' is missing"),
    ("def terminate_connection(self, volume, connector): pass", "must accept **kwargs"),
    ("async def create_volume(self, volume): return None", "not async"),
    ("create_volume = staticmethod(lambda volume: None)", "staticmethod"),
    ("create_volume = property(lambda self: None)", "property"),
])
def test_signature_rules(source, fragment):
    namespace = {}
    exec("class Broken(FakeDriver):\n    " + source, {"FakeDriver": FakeDriver}, namespace)
    report = checker.check_driver(namespace["Broken"])
    problems = " | ".join(_result(report, "VolumeDriver").mismatched.values())
    assert fragment in problems, problems
    assert not report.ok


@pytest.mark.parametrize("source", [
    "def create_volume(self, volume, pool=None): return None",
    "def create_volume(self, volume, *args, **kwargs): return None",
    "def get_volume_stats(self, refresh=True): return {}",
    "def terminate_connection(self, volume, connector, force=False, **kwargs): pass",
])
def test_compatible_extensions_are_accepted(source):
    namespace = {}
    exec("class Extended(FakeDriver):\n    " + source, {"FakeDriver": FakeDriver}, namespace)
    assert checker.check_driver(namespace["Extended"]).ok


def test_a_non_class_is_rejected():
    with pytest.raises(exception.InvalidInput):
        checker.check_driver(FakeDriver(None, "x"))


# --- the CLI, as an operator runs it ---------------------------------------------------------

def _manage(*args):
    return subprocess.run([MANAGE, "driver", "check", *args], capture_output=True, text=True,
                          timeout=120, cwd=str(REPO), stdin=subprocess.DEVNULL,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_cli_reports_a_conforming_driver_and_exits_0():
    run = _manage("blockmgr.testing.fake_driver.FakeDriver")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    for iface in ("VolumeDriver", "VolumeManagementDriver", "SnapshotManagementDriver",
                  "ConsistencyGroupDriver"):
        assert any(line.split() == [iface, "implemented"] for line in lines), run.stdout
    assert "Result: OK" in run.stdout


def test_cli_lists_mismatches_in_json_and_exits_1():
    run = _manage("tests.unit.test_driver_check.WrongSignatureDriver", "--format", "json")
    assert run.returncode == 1, run.stderr
    data = json.loads(run.stdout)
    assert data["ok"] is False
    core = next(i for i in data["interfaces"] if i["interface"] == "VolumeDriver")
    assert core["status"] == "incomplete"
    assert set(core["mismatched"]) == {"create_volume"}


def test_cli_unknown_driver_lists_known_ones_and_exits_2():
    run = _manage("no-such-driver")
    assert run.returncode == 2
    assert "unknown driver 'no-such-driver'" in run.stderr
    assert "loopback" in run.stderr and "lvm" in run.stderr
