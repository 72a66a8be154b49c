"""The conformance suite is not vacuous: each deliberately broken variant of the fake fails
exactly the tests that check the broken promise, and passes the rest.

The suite is run programmatically (a nested ``pytest.main`` on a generated test module that
subclasses the suite for each broken driver), the way a driver author would run it.
"""

from __future__ import annotations

import abc
import textwrap

import pytest

from blockmgr import exception
from blockmgr.interface import SnapshotManagementDriver, VolumeDriver, VolumeManagementDriver
from blockmgr.testing.fake_driver import FakeDriver


class DeleteFailsWhenGone(FakeDriver):
    """delete_volume is not idempotent."""

    def delete_volume(self, volume):
        if volume.name not in self.volumes:
            raise exception.VolumeNotFound(volume_id=volume.id)
        return super().delete_volume(volume)


class SizeRoundsDown(FakeDriver):
    """manage_existing_get_size truncates instead of rounding up."""

    def manage_existing_get_size(self, volume, existing_ref):
        name = self._resolve(self.volumes, existing_ref, "volume")
        return self.volumes[name].size // (1024 ** 3)


class SnapshotAliasesVolume(FakeDriver):
    """create_snapshot shares the volume's storage: not point-in-time."""

    def create_snapshot(self, snapshot):
        update = super().create_snapshot(snapshot)
        self.snapshots[snapshot.name].data = self.volumes[snapshot.volume_name]
        return update


class UnmanageDeletes(FakeDriver):
    """unmanage destroys the backend object."""

    def unmanage(self, volume):
        self.volumes.pop(volume.name, None)


class RestoreByUnmanage(FakeDriver):
    """Renames on manage but keeps the default restore (unmanage): a failed manage leaves
    the object under the volume's name."""

    restore_managed_name = VolumeManagementDriver.restore_managed_name
    restore_managed_snapshot_name = SnapshotManagementDriver.restore_managed_snapshot_name


