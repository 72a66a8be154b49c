"""An in-memory driver implementing every interface, for flow tests and as the suite's proof.

:class:`FakeDriver` keeps volumes and snapshots as sparse byte stores keyed by backend name,
accounts capacity, can hold "foreign" objects to manage, logs every call and fails on demand::

    drv = FakeDriver(None, "fake", host="node@fake",
                     fail_on={"create_volume": exception.VolumeBackendAPIException(reason="x")})
    drv.inject_failure("delete_volume", exception.VolumeIsBusy(volume_name="v"), times=1)
    drv.inject_failure("create_snapshot", SomeError(), when="after")  # done, reply lost

It is never registered as an entry point and never a default backend; a test selects it
explicitly (object or dotted path ``blockmgr.testing.fake_driver.FakeDriver``). It passes the
conformance suite (``tests/unit/test_fake_driver_conformance.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from typing import TYPE_CHECKING, Any, Callable

from oslo_config import cfg

from blockmgr import exception
from blockmgr.drivers import manageable
from blockmgr.interface import (ConsistencyGroupDriver, SnapshotManagementDriver, VolumeDriver,
                                VolumeManagementDriver)
from blockmgr.interface.objects import GroupSnapshotView, GroupView, SnapshotView, VolumeView
from blockmgr.interface.stats import VolumeStats
from blockmgr.interface.updates import (ConnectionInfo, Connector, ExistingRef,
                                        GroupMembershipResult, GroupModelUpdate,
                                        GroupSnapshotResult, GroupVolumesResult, ManageableEntry,
                                        ManageableSnapshotEntry, SnapshotModelUpdate,
                                        VolumeModelUpdate)
from blockmgr.testing.sparse import CHUNK, SparseBytes

if TYPE_CHECKING:
    from blockmgr.context import RequestContext

GiB = manageable.GiB

FAKE_OPTS = [
    cfg.IntOpt("fake_total_capacity_gb", default=1000, min=1,
               help="Capacity the in-memory fake driver reports and enforces (GiB)."),
]


@dataclasses.dataclass(frozen=True)
class FakeCall:
    """One recorded driver call."""
    method: str
    args: tuple
    kwargs: dict


@dataclasses.dataclass
class _Failure:
    error: Any                    # exception instance/class, or callable(FakeCall) -> exc|None
    times: int | None = None      # None: every call
    when: str = "before"          # "before": nothing done; "after": done, then raise

    def build(self, call: FakeCall):
        if isinstance(self.error, BaseException):
            return self.error
        if isinstance(self.error, type) and issubclass(self.error, BaseException):
            return self.error()
        return self.error(call)


@dataclasses.dataclass
class _Snapshot:
    data: SparseBytes
    volume_name: str


def _operation(fn: Callable) -> Callable:
    """Log the call, apply injected failures, and run it under the driver's lock."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        call = FakeCall(fn.__name__, args, kwargs)
        with self._lock:
            self.calls.append(call)
            failure = self._take_failure(fn.__name__)
            if failure is not None and failure.when == "before":
                error = failure.build(call)
                if error is not None:
                    raise error
            result = fn(self, *args, **kwargs)
            if failure is not None and failure.when == "after":
                error = failure.build(call)
                if error is not None:
                    raise error
            return result
    return wrapper


