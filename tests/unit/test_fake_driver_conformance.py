"""The in-memory fake passes the whole conformance suite (every interface, with data I/O)."""

import pytest

from blockmgr.testing.conformance import DriverConformanceTests
from blockmgr.testing.fake_driver import FakeDriver, FakeForeignObjects, FakeVolumeIO


class TestFakeDriverConformance(DriverConformanceTests):

    @pytest.fixture
    def driver(self):
        driver = FakeDriver(None, "fake", host="node1@fake")
        driver.do_setup(None)
        driver.check_for_setup_error()
        return driver

    @pytest.fixture
    def volume_io(self, driver):
        return FakeVolumeIO(driver)

    @pytest.fixture
    def foreign_object(self, driver):
        return FakeForeignObjects(driver)


# --- the fake's own controls (what flow tests rely on) ---------------------------------------

from blockmgr import exception  # noqa: E402
from blockmgr.interface.objects import VolumeView  # noqa: E402
from blockmgr.testing.sparse import SparseBytes  # noqa: E402

GiB = 1024 ** 3


def _fake(**kwargs):
    driver = FakeDriver(None, "fake", host="node1@fake", **kwargs)
    driver.do_setup(None)
    return driver


def test_fail_on_raises_before_doing_anything_and_logs_the_call():
    error = exception.VolumeBackendAPIException(reason="injected")
    driver = _fake(fail_on={"create_volume": error})
    volume = VolumeView(id="v1", size=1)
    with pytest.raises(exception.VolumeBackendAPIException, match="injected"):
        driver.create_volume(volume)
    assert volume.name not in driver.volumes
    assert [c.method for c in driver.calls_to("create_volume")] == ["create_volume"]
    assert driver.calls_to("create_volume")[0].args == (volume,)


def test_injected_failure_after_the_operation_simulates_a_lost_reply():
    driver = _fake()
    driver.inject_failure("create_volume", exception.VolumeBackendAPIException, times=1,
                          when="after")
    volume = VolumeView(id="v1", size=1)
    with pytest.raises(exception.VolumeBackendAPIException):
        driver.create_volume(volume)
    assert volume.name in driver.volumes          # it was done
    driver.create_volume(volume)                  # the retry succeeds (idempotent, once only)


def test_injected_failure_can_be_conditional_and_cleared():
    driver = _fake()
    driver.inject_failure("delete_volume", lambda call: exception.VolumeIsBusy(
        volume_name=call.args[0].name) if call.args[0].id == "busy" else None)
    driver.delete_volume(VolumeView(id="free", size=1))
    with pytest.raises(exception.VolumeIsBusy):
        driver.delete_volume(VolumeView(id="busy", size=1))
    driver.clear_failures()
    driver.delete_volume(VolumeView(id="busy", size=1))


@pytest.mark.parametrize("method, when", [("no_such_method", "before"),
                                          ("create_volume", "during")])
def test_inject_failure_rejects_bad_arguments(method, when):
    with pytest.raises(exception.InvalidInput):
        _fake().inject_failure(method, RuntimeError(), when=when)


def test_check_for_setup_error_requires_do_setup():
    with pytest.raises(exception.DriverNotInitialized):
        FakeDriver(None, "fake").check_for_setup_error()


def test_capacity_is_enforced():
    driver = _fake(total_capacity_gb=2)
    driver.max_over_subscription_ratio = 1.0
    driver.create_volume(VolumeView(id="a", size=2))
    with pytest.raises(exception.VolumeBackendAPIException, match="not enough space"):
        driver.create_volume(VolumeView(id="b", size=1))
    assert "volume-b" not in driver.volumes


def test_recreate_with_another_size_and_shrink_are_refused():
    driver = _fake()
    volume = VolumeView(id="a", size=2)
    driver.create_volume(volume)
    with pytest.raises(exception.VolumeBackendAPIException, match="different size"):
        driver.create_volume(volume.with_changes(size=1))
    with pytest.raises(exception.InvalidVolume, match="shrink"):
        driver.extend_volume(volume, 1)


def test_missing_sources_are_typed_not_found_errors():
    from blockmgr.interface.objects import SnapshotView
    driver = _fake()
    with pytest.raises(exception.VolumeNotFound):
        driver.create_cloned_volume(VolumeView(id="c", size=1), VolumeView(id="gone", size=1))
    with pytest.raises(exception.SnapshotNotFound):
        driver.create_volume_from_snapshot(VolumeView(id="c", size=1),
                                           SnapshotView(id="s", volume_id="gone", volume_size=1))
    with pytest.raises(exception.VolumeNotFound):
        driver.create_snapshot(SnapshotView(id="s", volume_id="gone", volume_size=1))


def test_manage_refuses_a_foreign_snapshot_of_another_volume_and_taken_names():
    from blockmgr.interface.objects import SnapshotView
    driver = _fake()
    a, b = VolumeView(id="a", size=1), VolumeView(id="b", size=1)
    driver.create_volume(a)
    driver.create_volume(b)
    ref = driver.seed_foreign_snapshot(a.name, GiB)
    with pytest.raises(exception.ManageExistingInvalidReference, match="not of volume-b"):
        driver.manage_existing_snapshot(SnapshotView(id="s", volume_id="b", volume_size=1), ref)
    with pytest.raises(exception.ManageExistingAlreadyManaged):
        driver.manage_existing(a, driver.seed_foreign_volume(GiB))
    with pytest.raises(exception.InvalidInput, match="already exists"):
        driver.seed_foreign_volume(GiB, name=a.name)


def test_consistencygroup_from_src_needs_exactly_one_matching_source():
    driver = _fake()
    group = object()
    volumes = [VolumeView(id="n", size=1)]
    with pytest.raises(exception.InvalidInput, match="exactly one source"):
        driver.create_consistencygroup_from_src(None, group, volumes)
    with pytest.raises(exception.InvalidInput, match="1 volumes but 0 sources"):
        driver.create_consistencygroup_from_src(None, group, volumes, source_cg=object(),
                                                source_vols=[])


def test_volume_io_is_bounded_and_snapshots_are_read_only():
    from blockmgr.interface.objects import SnapshotView
    driver = _fake()
    io = FakeVolumeIO(driver)
    volume = VolumeView(id="a", size=1)
    driver.create_volume(volume)
    with pytest.raises(exception.InvalidInput, match="outside"):
        io.read(volume, GiB - 1, 2)
    with pytest.raises(exception.InvalidInput, match="read-only"):
        io.write(SnapshotView(id="s", volume_id="a", volume_size=1), 0, b"x")


def test_sparse_bytes_shrink_drops_data_and_grow_reads_zeros():
    store = SparseBytes(3 * 65536)
    store.write(65536 + 10, b"abc")
    store.write(2 * 65536, b"tail")
    store.resize(65536 + 11)
    store.resize(3 * 65536)
    assert store.read(65536 + 10, 3) == b"a\0\0"
    assert store.read(2 * 65536, 4) == bytes(4)
    copy = store.copy(4 * 65536)
    copy.write(65536 + 10, b"z")
    assert store.read(65536 + 10, 1) == b"a" and copy.size == 4 * 65536