class CopiesWriteZeros(FakeDriver):
    """Clones and volumes from snapshots allocate their whole size (zeros written)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.full: set[str] = set()

    def create_cloned_volume(self, volume, src_vref):
        self.full.add(volume.name)
        return super().create_cloned_volume(volume, src_vref)

    def create_volume_from_snapshot(self, volume, snapshot):
        self.full.add(volume.name)
        return super().create_volume_from_snapshot(volume, snapshot)

    def allocated_bytes(self, view):
        if view.name in self.full:
            return self._volume(view).size
        return super().allocated_bytes(view)


class StatsIgnoreVolumes(FakeDriver):
    """provisioned_capacity_gb never moves."""

    def get_volume_stats(self, refresh=False):
        stats = super().get_volume_stats(refresh)
        stats["pools"][0]["provisioned_capacity_gb"] = 0
        return stats


class StatsFlagAsText(FakeDriver):
    """Reports thin provisioning as the text "true": present and truthy, so only the typed
    check of the report (what the worker runs before publishing) catches it."""

    def get_volume_stats(self, refresh=False):
        stats = super().get_volume_stats(refresh)
        stats["pools"][0]["thin_provisioning_support"] = "true"
        return stats


class CgsnapshotSkipsLastMember(FakeDriver):
    """create_cgsnapshot forgets one member."""

    def create_cgsnapshot(self, context, cgsnapshot, snapshots):
        return super().create_cgsnapshot(context, cgsnapshot, snapshots[:-1])


class RevertDoesNothing(FakeDriver):
    """revert_to_snapshot returns without touching the volume."""

    def revert_to_snapshot(self, context, volume, snapshot):
        return None


class RevertMovesSnapshotData(FakeDriver):
    """revert_to_snapshot hands the snapshot's storage to the volume: later writes to the
    volume show in the snapshot."""

    def revert_to_snapshot(self, context, volume, snapshot):
        self.volumes[volume.name] = self.snapshots[snapshot.name].data


class CoreOnlyDriver(VolumeDriver):
    """Claims only the core interface (delegates to an inner fake): the other interfaces'
    tests must be skipped, not failed."""

    def __init__(self, configuration, backend_name, host=None):
        super().__init__(configuration, backend_name, host)
        self.inner = FakeDriver(configuration, backend_name, host)


def _delegate(name):
    def method(self, *args, **kwargs):
        return getattr(self.inner, name)(*args, **kwargs)
    method.__name__ = name
    return method


for _name in VolumeDriver.__abstractmethods__:
    setattr(CoreOnlyDriver, _name, _delegate(_name))
abc.update_abstractmethods(CoreOnlyDriver)


BROKEN = {
    "DeleteFailsWhenGone": {"test_delete_volume_twice_succeeds",
                            "test_delete_never_created_volume_succeeds",
                            "test_delete_consistencygroup_deletes_member_volumes"},
    "SizeRoundsDown": {"test_manage_existing_get_size_rounds_up"},
    "RevertDoesNothing": {"test_revert_to_snapshot_restores_the_snapshot_data"},
    "RevertMovesSnapshotData": {"test_revert_to_snapshot_restores_the_snapshot_data"},
    "SnapshotAliasesVolume": {"test_snapshot_is_point_in_time",
                              "test_volume_from_snapshot_holds_snapshot_data",
                              "test_unmanage_snapshot_then_manage_again_keeps_data",
                              "test_cgsnapshot_covers_every_member",
                              "test_consistencygroup_from_src_holds_source_data",
                              "test_revert_to_snapshot_restores_the_snapshot_data"},
    "UnmanageDeletes": {"test_unmanage_then_manage_again_keeps_the_object"},
    "RestoreByUnmanage": {"test_failed_manage_restores_the_original_name",
                          "test_failed_snapshot_manage_restores_the_original_name"},
    "CopiesWriteZeros": {"test_copies_clones_and_extends_stay_sparse"},
    "StatsIgnoreVolumes": {"test_stats_provisioned_accounts_for_created_volumes",
                           "test_extend_volume_grows_provisioned_capacity",
                           "test_delete_consistencygroup_deletes_member_volumes"},
    "StatsFlagAsText": {"test_stats_report_required_fields"},
    "CgsnapshotSkipsLastMember": {"test_cgsnapshot_covers_every_member",
                                  "test_consistencygroup_from_src_holds_source_data"},
}

SUITE_MODULE = '''
import pytest
from blockmgr.testing.conformance import DriverConformanceTests
from blockmgr.testing.fake_driver import FakeForeignObjects, FakeVolumeIO
from tests.unit import test_conformance_catches_broken as broken


def make(cls, skip=None, io=True):
    class Suite(DriverConformanceTests):
        skip_tests = skip or {}

        @pytest.fixture
        def driver(self):
            drv = cls(None, "broken", host="node@broken")
            drv.do_setup(None)
            return drv

        @pytest.fixture
        def volume_io(self, driver):
            return FakeVolumeIO(getattr(driver, "inner", driver)) if io else None

        @pytest.fixture
        def foreign_object(self, driver):
            return FakeForeignObjects(getattr(driver, "inner", driver)) if io else None
    Suite.__name__ = "Test" + cls.__name__
    return Suite


TestCoreOnlyDriver = make(broken.CoreOnlyDriver)
TestNoDataAccess = make(broken.FakeDriver, io=False)
TestSkipListed = make(broken.FakeDriver, {"test_snapshot_is_point_in_time": "no snapshots here"})

%s
'''


class _Outcomes:
    """Collects the worst outcome of each test across setup/call/teardown."""

    def __init__(self):
        self.by_class: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report):
        *_, cls, test = report.nodeid.split("::")
        tests = self.by_class.setdefault(cls[len("Test"):], {})
        if report.failed and report.when == "call":
            tests[test] = "failed"
        elif report.failed:
            tests.setdefault(test, "error")
        elif report.skipped:
            tests.setdefault(test, "skipped")
        elif report.when == "call":
            tests.setdefault(test, "passed")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("broken_suite")
    module = directory / "test_broken_drivers.py"
    module.write_text(textwrap.dedent(SUITE_MODULE) % "\n".join(
        "Test%s = make(broken.%s)" % (name, name) for name in BROKEN))
    collector = _Outcomes()
    pytest.main([str(module), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                 "--rootdir", str(directory)], plugins=[collector])
    return collector.by_class


@pytest.mark.parametrize("driver_name", sorted(BROKEN))
def test_suite_fails_exactly_the_broken_promise(outcomes, driver_name):
    results = outcomes[driver_name]
    failed = {t for t, outcome in results.items() if outcome == "failed"}
    assert failed == BROKEN[driver_name], results
    assert not [t for t, outcome in results.items() if outcome == "skipped"]


def test_interfaces_a_driver_does_not_claim_are_skipped_not_failed(outcomes):
    results = outcomes["CoreOnlyDriver"]
    assert not [t for t, outcome in results.items() if outcome in ("failed", "error")], results
    skipped = {t for t, outcome in results.items() if outcome == "skipped"}
    assert "test_manage_existing_get_size_rounds_up" in skipped
    assert "test_cgsnapshot_covers_every_member" in skipped
    assert "test_unmanage_snapshot_then_manage_again_keeps_data" in skipped
    assert results["test_snapshot_is_point_in_time"] == "passed"
    assert results["test_delete_volume_twice_succeeds"] == "passed"


def test_skip_tests_skips_the_named_test_only(outcomes):
    results = outcomes["SkipListed"]
    assert results["test_snapshot_is_point_in_time"] == "skipped"
    assert [t for t, outcome in results.items() if outcome != "passed"] == [
        "test_snapshot_is_point_in_time"]


def test_without_data_access_or_foreign_objects_those_tests_skip(outcomes):
    results = outcomes["NoDataAccess"]
    assert not [t for t, outcome in results.items() if outcome in ("failed", "error")], results
    for name in ("test_snapshot_is_point_in_time", "test_extend_keeps_data_and_grows",
                 "test_manage_existing_get_size_rounds_up",
                 "test_manageable_listing_sorts_and_pages"):
        assert results[name] == "skipped", name
    # Structure tests and data-optional tests still run.
    for name in ("test_unmanage_then_manage_again_keeps_the_object",
                 "test_cgsnapshot_covers_every_member", "test_delete_volume_twice_succeeds"):
        assert results[name] == "passed", name