class FakeDriver(VolumeDriver, VolumeManagementDriver, SnapshotManagementDriver,
                 ConsistencyGroupDriver):
    """All four interfaces, in memory. Thread-safe (one lock around every operation)."""

    VERSION = "1.0.0"

    def __init__(self, configuration=None, backend_name: str = "fake", host: str | None = None,
                 total_capacity_gb: int | None = None, fail_on: dict | None = None):
        super().__init__(configuration, backend_name, host)
        if total_capacity_gb is None:
            total_capacity_gb = getattr(configuration, "fake_total_capacity_gb", 1000)
        self.total_capacity_gb = int(total_capacity_gb)
        self.reserved_percentage = int(getattr(configuration, "reserved_percentage", 0) or 0)
        self.max_over_subscription_ratio = float(
            getattr(configuration, "max_over_subscription_ratio", 20.0) or 20.0)
        self.calls: list[FakeCall] = []
        self.volumes: dict[str, SparseBytes] = {}
        self.snapshots: dict[str, _Snapshot] = {}
        self.connections: dict[str, list] = {}
        self.groups: set[str] = set()
        self.initialized = False
        self._lock = threading.RLock()
        self._failures: dict[str, _Failure] = {}
        self._foreign_counter = itertools.count(1)
        for method, error in (fail_on or {}).items():
            self.inject_failure(method, error)

    @classmethod
    def list_opts(cls):
        return list(FAKE_OPTS)

    # --- test controls ----------------------------------------------------------------------
    def inject_failure(self, method: str, error, times: int | None = None,
                       when: str = "before") -> None:
        """Make ``method`` raise ``error`` (an exception, a class, or ``callable(call)``
        returning one or None) on its next ``times`` calls (None: always). ``when='after'``
        performs the operation first and then raises (a lost reply)."""
        if not callable(getattr(type(self), method, None)):
            raise exception.InvalidInput(reason="FakeDriver has no method %r" % method)
        if when not in ("before", "after"):
            raise exception.InvalidInput(reason="when must be 'before' or 'after'")
        self._failures[method] = _Failure(error, times, when)

    def clear_failures(self) -> None:
        self._failures.clear()

    def _take_failure(self, method: str) -> _Failure | None:
        failure = self._failures.get(method)
        if failure is None:
            return None
        if failure.times is not None:
            failure.times -= 1
            if failure.times <= 0:
                del self._failures[method]
        return failure

    def calls_to(self, method: str) -> list[FakeCall]:
        return [c for c in self.calls if c.method == method]

    def seed_foreign_volume(self, size_bytes: int, name: str | None = None,
                            data: bytes = b"") -> dict:
        """Put an object the driver did not create on the "backend"; returns its reference."""
        with self._lock:
            name = name or "foreign-%d" % next(self._foreign_counter)
            self._require_free_name(name)
            store = SparseBytes(size_bytes)
            store.write(0, data)
            self.volumes[name] = store
            return {"source-name": name}

    def seed_foreign_snapshot(self, volume_name: str, size_bytes: int,
                              name: str | None = None) -> dict:
        with self._lock:
            if volume_name not in self.volumes:
                raise exception.VolumeNotFound(volume_id=volume_name)
            name = name or "foreign-snap-%d" % next(self._foreign_counter)
            self._require_free_name(name)
            self.snapshots[name] = _Snapshot(SparseBytes(size_bytes), volume_name)
            return {"source-name": name}

    def _require_free_name(self, name: str) -> None:
        if name in self.volumes or name in self.snapshots:
            raise exception.InvalidInput(reason="%r already exists on the fake backend" % name)

    # --- helpers ------------------------------------------------------------------------------
    def _location(self, name: str) -> VolumeModelUpdate:
        return {"provider_location": "fake://%s/%s" % (self.backend_name, name)}

    def _provisioned_gb(self) -> int:
        return sum(manageable.size_in_gib_rounded_up(v.size) for v in self.volumes.values())

    def _reserve(self, size_gb: int, what: str) -> None:
        usable = self.total_capacity_gb * (1 - self.reserved_percentage / 100.0)
        limit = usable * self.max_over_subscription_ratio
        if self._provisioned_gb() + size_gb > limit:
            raise exception.VolumeBackendAPIException(
                reason="not enough space for %s (%d GiB): %d of %.0f GiB provisioned"
                % (what, size_gb, self._provisioned_gb(), limit))

    def _volume(self, view) -> SparseBytes:
        try:
            return self.volumes[view.name]
        except KeyError:
            raise exception.VolumeNotFound(volume_id=view.id) from None

    def _snapshot(self, view) -> _Snapshot:
        try:
            return self.snapshots[view.name]
        except KeyError:
            raise exception.SnapshotNotFound(snapshot_id=view.id) from None

    def _new_volume(self, volume: VolumeView, store: SparseBytes) -> VolumeModelUpdate:
        if volume.name in self.volumes:
            if self.volumes[volume.name].size == volume.size * GiB:
                return self._location(volume.name)      # re-run after a crash: done already
            raise exception.VolumeBackendAPIException(
                reason="%s exists with a different size" % volume.name)
        self._reserve(volume.size, volume.name)
        store.resize(volume.size * GiB)
        self.volumes[volume.name] = store
        return self._location(volume.name)

    def _resolve(self, table: dict, existing_ref, kind: str) -> str:
        _key, name = manageable.parse_reference(existing_ref, ("source-name", "source-id"))
        if name not in table:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason="no %s named %r on backend %s" % (kind, name, self.backend_name))
        return name

    def allocated_bytes(self, view) -> int:
        """What the fake really stores for a volume or snapshot (written chunks only): the
        measure :class:`FakeVolumeIO` hands the conformance suite's sparseness test."""
        store = self._snapshot(view).data if isinstance(view, SnapshotView) \
            else self._volume(view)
        return len(store._chunks) * CHUNK

    # --- VolumeDriver -------------------------------------------------------------------------
    @_operation
    def do_setup(self, context: RequestContext | None) -> None:
        self.initialized = True

    @_operation
    def check_for_setup_error(self) -> None:
        if not self.initialized:
            raise exception.DriverNotInitialized(driver=type(self).__name__,
                                                 reason="do_setup was not called")

    @_operation
    def get_volume_stats(self, refresh: bool = False) -> VolumeStats:
        provisioned = self._provisioned_gb()
        return {
            "volume_backend_name": self.backend_name, "vendor_name": "blockmgr",
            "driver_version": self.VERSION, "storage_protocol": "fake",
            "pools": [{
                "pool_name": self.backend_name,
                "total_capacity_gb": self.total_capacity_gb,
                "free_capacity_gb": max(0, self.total_capacity_gb - provisioned),
                "provisioned_capacity_gb": provisioned,
                "reserved_percentage": self.reserved_percentage,
                "max_over_subscription_ratio": self.max_over_subscription_ratio,
                "thin_provisioning_support": True, "thick_provisioning_support": False,
                "total_volumes": len(self.volumes),
            }],
        }

    @_operation
    def create_volume(self, volume: VolumeView) -> VolumeModelUpdate | None:
        return self._new_volume(volume, SparseBytes(0))

    @_operation
    def delete_volume(self, volume: VolumeView) -> None:
        if volume.name not in self.volumes:
            return
        dependents = [n for n, s in self.snapshots.items() if s.volume_name == volume.name]
        if dependents:
            raise exception.VolumeIsBusy(volume_name=volume.name)
        del self.volumes[volume.name]
        self.connections.pop(volume.name, None)

    @_operation
    def create_snapshot(self, snapshot: SnapshotView) -> SnapshotModelUpdate | None:
        if snapshot.name not in self.snapshots:
            source = self.volumes.get(snapshot.volume_name)
            if source is None:
                raise exception.VolumeNotFound(volume_id=snapshot.volume_id)
            self.snapshots[snapshot.name] = _Snapshot(source.copy(), snapshot.volume_name)
        return self._location(snapshot.name)

    @_operation
    def delete_snapshot(self, snapshot: SnapshotView) -> None:
        self.snapshots.pop(snapshot.name, None)

    @_operation
    def create_volume_from_snapshot(self, volume: VolumeView,
                                    snapshot: SnapshotView) -> VolumeModelUpdate | None:
        if volume.name in self.volumes:
            return self._new_volume(volume, SparseBytes(0))
        return self._new_volume(volume, self._snapshot(snapshot).data.copy())

    @_operation
    def create_cloned_volume(self, volume: VolumeView,
                             src_vref: VolumeView) -> VolumeModelUpdate | None:
        if volume.name in self.volumes:
            return self._new_volume(volume, SparseBytes(0))
        return self._new_volume(volume, self._volume(src_vref).copy())

    @_operation
    def extend_volume(self, volume: VolumeView, new_size: int) -> None:
        store = self._volume(volume)
        if new_size * GiB < store.size:
            raise exception.InvalidVolume(reason="cannot shrink %s from %d to %d bytes" % (
                volume.name, store.size, new_size * GiB))
        self._reserve(new_size - manageable.size_in_gib_rounded_up(store.size), volume.name)
        store.resize(new_size * GiB)

    @_operation
    def revert_to_snapshot(self, context: RequestContext, volume: VolumeView,
                           snapshot: SnapshotView) -> None:
        store = self._volume(volume)
        source = self._snapshot(snapshot)
        if source.volume_name != volume.name:
            raise exception.InvalidSnapshot(reason="%s is not a snapshot of %s"
                                            % (snapshot.name, volume.name))
        self.volumes[volume.name] = source.data.copy(store.size)

    @_operation
    def create_export(self, context: RequestContext, volume: VolumeView,
                      connector: Connector) -> VolumeModelUpdate | None:
        self._volume(volume)
        return None

    @_operation
    def ensure_export(self, context: RequestContext,
                      volume: VolumeView) -> VolumeModelUpdate | None:
        self._volume(volume)
        return None

    @_operation
    def remove_export(self, context: RequestContext, volume: VolumeView) -> None:
        return None

    @_operation
    def initialize_connection(self, volume: VolumeView, connector: Connector) -> ConnectionInfo:
        self._volume(volume)
        self.connections.setdefault(volume.name, []).append(connector)
        return {"driver_volume_type": "fake",
                "data": {"backend": self.backend_name, "volume_name": volume.name}}

    @_operation
    def terminate_connection(self, volume: VolumeView, connector: Connector | None,
                             **kwargs) -> None:
        attached = self.connections.get(volume.name, [])
        if connector is None:
            attached.clear()
        elif connector in attached:
            attached.remove(connector)

    # --- VolumeManagementDriver ---------------------------------------------------------------
    @_operation
    def manage_existing(self, volume: VolumeView,
                        existing_ref: ExistingRef) -> VolumeModelUpdate | None:
        name = self._resolve(self.volumes, existing_ref, "volume")
        if name != volume.name:
            if volume.name in self.volumes:
                raise exception.ManageExistingAlreadyManaged(reason=volume.name)
            self.volumes[volume.name] = self.volumes.pop(name)
            for snap in self.snapshots.values():
                if snap.volume_name == name:
                    snap.volume_name = volume.name
        return self._location(volume.name)

    @_operation
    def manage_existing_get_size(self, volume: VolumeView, existing_ref: ExistingRef) -> int:
        name = self._resolve(self.volumes, existing_ref, "volume")
        return manageable.size_in_gib_rounded_up(self.volumes[name].size)

    @_operation
    def manage_existing_source(self, volume: VolumeView,
                               existing_ref: ExistingRef) -> ExistingRef:
        return {"source-name": self._resolve(self.volumes, existing_ref, "volume")}

    @_operation
    def unmanage(self, volume: VolumeView) -> None:
        return None

    @_operation
    def restore_managed_name(self, volume: VolumeView, source_ref: ExistingRef) -> None:
        _key, original = manageable.parse_reference(source_ref, ("source-name",))
        if volume.name == original or volume.name not in self.volumes:
            return
        if original in self.volumes:
            raise exception.VolumeBackendAPIException(
                reason="cannot rename %s back to %s: the name is taken" % (volume.name,
                                                                         original))
        self.volumes[original] = self.volumes.pop(volume.name)
        for snap in self.snapshots.values():
            if snap.volume_name == volume.name:
                snap.volume_name = original

    @_operation
    def get_manageable_volumes(self, cinder_volumes: list[VolumeView], marker, limit, offset,
                               sort_keys, sort_dirs) -> list[ManageableEntry]:
        owners = {v.name: v.id for v in cinder_volumes or []}
        entries = [manageable.manageable_entry(
            {"source-name": name}, manageable.size_in_gib_rounded_up(store.size),
            cinder_id=owners.get(name),
            reason_not_safe="already managed" if name in owners else None)
            for name, store in self.volumes.items()]
        return manageable.sort_and_page(entries, marker, limit, offset, sort_keys, sort_dirs)

    # --- SnapshotManagementDriver -------------------------------------------------------------
    @_operation
    def manage_existing_snapshot(self, snapshot: SnapshotView,
                                 existing_ref: ExistingRef) -> SnapshotModelUpdate | None:
        name = self._resolve(self.snapshots, existing_ref, "snapshot")
        parent = self.snapshots[name].volume_name
        if parent != snapshot.volume_name:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason="%r is a snapshot of %s, not of %s" % (name, parent,
                                                              snapshot.volume_name))
        if name != snapshot.name:
            if snapshot.name in self.snapshots:
                raise exception.ManageExistingAlreadyManaged(reason=snapshot.name)
            self.snapshots[snapshot.name] = self.snapshots.pop(name)
        return self._location(snapshot.name)

    @_operation
    def manage_existing_snapshot_get_size(self, snapshot: SnapshotView,
                                          existing_ref: ExistingRef) -> int:
        name = self._resolve(self.snapshots, existing_ref, "snapshot")
        return manageable.size_in_gib_rounded_up(self.snapshots[name].data.size)

    @_operation
    def manage_existing_snapshot_source(self, snapshot: SnapshotView,
                                        existing_ref: ExistingRef) -> ExistingRef:
        return {"source-name": self._resolve(self.snapshots, existing_ref, "snapshot")}

    @_operation
    def unmanage_snapshot(self, snapshot: SnapshotView) -> None:
        return None

    @_operation
    def restore_managed_snapshot_name(self, snapshot: SnapshotView,
                                      source_ref: ExistingRef) -> None:
        _key, original = manageable.parse_reference(source_ref, ("source-name",))
        if snapshot.name == original or snapshot.name not in self.snapshots:
            return
        if original in self.snapshots:
            raise exception.VolumeBackendAPIException(
                reason="cannot rename %s back to %s: the name is taken" % (snapshot.name,
                                                                         original))
        self.snapshots[original] = self.snapshots.pop(snapshot.name)

    @_operation
    def get_manageable_snapshots(self, cinder_snapshots: list[SnapshotView], marker, limit,
                                 offset, sort_keys, sort_dirs) -> list[ManageableSnapshotEntry]:
        owners = {s.name: s.id for s in cinder_snapshots or []}
        entries = [manageable.manageable_entry(
            {"source-name": name}, manageable.size_in_gib_rounded_up(snap.data.size),
            cinder_id=owners.get(name),
            reason_not_safe="already managed" if name in owners else None,
            source_reference={"source-name": snap.volume_name})
            for name, snap in self.snapshots.items()]
        return manageable.sort_and_page(entries, marker, limit, offset, sort_keys, sort_dirs)

    # --- ConsistencyGroupDriver ---------------------------------------------------------------
    @_operation
    def create_consistencygroup(self, context: RequestContext,
                                group: GroupView) -> GroupModelUpdate | None:
        self.groups.add(group.id)
        return {"status": "available"}

    @_operation
    def delete_consistencygroup(self, context: RequestContext, group: GroupView,
                                volumes: list[VolumeView]) -> GroupVolumesResult:
        updates = []
        for volume in volumes:
            try:
                self.delete_volume(volume)
                updates.append({"id": volume.id, "status": "deleted"})
            except exception.VolumeIsBusy:
                updates.append({"id": volume.id, "status": "error_deleting"})
        self.groups.discard(group.id)
        failed = any(u["status"] == "error_deleting" for u in updates)
        return {"status": "error_deleting" if failed else "deleted"}, updates

    @_operation
    def update_consistencygroup(self, context: RequestContext, group: GroupView,
                                add_volumes: list[VolumeView] | None = None,
                                remove_volumes: list[VolumeView] | None = None
                                ) -> GroupMembershipResult:
        for volume in add_volumes or []:
            self._volume(volume)
        return None, None, None

    @_operation
    def create_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        # One pass under the driver lock: no write can land between two member snapshots,
        # so the set is crash-consistent across members.
        updates = []
        for snap in snapshots:
            self.create_snapshot(snap)
            updates.append({"id": snap.id, "status": "available"})
        return {"status": "available"}, updates

    @_operation
    def delete_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        updates = []
        for snap in snapshots:
            self.delete_snapshot(snap)
            updates.append({"id": snap.id, "status": "deleted"})
        return {"status": "deleted"}, updates

    @_operation
    def create_consistencygroup_from_src(self, context: RequestContext, group: GroupView,
                                         volumes: list[VolumeView],
                                         cgsnapshot: GroupSnapshotView | None = None,
                                         snapshots: list[SnapshotView] | None = None,
                                         source_cg: GroupView | None = None,
                                         source_vols: list[VolumeView] | None = None
                                         ) -> GroupVolumesResult:
        if (cgsnapshot is None) == (source_cg is None):
            raise exception.InvalidInput(reason="give exactly one source: a cgsnapshot or a "
                                                "source group")
        sources = snapshots if cgsnapshot is not None else source_vols
        if sources is None or len(sources) != len(volumes):
            raise exception.InvalidInput(
                reason="%d volumes but %s sources" % (len(volumes),
                                                      "no" if sources is None else len(sources)))
        self.groups.add(group.id)
        updates = []
        for volume, source in zip(volumes, sources):
            if isinstance(source, SnapshotView):
                update = self.create_volume_from_snapshot(volume, source)
            else:
                update = self.create_cloned_volume(volume, source)
            updates.append(dict(update or {}, id=volume.id))
        return None, updates


