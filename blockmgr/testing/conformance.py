"""Driver conformance suite: run it with pytest against YOUR driver and YOUR backend.

The suite checks behaviour, not the presence of methods (``blockmgr-manage driver check`` does
that): idempotent create/delete, size rounding, manage/unmanage keeping data, a failed manage
giving the object its original name back, point-in-time snapshots, clones, extend, revert to
a snapshot (skipped for a driver that raises ``Unsupported``), copies that stay sparse,
capacity reports and consistency-group snapshots. Tests of an interface the driver class
does not inherit are skipped, never failed.

How to use it
=============

Subclass :class:`DriverConformanceTests` in a test module of your own and provide the fixtures
below (``pytest`` collects the subclass; the base class itself is not collected because its
name does not start with ``Test``)::

    import pytest
    from blockmgr.testing.conformance import DriverConformanceTests

    class TestMyDriver(DriverConformanceTests):

        @pytest.fixture
        def driver(self, tmp_path):
            drv = MyDriver(configuration, "backend1", host="node1@backend1")
            drv.do_setup(None)
            drv.check_for_setup_error()
            yield drv

        @pytest.fixture
        def volume_io(self, driver):
            return MyVolumeIO(driver)        # or None: data tests are skipped

        @pytest.fixture
        def foreign_object(self, driver):
            factory = MyForeignObjects(driver)
            yield factory
            factory.cleanup()

Fixture contract (stable)
=========================

``driver`` (required)
    A driver instance, constructed, ``do_setup(context)`` and ``check_for_setup_error()``
    already called, on a backend the tests may freely create and delete objects in. A fresh
    instance per test is fine; the suite deletes every volume and snapshot it created (and
    every object it managed) at the end of each test, snapshots first, ignoring nothing: a
    cleanup failure is a test error.

``volume_io`` (optional; default ``None``)
    ``None`` when this environment cannot read/write volume data (data tests are then
    SKIPPED with that reason), otherwise an object with two methods::

        write(view, offset: int, data: bytes) -> None
        read(view, offset: int, length: int) -> bytes

    Optionally a third method, for the sparseness test (skipped without it)::

        allocated_bytes(view) -> int
            Bytes the backend really allocates for the volume or snapshot (a file's
            ``st_blocks * 512``, a thin LV's data percentage of its size, ...).

    ``view`` is the :class:`~blockmgr.interface.objects.VolumeView` or
    :class:`~blockmgr.interface.objects.SnapshotView` the suite passed to the driver, with the
    model update the driver returned already applied (``provider_location``, ``provider_id``
    ... through ``view.with_changes``). ``write`` is only called for volumes; ``read`` for
    volumes and snapshots. Reads must return exactly ``length`` bytes (zeros where never
    written). The adapter reaches the data however the backend allows (open the file, attach
    through ``initialize_connection``, read the device ...).

``foreign_object`` (optional; default ``None``)
    A factory of backend objects the driver did NOT create, for the manage tests; ``None``
    skips them. Methods::

        volume(size_bytes: int) -> dict
            Create an unmanaged volume-like object of exactly ``size_bytes`` bytes (sparse is
            fine; the suite uses sizes like 1 GiB + 1 byte) and return the ``existing_ref``
            that names it for ``manage_existing`` (e.g. ``{'source-name': 'foreign-1'}``).
        snapshot(volume, size_bytes: int) -> dict        (optional method)
            Create an unmanaged snapshot-like object of the managed volume ``volume`` (a
            VolumeView the suite created) of ``size_bytes`` bytes and return its
            ``existing_ref`` for ``manage_existing_snapshot``. Absent -> snapshot manage tests
            that need it are skipped.

    The factory must remove, at its own teardown, the volume-like objects it created that are
    still there under their original name; objects the suite managed are deleted by the suite
    through ``delete_volume`` / ``delete_snapshot``. Every foreign snapshot the suite asks for
    is managed by the test (so the suite deletes it before its parent volume).

``conformance_context`` (optional)
    The request context passed to methods that take one; defaults to an admin
    :class:`~blockmgr.context.RequestContext`.

``connector`` (optional)
    The connector dict for ``create_export`` / ``initialize_connection``; defaults to one
    describing this host.

Skipping what YOUR environment cannot do
========================================

Set ``skip_tests = {"test_name": "reason", ...}`` on the subclass to skip named tests with a
reason (e.g. snapshots on a host without device-mapper). Prefer this to overriding methods so
the reason shows up in the pytest report.

Sizes: volumes are 1 GiB (2-3 GiB after extend/grow); backends must create them sparse/thin
or fast enough for a test run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import uuid

import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.interface import (ConsistencyGroupDriver, SnapshotManagementDriver, VolumeDriver,
                                VolumeManagementDriver)
from blockmgr.interface.objects import GroupSnapshotView, GroupView, SnapshotView, VolumeView
from blockmgr.volume.capabilities import validate_stats

GiB = 1024 ** 3
MiB = 1024 ** 2
#: How much more than its source a copy, clone or extended volume may allocate (metadata).
SPARSE_SLACK = 16 * MiB
#: Offsets the data tests write their patterns at: the start and somewhere unaligned inside.
PATTERN_OFFSETS = (0, 300 * MiB + 12 * 1024)
PATTERN_LENGTH = 4096
ERROR_STATUSES = ("error", "error_deleting")


def pattern(seed: str, length: int = PATTERN_LENGTH) -> bytes:
    """Deterministic, seed-specific bytes (never all zeros)."""
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:length])


# --- requirements attached to test methods ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Needs:
    interfaces: tuple = ()
    data: bool = False
    foreign: str | None = None      # None, "volume" or "snapshot"


def needs(*interfaces, data: bool = False, foreign: str | None = None):
    """Mark a test with what it needs; the gate fixture skips it when that is missing."""
    def decorate(fn):
        fn._conformance_needs = _Needs(tuple(interfaces), data, foreign)
        return fn
    return decorate


# --- model-update conventions (the interface docstrings) --------------------------

def check_model_update(update, what: str) -> None:
    """``None`` or a dict; on a success path its status (if any) is not an error status."""
    assert update is None or isinstance(update, dict), (
        "%s must return a model update dict or None, got %r" % (what, update))
    if update and update.get("status") in ERROR_STATUSES:
        raise AssertionError("%s reported status %r on an operation that should succeed: %r"
                             % (what, update["status"], update))


def check_member_updates(updates, members, what: str) -> None:
    """``None`` or a list of dicts built by the driver, each with the ``'id'`` of a member."""
    if updates is None:
        return
    assert isinstance(updates, list), "%s: per-member updates must be a list or None, got %r" % (
        what, updates)
    ids = {m.id for m in members}
    for entry in updates:
        assert isinstance(entry, dict), (
            "%s: each per-member update must be a dict the driver builds (not the object it "
            "was given), got %r" % (what, entry))
        assert entry.get("id") in ids, (
            "%s: update %r has no 'id' of a member (%s)" % (what, entry, sorted(ids)))
        assert entry.get("status") not in ERROR_STATUSES, (
            "%s: member %s reported %r on an operation that should succeed"
            % (what, entry["id"], entry.get("status")))


def check_pair(result, what: str):
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "%s must return (model_update, members_model_update) -- (None, None) for plain "
        "success -- got %r" % (what, result))
    return result


def _apply(view, update):
    """The view as the manager would see it after writing ``update``."""
    if not update:
        return view
    fields = {f.name for f in dataclasses.fields(view)}
    return view.with_changes(**{k: v for k, v in update.items() if k in fields})


def _ref_key(ref: dict) -> tuple:
    return tuple(sorted((str(k), repr(v)) for k, v in ref.items()))


def _identifier(entry: dict) -> str:
    ref = entry["reference"]
    return str(ref.get("source-name", ref.get("source-id")))


def _pools(stats: dict) -> list[dict]:
    pools = stats.get("pools")
    assert isinstance(pools, list) and pools, (
        "get_volume_stats must report a non-empty 'pools' list, got %r" % (pools,))
    return pools


def _provisioned(stats: dict) -> float:
    total = 0.0
    for pool in _pools(stats):
        value = pool.get("provisioned_capacity_gb")
        assert isinstance(value, (int, float)), (
            "pool %r: provisioned_capacity_gb must be a number, got %r"
            % (pool.get("pool_name"), value))
        total += value
    return total


# --- the harness: creates objects through the driver and always cleans them up ----------------

class Harness:
    """Creates volumes/snapshots/groups through the driver under test and deletes them at the
    end of the test (cgsnapshots, then snapshots, then groups, then volumes)."""

    def __init__(self, driver, context, connector, volume_io):
        self.driver = driver
        self.context = context
        self.connector = connector
        self.io = volume_io
        self.volumes: dict[str, VolumeView] = {}
        self.snapshots: dict[str, SnapshotView] = {}
        self.groups: dict[str, GroupView] = {}
        self.cgsnapshots: dict[str, tuple] = {}

    # views ---------------------------------------------------------------------------------
    def volume_view(self, size: int = 1, **fields) -> VolumeView:
        return VolumeView(id=str(uuid.uuid4()), size=size, host=self.driver.host, **fields)

    def snapshot_view(self, volume: VolumeView, **fields) -> SnapshotView:
        return SnapshotView(id=str(uuid.uuid4()), volume_id=volume.id, volume_size=volume.size,
                            volume_name=volume.name, **fields)

    # tracked operations --------------------------------------------------------------------
    def track(self, view):
        target = self.snapshots if isinstance(view, SnapshotView) else self.volumes
        target[view.id] = view
        return view

    def forget(self, view):
        (self.snapshots if isinstance(view, SnapshotView) else self.volumes).pop(view.id, None)

    def create_volume(self, size: int = 1, **fields) -> VolumeView:
        view = self.volume_view(size, **fields)
        self.track(view)
        update = self.driver.create_volume(view)
        check_model_update(update, "create_volume")
        return self.track(_apply(view, update))

    def create_snapshot(self, volume: VolumeView, **fields) -> SnapshotView:
        view = self.snapshot_view(volume, **fields)
        self.track(view)
        update = self.driver.create_snapshot(view)
        check_model_update(update, "create_snapshot")
        return self.track(_apply(view, update))

    def create_volume_from_snapshot(self, snapshot: SnapshotView, size: int) -> VolumeView:
        view = self.volume_view(size, snapshot_id=snapshot.id)
        self.track(view)
        update = self.driver.create_volume_from_snapshot(view, snapshot)
        check_model_update(update, "create_volume_from_snapshot")
        return self.track(_apply(view, update))

    def create_cloned_volume(self, source: VolumeView, size: int) -> VolumeView:
        view = self.volume_view(size, source_volid=source.id)
        self.track(view)
        update = self.driver.create_cloned_volume(view, source)
        check_model_update(update, "create_cloned_volume")
        return self.track(_apply(view, update))

    def extend(self, volume: VolumeView, new_size: int) -> VolumeView:
        assert self.driver.extend_volume(volume, new_size) is None, "extend_volume returns None"
        return self.track(volume.with_changes(size=new_size))

    def create_group(self) -> GroupView:
        group = GroupView(id=str(uuid.uuid4()), name="conformance", host=self.driver.host)
        self.groups[group.id] = group
        check_model_update(self.driver.create_consistencygroup(self.context, group),
                           "create_consistencygroup")
        return group

    # data ----------------------------------------------------------------------------------
    def write_pattern(self, volume: VolumeView, seed: str) -> None:
        for offset in PATTERN_OFFSETS:
            self.io.write(volume, offset, pattern("%s@%d" % (seed, offset)))

    def assert_pattern(self, view, seed: str, what: str) -> None:
        for offset in PATTERN_OFFSETS:
            self.assert_bytes(view, offset, pattern("%s@%d" % (seed, offset)), what)

    def assert_bytes(self, view, offset: int, expected: bytes, what: str) -> None:
        got = self.io.read(view, offset, len(expected))
        assert len(got) == len(expected), "%s: read %d bytes at %d, expected %d" % (
            what, len(got), offset, len(expected))
        if got != expected:
            first = next(i for i in range(len(got)) if got[i] != expected[i])
            raise AssertionError(
                "%s: %s %s differs at byte %d (offset %d): got %r..., expected %r..."
                % (what, type(view).__name__, view.name, first, offset + first,
                   bytes(got[first:first + 8]), bytes(expected[first:first + 8])))

    # cleanup -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        errors = []

        def attempt(what, fn, *args):
            try:
                fn(*args)
            except Exception as exc:   # keep cleaning; report every failure at the end
                errors.append("%s: %s: %s" % (what, type(exc).__name__, exc))

        for cgsnap, snaps in reversed(list(self.cgsnapshots.values())):
            attempt("delete_cgsnapshot %s" % cgsnap.id, self.driver.delete_cgsnapshot,
                    self.context, cgsnap, snaps)
        for snap in reversed(list(self.snapshots.values())):
            attempt("delete_snapshot %s" % snap.name, self.driver.delete_snapshot, snap)
        for group in reversed(list(self.groups.values())):
            attempt("delete_consistencygroup %s" % group.id,
                    self.driver.delete_consistencygroup, self.context, group, [])
        for vol in reversed(list(self.volumes.values())):
            attempt("delete_volume %s" % vol.name, self.driver.delete_volume, vol)
        if errors:
            raise AssertionError("conformance cleanup failed (idempotent deletes must "
                                 "succeed):\n  " + "\n  ".join(errors))


# --- the suite --------------------------------------------------------------------------------

class DriverConformanceTests:
    """Subclass in a ``Test*`` class and provide the ``driver`` fixture (see the module doc)."""

    #: ``{"test_name": "reason"}``: tests this environment cannot run, skipped with the reason.
    skip_tests: dict[str, str] = {}

    # fixtures the author may override ---------------------------------------------------------
    @pytest.fixture
    def volume_io(self):
        return None

    @pytest.fixture
    def foreign_object(self):
        return None

    @pytest.fixture
    def conformance_context(self):
        return bm_context.get_admin_context()

    @pytest.fixture
    def connector(self):
        return {"host": socket.gethostname(), "ip": "127.0.0.1", "initiator": None,
                "multipath": False, "platform": "x86_64", "os_type": "linux"}

    # the suite's own fixtures ---------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request):
        name = getattr(request.node, "originalname", None) or request.node.name
        reason = self.skip_tests.get(name)
        if reason:
            pytest.skip("skipped by %s.skip_tests: %s" % (type(self).__name__, reason))
        needed = getattr(request.function, "_conformance_needs", None)
        if needed is None:
            return
        driver = request.getfixturevalue("driver")
        for iface in needed.interfaces:
            if not isinstance(driver, iface):
                pytest.skip("%s does not implement %s" % (type(driver).__name__, iface.__name__))
        if needed.data and request.getfixturevalue("volume_io") is None:
            pytest.skip("no volume_io adapter: this environment cannot read/write volume data")
        if needed.foreign:
            factory = request.getfixturevalue("foreign_object")
            if factory is None:
                pytest.skip("no foreign_object factory: cannot create unmanaged objects here")
            if not callable(getattr(factory, needed.foreign, None)):
                pytest.skip("foreign_object factory has no %s() method" % needed.foreign)

    @pytest.fixture
    def harness(self, driver, conformance_context, connector, volume_io):
        harness = Harness(driver, conformance_context, connector, volume_io)
        yield harness
        harness.cleanup()

    # ---------------------------------------------------------------------------------------
    # VolumeDriver: setup and stats
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver)
    def test_check_for_setup_error_passes_on_a_set_up_driver(self, driver):
        assert driver.check_for_setup_error() is None

    @needs(VolumeDriver)
    def test_stats_report_required_fields(self, driver):
        for refresh in (True, False):
            stats = driver.get_volume_stats(refresh=refresh)
            assert isinstance(stats, dict), "get_volume_stats must return a dict"
            # The check the worker runs on every report before publishing it.
            try:
                validate_stats(stats, type(driver).__name__)
            except exception.InvalidDriverStats as exc:
                raise AssertionError(exc.msg) from None
            for key in ("volume_backend_name", "vendor_name", "driver_version",
                        "storage_protocol"):
                assert stats.get(key), "stats lack top-level %r: %r" % (key, stats)
            for pool in _pools(stats):
                for key in ("pool_name", "total_capacity_gb", "free_capacity_gb",
                            "provisioned_capacity_gb", "reserved_percentage",
                            "max_over_subscription_ratio", "thin_provisioning_support",
                            "thick_provisioning_support"):
                    assert key in pool, "pool %r lacks %r: %r" % (pool.get("pool_name"), key,
                                                                   pool)

    @needs(VolumeDriver)
    def test_stats_capacity_is_consistent(self, driver):
        for pool in _pools(driver.get_volume_stats(refresh=True)):
            name = pool.get("pool_name")
            total, free = pool["total_capacity_gb"], pool["free_capacity_gb"]
            for label, value in (("total", total), ("free", free)):
                assert isinstance(value, (int, float)) or value in ("unknown", "infinite"), (
                    "pool %r: %s_capacity_gb must be a number, 'unknown' or 'infinite', got %r"
                    % (name, label, value))
            if isinstance(total, (int, float)):
                assert total >= 0, "pool %r: negative total %r" % (name, total)
                if isinstance(free, (int, float)):
                    assert 0 <= free <= total, (
                        "pool %r: free_capacity_gb %r must be within 0..total (%r)"
                        % (name, free, total))
            assert 0 <= pool["reserved_percentage"] <= 100, pool
            ratio = pool["max_over_subscription_ratio"]
            assert ratio == "auto" or float(ratio) >= 1.0, (
                "pool %r: max_over_subscription_ratio %r must be >= 1 or 'auto'" % (name, ratio))
            assert pool["thin_provisioning_support"] or pool["thick_provisioning_support"], (
                "pool %r supports neither thin nor thick provisioning" % name)
            assert pool["provisioned_capacity_gb"] >= 0, pool

    @needs(VolumeDriver)
    def test_stats_provisioned_accounts_for_created_volumes(self, driver, harness):
        before = _provisioned(driver.get_volume_stats(refresh=True))
        first = harness.create_volume(1)
        harness.create_volume(2)
        after = _provisioned(driver.get_volume_stats(refresh=True))
        assert after - before == pytest.approx(3, abs=0.01), (
            "provisioned_capacity_gb went from %r to %r after creating 1 + 2 GiB" % (before,
                                                                                     after))
        driver.delete_volume(first)
        harness.forget(first)
        final = _provisioned(driver.get_volume_stats(refresh=True))
        assert after - final == pytest.approx(1, abs=0.01), (
            "provisioned_capacity_gb went from %r to %r after deleting a 1 GiB volume"
            % (after, final))

    # ---------------------------------------------------------------------------------------
    # VolumeDriver: create / delete idempotency
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver)
    def test_create_volume_twice_succeeds(self, driver, harness):
        volume = harness.create_volume(1)
        check_model_update(driver.create_volume(volume), "create_volume (second call)")

    @needs(VolumeDriver)
    def test_delete_volume_twice_succeeds(self, driver, harness):
        volume = harness.create_volume(1)
        assert driver.delete_volume(volume) is None
        driver.delete_volume(volume)
        harness.forget(volume)

    @needs(VolumeDriver)
    def test_delete_never_created_volume_succeeds(self, driver, harness):
        driver.delete_volume(harness.volume_view(1))

    @needs(VolumeDriver)
    def test_create_snapshot_twice_succeeds(self, driver, harness):
        volume = harness.create_volume(1)
        snapshot = harness.create_snapshot(volume)
        check_model_update(driver.create_snapshot(snapshot), "create_snapshot (second call)")

    @needs(VolumeDriver)
    def test_delete_snapshot_twice_succeeds(self, driver, harness):
        snapshot = harness.create_snapshot(harness.create_volume(1))
        assert driver.delete_snapshot(snapshot) is None
        driver.delete_snapshot(snapshot)
        harness.forget(snapshot)

    @needs(VolumeDriver)
    def test_delete_never_created_snapshot_succeeds(self, driver, harness):
        volume = harness.create_volume(1)
        driver.delete_snapshot(harness.snapshot_view(volume))

    @needs(VolumeDriver)
    def test_delete_volume_with_snapshot_is_refused_or_keeps_snapshot(self, driver, harness):
        volume = harness.create_volume(1)
        snapshot = harness.create_snapshot(volume)
        try:
            driver.delete_volume(volume)
        except exception.VolumeIsBusy:
            # Refused: nothing was deleted, the volume still works.
            harness.extend(volume, 2)
            return
        harness.forget(volume)
        # Allowed: the snapshot must survive on its own and stay usable.
        harness.create_volume_from_snapshot(snapshot, 1)

    # ---------------------------------------------------------------------------------------
    # VolumeDriver: copies and growth (structure; data versions below)
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver)
    def test_create_volume_from_snapshot_and_clone_succeed(self, driver, harness):
        source = harness.create_volume(1)
        snapshot = harness.create_snapshot(source)
        harness.create_volume_from_snapshot(snapshot, 1)
        harness.create_volume_from_snapshot(snapshot, 2)
        harness.create_cloned_volume(source, 1)
        harness.create_cloned_volume(source, 2)

    @needs(VolumeDriver)
    def test_extend_volume_grows_provisioned_capacity(self, driver, harness):
        volume = harness.create_volume(1)
        before = _provisioned(driver.get_volume_stats(refresh=True))
        harness.extend(volume, 3)
        after = _provisioned(driver.get_volume_stats(refresh=True))
        assert after - before == pytest.approx(2, abs=0.01), (
            "extending 1 -> 3 GiB moved provisioned_capacity_gb from %r to %r" % (before, after))

    @needs(VolumeDriver, data=True)
    def test_new_volume_reads_zeros(self, harness):
        old = harness.create_volume(1)
        harness.write_pattern(old, "old")
        new = harness.create_volume(1)
        for offset in PATTERN_OFFSETS:
            harness.assert_bytes(new, offset, bytes(PATTERN_LENGTH), "a new volume")

    @needs(VolumeDriver, data=True)
    def test_snapshot_is_point_in_time(self, harness):
        volume = harness.create_volume(1)
        harness.write_pattern(volume, "before")
        snapshot = harness.create_snapshot(volume)
        harness.write_pattern(volume, "after")
        harness.assert_pattern(volume, "after", "the volume after overwriting")
        harness.assert_pattern(snapshot, "before",
                               "the snapshot (must keep the data as of snapshot time)")

    @needs(VolumeDriver, data=True)
    def test_revert_to_snapshot_restores_the_snapshot_data(self, driver, harness,
                                                            conformance_context):
        volume = harness.create_volume(1)
        harness.write_pattern(volume, "snap")
        snapshot = harness.create_snapshot(volume)
        harness.write_pattern(volume, "after-snapshot")
        try:
            result = driver.revert_to_snapshot(conformance_context, volume, snapshot)
        except exception.Unsupported:
            pytest.skip("%s does not revert volumes to snapshots (Unsupported)"
                        % type(driver).__name__)
        assert result is None, "revert_to_snapshot returns None, got %r" % (result,)
        harness.assert_pattern(volume, "snap", "the volume reverted to its snapshot")
        harness.assert_pattern(snapshot, "snap", "the snapshot after a revert to it")
        driver.revert_to_snapshot(conformance_context, volume, snapshot)
        harness.assert_pattern(volume, "snap", "the volume reverted twice (idempotent)")
        harness.write_pattern(volume, "after-revert")
        harness.assert_pattern(snapshot, "snap", "the snapshot after writing to the reverted "
                                                 "volume")
        driver.revert_to_snapshot(conformance_context, volume, snapshot)
        harness.assert_pattern(volume, "snap", "the volume reverted again to the same "
                                               "snapshot")

    @needs(VolumeDriver, data=True)
    def test_volume_from_snapshot_holds_snapshot_data(self, harness):
        volume = harness.create_volume(1)
        harness.write_pattern(volume, "snap")
        snapshot = harness.create_snapshot(volume)
        harness.write_pattern(volume, "later")
        copy = harness.create_volume_from_snapshot(snapshot, 2)
        harness.assert_pattern(copy, "snap", "a volume created from the snapshot")
        harness.assert_bytes(copy, 2 * GiB - PATTERN_LENGTH, bytes(PATTERN_LENGTH),
                             "the grown tail of a volume created from a snapshot")
        harness.write_pattern(copy, "copy-changed")
        harness.assert_pattern(snapshot, "snap", "the snapshot after writing to its copy")

    @needs(VolumeDriver, data=True)
    def test_clone_holds_source_data_and_is_independent(self, harness):
        source = harness.create_volume(1)
        harness.write_pattern(source, "source")
        clone = harness.create_cloned_volume(source, 2)
        harness.assert_pattern(clone, "source", "the clone")
        harness.write_pattern(source, "source-changed")
        harness.assert_pattern(clone, "source", "the clone after its source changed")
        harness.write_pattern(clone, "clone-changed")
        harness.assert_pattern(source, "source-changed", "the source after its clone changed")
        harness.assert_bytes(clone, 2 * GiB - PATTERN_LENGTH, bytes(PATTERN_LENGTH),
                             "the grown tail of a clone")

    @needs(VolumeDriver, data=True)
    def test_copies_clones_and_extends_stay_sparse(self, harness, volume_io):
        measure = getattr(volume_io, "allocated_bytes", None)
        if not callable(measure):
            pytest.skip("volume_io has no allocated_bytes(view): allocation cannot be measured")
        source = harness.create_volume(1)
        harness.write_pattern(source, "sparse")
        limit = measure(source) + SPARSE_SLACK
        snapshot = harness.create_snapshot(source)
        made = {"a snapshot": snapshot,
                "a clone grown to 3 GiB": harness.create_cloned_volume(source, 3),
                "a volume from a snapshot, grown to 3 GiB":
                    harness.create_volume_from_snapshot(snapshot, 3)}
        grown = harness.create_volume(1)
        harness.write_pattern(grown, "sparse")
        made["a volume extended to 3 GiB"] = harness.extend(grown, 3)
        for what, view in made.items():
            got = measure(view)
            assert got <= limit, (
                "%s allocates %d bytes where its source allocates %d: copies, clones and "
                "extends must stay sparse/thin (copy only what the source allocates, grow "
                "with a hole), never write zeros" % (what, got, limit - SPARSE_SLACK))

    @needs(VolumeDriver, data=True)
    def test_extend_keeps_data_and_grows(self, harness):
        volume = harness.create_volume(1)
        harness.write_pattern(volume, "keep")
        volume = harness.extend(volume, 2)
        harness.assert_pattern(volume, "keep", "the volume after extend")
        tail = pattern("tail")
        harness.io.write(volume, 2 * GiB - len(tail), tail)
        harness.assert_bytes(volume, 2 * GiB - len(tail), tail, "the new space after extend")

    # ---------------------------------------------------------------------------------------
    # VolumeDriver: export and connection
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver)
    def test_export_lifecycle_is_idempotent(self, driver, harness, conformance_context,
                                            connector):
        volume = harness.create_volume(1)
        volume = _apply(volume, _checked(driver.create_export(conformance_context, volume,
                                                              connector), "create_export"))
        check_model_update(driver.ensure_export(conformance_context, volume), "ensure_export")
        assert driver.remove_export(conformance_context, volume) is None
        driver.remove_export(conformance_context, volume)

    @needs(VolumeDriver)
    def test_initialize_connection_returns_connection_info(self, driver, harness,
                                                          conformance_context, connector):
        volume = harness.create_volume(1)
        volume = _apply(volume, _checked(driver.create_export(conformance_context, volume,
                                                              connector), "create_export"))
        try:
            info = driver.initialize_connection(volume, connector)
            assert isinstance(info, dict), "initialize_connection must return a dict"
            assert isinstance(info.get("driver_volume_type"), str) and info[
                "driver_volume_type"], "connection info needs a 'driver_volume_type': %r" % info
            assert isinstance(info.get("data"), dict), (
                "connection info needs a 'data' dict: %r" % info)
        finally:
            driver.terminate_connection(volume, connector)
            driver.terminate_connection(volume, connector)
            driver.remove_export(conformance_context, volume)

    # ---------------------------------------------------------------------------------------
    # VolumeManagementDriver
    # ---------------------------------------------------------------------------------------
    @needs(VolumeManagementDriver, foreign="volume")
    def test_manage_existing_get_size_rounds_up(self, driver, harness, foreign_object):
        cases = ((GiB + 1, 2), (GiB, 1), (GiB - 4096, 1))
        for size_bytes, expected in cases:
            ref = foreign_object.volume(size_bytes)
            got = driver.manage_existing_get_size(harness.volume_view(1), ref)
            assert got == expected and isinstance(got, int), (
                "manage_existing_get_size(%r) of a %d-byte object returned %r; must be %d "
                "(whole GiB, rounded UP)" % (ref, size_bytes, got, expected))

    @needs(VolumeManagementDriver, foreign="volume")
    def test_manage_existing_binds_object_to_volume(self, driver, harness, foreign_object):
        ref = foreign_object.volume(GiB + 1)
        view = harness.volume_view(2)
        update = driver.manage_existing(view, ref)
        check_model_update(update, "manage_existing")
        view = harness.track(_apply(view, update))
        renamed = False
        try:
            driver.manage_existing_get_size(harness.volume_view(1), ref)
        except exception.ManageExistingInvalidReference:
            renamed = True
        assert renamed or (update and (update.get("provider_id") or
                                       update.get("provider_location"))), (
            "after manage_existing the object must be bound to the volume: renamed to "
            "volume.name (the old reference stops resolving) or pointed to by provider_id / "
            "provider_location in the model update (got %r)" % (update,))
        listed = driver.get_manageable_volumes([view], None, None, None, ["size"], ["asc"])
        offered = [e for e in listed if e["safe_to_manage"] and (
            _ref_key(e["reference"]) == _ref_key(ref) or e["reference"].get("source-name") ==
            view.name)]
        assert not offered, "a managed object is still offered as safe to manage: %r" % offered
        view = harness.extend(view, 3)
        driver.delete_volume(view)
        harness.forget(view)
        with pytest.raises(exception.ManageExistingInvalidReference):
            driver.manage_existing_get_size(harness.volume_view(1), ref)

    @needs(VolumeManagementDriver, foreign="volume")
    def test_failed_manage_restores_the_original_name(self, driver, harness, foreign_object,
                                                      volume_io):
        ref = foreign_object.volume(GiB + 1)
        view = harness.volume_view(2)
        source = driver.manage_existing_source(view, ref)
        try:
            json.dumps(source)
        except TypeError:
            pytest.fail("manage_existing_source must return JSON data (it is recorded in the "
                        "flow's logbook), got %r" % (source,))
        before = driver.manage_existing_get_size(harness.volume_view(1), ref)
        harness.track(view)
        view = harness.track(_apply(view, driver.manage_existing(view, ref)))
        if volume_io is not None:
            harness.write_pattern(view, "restored")
        assert driver.restore_managed_name(view, source) is None
        harness.forget(view)
        driver.restore_managed_name(view, source)   # a revert that runs again after a crash
        try:
            size = driver.manage_existing_get_size(harness.volume_view(1), ref)
        except exception.ManageExistingInvalidReference as exc:
            raise AssertionError(
                "after a failed manage, restore_managed_name(volume, %r) must give the object "
                "its original name back: the user's reference %r no longer resolves (%s). A "
                "driver whose manage_existing renames must override restore_managed_name"
                % (source, ref, exc)) from None
        assert size == before, "the restored object changed size: %r GiB, was %r" % (
            size, before)
        again = harness.volume_view(2)
        harness.track(again)
        again = harness.track(_apply(again, driver.manage_existing(again, ref)))
        if volume_io is not None:
            harness.assert_pattern(again, "restored", "an object whose failed manage was "
                                   "reverted, managed again")

    @needs(VolumeManagementDriver)
    def test_manage_bad_reference_raises_invalid_reference(self, driver, harness):
        unknown = "conformance-missing-%s" % uuid.uuid4().hex[:8]
        bad_refs = [{}, {"bogus-key": unknown}, {"source-name": unknown},
                    {"source-id": str(uuid.uuid4())}, {"source-name": 12345},
                    {"source-name": ""}, {"source-name": None}, {"source-name": [unknown]},
                    {"source-name": "../" + unknown}, {"source-name": "--" + unknown},
                    {"source-name": "/dev/" + unknown}, "source-name", None]
        for ref in bad_refs:
            for method in (driver.manage_existing_get_size, driver.manage_existing):
                view = harness.volume_view(1)
                with pytest.raises(exception.ManageExistingInvalidReference,
                                   match=r".+") as info:
                    method(view, ref)
                assert info.value.msg, "the error must say what was wrong with %r" % (ref,)

    @needs(VolumeManagementDriver)
    def test_unmanage_then_manage_again_keeps_the_object(self, driver, harness, volume_io):
        volume = harness.create_volume(1)
        if volume_io is not None:
            harness.write_pattern(volume, "unmanaged")
        before = _safe_refs(driver.get_manageable_volumes(
            [volume], None, None, None, ["size"], ["asc"]))
        assert driver.unmanage(volume) is None
        harness.forget(volume)
        after_entries = driver.get_manageable_volumes([], None, None, None, ["size"], ["asc"])
        new = [e for e in after_entries
               if e["safe_to_manage"] and _ref_key(e["reference"]) not in before]
        assert len(new) == 1, (
            "after unmanage the object must still exist and be offered as safe to manage "
            "(exactly one new safe entry expected, got %r)" % new)
        assert new[0]["size"] == 1, new[0]
        again = harness.volume_view(1)
        harness.track(again)
        again = harness.track(_apply(again, driver.manage_existing(again, new[0]["reference"])))
        if volume_io is not None:
            harness.assert_pattern(again, "unmanaged", "a volume unmanaged then managed again")

    @needs(VolumeManagementDriver, foreign="volume")
    def test_manageable_listing_marks_own_objects_and_describes_foreign(self, driver, harness,
                                                                       foreign_object):
        ours = harness.create_volume(1)
        ref = foreign_object.volume(GiB + 1)
        entries = driver.get_manageable_volumes([ours], None, None, None, ["size"], ["asc"])
        assert isinstance(entries, list)
        for entry in entries:
            _check_manageable_entry(entry, "get_manageable_volumes")
            if entry["cinder_id"] is not None or entry["reference"].get("source-name") == \
                    ours.name:
                assert entry["cinder_id"] == ours.id and not entry["safe_to_manage"], (
                    "our own volume must be marked unsafe with cinder_id: %r" % entry)
        foreign = [e for e in entries if _ref_key(e["reference"]) == _ref_key(ref)]
        assert len(foreign) == 1, "the foreign object %r is not listed once: %r" % (ref, entries)
        assert foreign[0]["safe_to_manage"] and foreign[0]["size"] == 2, foreign[0]

    @needs(VolumeManagementDriver, foreign="volume")
    def test_manageable_listing_sorts_and_pages(self, driver, foreign_object):
        refs = {_ref_key(foreign_object.volume(size)): expected
                for size, expected in ((GiB + 1, 2), (512 * MiB, 1), (2 * GiB + 1, 3))}

        def listing(marker=None, limit=None, offset=None, key="size", direction="asc"):
            return driver.get_manageable_volumes([], marker, limit, offset, [key], [direction])

        def ours(entries):
            return [e for e in entries if _ref_key(e["reference"]) in refs]

        _check_sorting_and_paging(listing, ours)

    # ---------------------------------------------------------------------------------------
    # SnapshotManagementDriver
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver, SnapshotManagementDriver, foreign="snapshot")
    def test_manage_existing_snapshot_get_size_rounds_up(self, driver, harness, foreign_object):
        volume = harness.create_volume(2)
        for size_bytes, expected in ((GiB + 1, 2), (GiB, 1)):
            ref = foreign_object.snapshot(volume, size_bytes)
            snap = harness.snapshot_view(volume)
            got = driver.manage_existing_snapshot_get_size(snap, ref)
            assert got == expected and isinstance(got, int), (
                "manage_existing_snapshot_get_size(%r) of a %d-byte object returned %r; must "
                "be %d (whole GiB, rounded UP)" % (ref, size_bytes, got, expected))
            # Manage it so the suite deletes it before its parent volume.
            harness.track(snap)
            harness.track(_apply(snap, driver.manage_existing_snapshot(snap, ref)))

    @needs(VolumeDriver, SnapshotManagementDriver, foreign="snapshot")
    def test_manage_existing_snapshot_binds_object(self, driver, harness, foreign_object):
        volume = harness.create_volume(1)
        ref = foreign_object.snapshot(volume, GiB)
        snap = harness.snapshot_view(volume)
        update = driver.manage_existing_snapshot(snap, ref)
        check_model_update(update, "manage_existing_snapshot")
        snap = harness.track(_apply(snap, update))
        listed = driver.get_manageable_snapshots([snap], None, None, None, ["size"], ["asc"])
        offered = [e for e in listed if e["safe_to_manage"] and (
            _ref_key(e["reference"]) == _ref_key(ref) or e["reference"].get("source-name") ==
            snap.name)]
        assert not offered, "a managed snapshot is still offered as safe: %r" % offered
        harness.create_volume_from_snapshot(snap, 1)
        driver.delete_snapshot(snap)
        harness.forget(snap)
        with pytest.raises(exception.ManageExistingInvalidReference):
            driver.manage_existing_snapshot_get_size(harness.snapshot_view(volume), ref)

    @needs(VolumeDriver, SnapshotManagementDriver, foreign="snapshot")
    def test_failed_snapshot_manage_restores_the_original_name(self, driver, harness,
                                                               foreign_object):
        volume = harness.create_volume(1)
        ref = foreign_object.snapshot(volume, GiB)
        snap = harness.snapshot_view(volume)
        source = driver.manage_existing_snapshot_source(snap, ref)
        try:
            json.dumps(source)
        except TypeError:
            pytest.fail("manage_existing_snapshot_source must return JSON data, got %r"
                        % (source,))
        harness.track(snap)
        snap = harness.track(_apply(snap, driver.manage_existing_snapshot(snap, ref)))
        assert driver.restore_managed_snapshot_name(snap, source) is None
        harness.forget(snap)
        driver.restore_managed_snapshot_name(snap, source)   # again, after a crash
        try:
            driver.manage_existing_snapshot_get_size(harness.snapshot_view(volume), ref)
        except exception.ManageExistingInvalidReference as exc:
            raise AssertionError(
                "after a failed manage, restore_managed_snapshot_name(snapshot, %r) must give "
                "the object its original name back: the user's reference %r no longer "
                "resolves (%s)" % (source, ref, exc)) from None
        again = harness.snapshot_view(volume)
        harness.track(again)
        harness.track(_apply(again, driver.manage_existing_snapshot(again, ref)))

    @needs(VolumeDriver, SnapshotManagementDriver)
    def test_manage_snapshot_bad_reference_raises_invalid_reference(self, driver, harness):
        volume = harness.create_volume(1)
        unknown = "conformance-missing-%s" % uuid.uuid4().hex[:8]
        for ref in ({}, {"bogus-key": unknown}, {"source-name": unknown}, {"source-name": 7},
                    {"source-name": "../" + unknown}, {"source-name": "--" + unknown},
                    None, "source-name"):
            for method in (driver.manage_existing_snapshot_get_size,
                           driver.manage_existing_snapshot):
                with pytest.raises(exception.ManageExistingInvalidReference):
                    method(harness.snapshot_view(volume), ref)

    @needs(VolumeDriver, SnapshotManagementDriver)
    def test_unmanage_snapshot_then_manage_again_keeps_data(self, driver, harness, volume_io):
        volume = harness.create_volume(1)
        if volume_io is not None:
            harness.write_pattern(volume, "snapshot-data")
        snap = harness.create_snapshot(volume)
        before = _safe_refs(driver.get_manageable_snapshots(
            [snap], None, None, None, ["size"], ["asc"]))
        assert driver.unmanage_snapshot(snap) is None
        harness.forget(snap)
        after = driver.get_manageable_snapshots([], None, None, None, ["size"], ["asc"])
        new = [e for e in after if e["safe_to_manage"] and _ref_key(e["reference"]) not in before]
        assert len(new) == 1, (
            "after unmanage_snapshot the snapshot must still exist and be offered as safe to "
            "manage (exactly one new safe entry expected, got %r)" % new)
        _check_manageable_entry(new[0], "get_manageable_snapshots", snapshot=True)
        again = harness.snapshot_view(volume)
        harness.track(again)
        again = harness.track(_apply(again, driver.manage_existing_snapshot(
            again, new[0]["reference"])))
        if volume_io is not None:
            harness.write_pattern(volume, "volume-changed")
            harness.assert_pattern(again, "snapshot-data",
                                   "a snapshot unmanaged then managed again")

    @needs(VolumeDriver, SnapshotManagementDriver)
    def test_manageable_snapshot_listing_marks_own_snapshots(self, driver, harness):
        volume = harness.create_volume(1)
        ours = harness.create_snapshot(volume)
        entries = driver.get_manageable_snapshots([ours], None, None, None, ["size"], ["asc"])
        assert isinstance(entries, list)
        for entry in entries:
            _check_manageable_entry(entry, "get_manageable_snapshots", snapshot=True)
            if entry["cinder_id"] is not None or entry["reference"].get("source-name") == \
                    ours.name:
                assert entry["cinder_id"] == ours.id and not entry["safe_to_manage"], (
                    "our own snapshot must be marked unsafe with cinder_id: %r" % entry)

    # ---------------------------------------------------------------------------------------
    # ConsistencyGroupDriver (the interface's return conventions)
    # ---------------------------------------------------------------------------------------
    @needs(VolumeDriver, ConsistencyGroupDriver)
    def test_consistencygroup_create_update_delete_conventions(self, driver, harness,
                                                              conformance_context):
        group = harness.create_group()
        volume = harness.create_volume(1, group_id=group.id)
        result = driver.update_consistencygroup(conformance_context, group,
                                                add_volumes=[volume], remove_volumes=[])
        assert isinstance(result, (tuple, list)) and len(result) == 3, (
            "update_consistencygroup must return (model_update, add_volumes_update, "
            "remove_volumes_update), got %r" % (result,))
        check_model_update(result[0], "update_consistencygroup")
        check_member_updates(result[1], [volume], "update_consistencygroup add_volumes_update")
        check_member_updates(result[2], [], "update_consistencygroup remove_volumes_update")
        result = driver.update_consistencygroup(conformance_context, group,
                                                add_volumes=[], remove_volumes=[volume])
        check_member_updates(result[2], [volume], "update_consistencygroup "
                                                   "remove_volumes_update")

    @needs(VolumeDriver, ConsistencyGroupDriver)
    def test_delete_consistencygroup_deletes_member_volumes(self, driver, harness,
                                                           conformance_context):
        group = harness.create_group()
        members = [harness.create_volume(1, group_id=group.id) for _ in range(2)]
        before = _provisioned(driver.get_volume_stats(refresh=True))
        model, updates = check_pair(driver.delete_consistencygroup(
            conformance_context, group, members), "delete_consistencygroup")
        check_model_update(model, "delete_consistencygroup")
        check_member_updates(updates, members, "delete_consistencygroup")
        harness.groups.pop(group.id)
        after = _provisioned(driver.get_volume_stats(refresh=True))
        assert before - after == pytest.approx(2, abs=0.01), (
            "deleting a group of two 1 GiB volumes moved provisioned_capacity_gb from %r to %r"
            % (before, after))
        for member in members:   # already gone: deleting again must succeed
            driver.delete_volume(member)
            harness.forget(member)

    @needs(VolumeDriver, ConsistencyGroupDriver)
    def test_cgsnapshot_covers_every_member(self, driver, harness, conformance_context,
                                            volume_io):
        group, members, cgsnap, snaps = _group_with_cgsnapshot(harness, volume_io)
        for snap in snaps:
            harness.create_volume_from_snapshot(snap, 1)
        if volume_io is not None:
            for member in members:
                harness.write_pattern(member, "overwritten")
            for member, snap in zip(members, snaps):
                harness.assert_pattern(snap, "member-%s" % member.id,
                                       "member snapshot of a cgsnapshot")
        model, updates = check_pair(driver.delete_cgsnapshot(conformance_context, cgsnap, snaps),
                                    "delete_cgsnapshot")
        check_model_update(model, "delete_cgsnapshot")
        check_member_updates(updates, snaps, "delete_cgsnapshot")
        harness.cgsnapshots.pop(cgsnap.id)
        for snap in snaps:   # already gone: deleting again must succeed
            driver.delete_snapshot(snap)
            harness.forget(snap)

    @needs(VolumeDriver, ConsistencyGroupDriver)
    def test_consistencygroup_from_src_holds_source_data(self, driver, harness,
                                                         conformance_context, volume_io):
        group, members, cgsnap, snaps = _group_with_cgsnapshot(harness, volume_io)
        if volume_io is not None:   # a copy of the cgsnapshot must not see these writes
            for member in members:
                harness.write_pattern(member, "member-later-%s" % member.id)
        for source_kw, seed in (({"cgsnapshot": cgsnap, "snapshots": snaps}, "member-%s"),
                                ({"source_cg": group, "source_vols": members},
                                 "member-later-%s")):
            target = GroupView(id=str(uuid.uuid4()), name="conformance-copy",
                               host=driver.host)
            harness.groups[target.id] = target
            volumes = [harness.track(harness.volume_view(1, group_id=target.id))
                       for _ in members]
            model, updates = check_pair(driver.create_consistencygroup_from_src(
                conformance_context, target, volumes, **source_kw),
                "create_consistencygroup_from_src")
            check_model_update(model, "create_consistencygroup_from_src")
            check_member_updates(updates, volumes, "create_consistencygroup_from_src")
            by_id = {u["id"]: u for u in updates or []}
            volumes = [harness.track(_apply(v, by_id.get(v.id))) for v in volumes]
            if volume_io is not None:
                for member, copy in zip(members, volumes):
                    harness.assert_pattern(copy, seed % member.id,
                                           "a volume of a group created from %s"
                                           % ", ".join(source_kw))


def _checked(update, what):
    check_model_update(update, what)
    return update


def _safe_refs(entries) -> set:
    return {_ref_key(e["reference"]) for e in entries if e["safe_to_manage"]}


def _check_manageable_entry(entry: dict, what: str, snapshot: bool = False) -> None:
    keys = ["reference", "size", "safe_to_manage", "reason_not_safe", "cinder_id", "extra_info"]
    if snapshot:
        keys.append("source_reference")
    missing = [k for k in keys if k not in entry]
    assert not missing, "%s entry lacks %s: %r" % (what, missing, entry)
    ref = entry["reference"]
    assert isinstance(ref, dict) and ("source-name" in ref or "source-id" in ref), (
        "%s: reference must be a dict with source-name or source-id: %r" % (what, entry))
    assert isinstance(entry["size"], int) and entry["size"] >= 0, entry
    assert isinstance(entry["safe_to_manage"], bool), entry
    if not entry["safe_to_manage"]:
        assert entry["reason_not_safe"], "%s: unsafe entries must say why: %r" % (what, entry)
    if snapshot:
        assert isinstance(entry["source_reference"], dict), (
            "%s: source_reference must name the parent: %r" % (what, entry))


def _check_sorting_and_paging(listing, ours) -> None:
    by_size = ours(listing())
    assert [e["size"] for e in by_size] == [1, 2, 3], (
        "sort_keys=['size'] asc: our objects must come 1, 2, 3 GiB, got %r" % by_size)
    assert [e["size"] for e in ours(listing(direction="desc"))] == [3, 2, 1], (
        "sort_keys=['size'] desc must reverse the order")
    names = [_identifier(e) for e in ours(listing(key="identifier"))]
    assert names == sorted(names), "sort_keys=['identifier'] asc: got %r" % names
    names = [_identifier(e) for e in ours(listing(key="identifier", direction="desc"))]
    assert names == sorted(names, reverse=True), "sort_keys=['identifier'] desc: got %r" % names
    full = listing()
    assert len(full) >= 3
    assert listing(limit=2, offset=1) == full[1:3], "limit=2, offset=1 must return full[1:3]"
    assert listing(limit=2, offset=0) == full[0:2], "limit=2, offset=0 must return full[0:2]"
    assert listing(marker=full[0]["reference"], limit=2) == full[1:3], (
        "marker=<first reference>, limit=2 must return the two entries after the marker")
    assert listing(offset=len(full)) == [], "an offset past the end returns an empty page"


def _group_with_cgsnapshot(harness: Harness, volume_io):
    driver, ctx = harness.driver, harness.context
    group = harness.create_group()
    members = [harness.create_volume(1, group_id=group.id) for _ in range(2)]
    if volume_io is not None:
        for member in members:
            harness.write_pattern(member, "member-%s" % member.id)
    cgsnap = GroupSnapshotView(id=str(uuid.uuid4()), group_id=group.id, name="conformance")
    snaps = [harness.track(harness.snapshot_view(m, group_snapshot_id=cgsnap.id))
             for m in members]
    harness.cgsnapshots[cgsnap.id] = (cgsnap, snaps)
    model, updates = check_pair(driver.create_cgsnapshot(ctx, cgsnap, snaps),
                                "create_cgsnapshot")
    check_model_update(model, "create_cgsnapshot")
    check_member_updates(updates, snaps, "create_cgsnapshot")
    assert updates is None or {u["id"] for u in updates} == {s.id for s in snaps}, (
        "create_cgsnapshot must cover every member snapshot: updates %r for %r"
        % (updates, [s.id for s in snaps]))
    by_id = {u["id"]: u for u in updates or []}
    snaps = [harness.track(_apply(s, by_id.get(s.id))) for s in snaps]
    harness.cgsnapshots[cgsnap.id] = (cgsnap, snaps)
    return group, members, cgsnap, snaps