class FakeVolumeIO:
    """The conformance suite's ``volume_io`` adapter for :class:`FakeDriver`."""

    def __init__(self, driver: FakeDriver):
        self.driver = driver

    def _store(self, view) -> SparseBytes:
        with self.driver._lock:
            if isinstance(view, SnapshotView):
                return self.driver._snapshot(view).data
            return self.driver._volume(view)

    def write(self, view, offset: int, data: bytes) -> None:
        if isinstance(view, SnapshotView):
            raise exception.InvalidInput(reason="snapshots are read-only")
        with self.driver._lock:
            self._store(view).write(offset, data)

    def read(self, view, offset: int, length: int) -> bytes:
        with self.driver._lock:
            return self._store(view).read(offset, length)

    def allocated_bytes(self, view) -> int:
        with self.driver._lock:
            return self.driver.allocated_bytes(view)


class FakeForeignObjects:
    """The conformance suite's ``foreign_object`` factory for :class:`FakeDriver`."""

    def __init__(self, driver: FakeDriver):
        self.driver = driver

    def volume(self, size_bytes: int) -> dict:
        return self.driver.seed_foreign_volume(size_bytes)

    def snapshot(self, volume, size_bytes: int) -> dict:
        return self.driver.seed_foreign_snapshot(volume.name, size_bytes)
