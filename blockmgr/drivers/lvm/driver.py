"""The LVM reference driver: volumes are LVs of one volume group, thick or thin.

Naming: a volume's LV is ``volume.name`` (``volume-<id>``); a snapshot's LV is
``_snapshot-<id>`` (lvm2 reserves names starting with ``snapshot``); a thick clone copies from
a temporary ``_clone-snap-<new id>``. The thin pool is ``<volume_group>-pool``.

Attach is local only: ``initialize_connection`` returns the LV's device path for os-brick's
LOCAL connector. This driver sets up no iSCSI/NVMe target.

All lvm2 commands go through :class:`~blockmgr.drivers.lvm.lvm.LVMCommands` (and from there the
one command chokepoint); all metadata changes of a VG are serialised by its per-VG lock, held
for check-then-act sequences but never across a data copy.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from typing import TYPE_CHECKING

from blockmgr import exception
from blockmgr.drivers.command import CommandRunner
from blockmgr.drivers.lvm import datacopy
from blockmgr.drivers.lvm import manageable
from blockmgr.drivers.lvm import names
from blockmgr.drivers.lvm import options
from blockmgr.drivers.lvm.lvm import GiB, LogicalVolume, LVMCommands
from blockmgr.drivers.lvm.manage import LVMManagement
from blockmgr.interface import (ConsistencyGroupDriver, SnapshotManagementDriver, VolumeDriver,
                                VolumeManagementDriver)
from blockmgr.interface.objects import GroupSnapshotView, GroupView, SnapshotView, VolumeView
from blockmgr.interface.stats import PoolStats, VolumeStats
from blockmgr.interface.updates import (ConnectionInfo, Connector, GroupMembershipResult,
                                        GroupModelUpdate, GroupSnapshotResult, GroupVolumesResult,
                                        SnapshotModelUpdate, VolumeModelUpdate)

if TYPE_CHECKING:
    from blockmgr.context import RequestContext

LOG = logging.getLogger(__name__)


class LVMDriver(LVMManagement, VolumeDriver, VolumeManagementDriver,
                SnapshotManagementDriver, ConsistencyGroupDriver):
    """Volumes as LVM logical volumes (see the module docstring and docs/driver-lvm.md)."""

    VERSION = "1.0.0"
    VENDOR = "Open Source"
    STORAGE_PROTOCOL = "local"

    def __init__(self, configuration, backend_name: str, host: str | None = None, *,
                 runner: CommandRunner | None = None):
        super().__init__(configuration, backend_name, host)
        conf = configuration
        self.thin = conf.lvm_type == options.LVM_TYPE_THIN
        self.driverloaded = bool(conf.lvm_driverloaded)
        self.runner = runner or CommandRunner(timeout=conf.lvm_command_timeout)
        problem = names.vg_name_problem(conf.volume_group)
        if problem:
            raise exception.ConfigurationError(section=backend_name, option="volume_group",
                                               reason=problem)
        self.pool_name = "%s-pool" % conf.volume_group
        self.lvm = LVMCommands(conf.volume_group, self.runner, driverloaded=self.driverloaded,
                               lvm_system_dir=self._lvm_system_dir())
        self._stats: VolumeStats | None = None

    @classmethod
    def list_opts(cls):
        return list(options.OPTS)

    # --- setup ----------------------------------------------------------------------------

    def _lvm_system_dir(self) -> str | None:
        path = self.configuration.lvm_conf_file
        if not path:
            return None
        if os.path.basename(path) != "lvm.conf":
            raise exception.ConfigurationError(
                section=self.backend_name, option="lvm_conf_file",
                reason="%r must be a file named lvm.conf (lvm2 reads <LVM_SYSTEM_DIR>/lvm.conf)"
                       % path)
        return os.path.dirname(os.path.abspath(path))

    def do_setup(self, context: RequestContext | None) -> None:
        """Check the VG and, for thin, create the pool from 95% of the VG's free space."""
        path = self.configuration.lvm_conf_file
        if path and not os.path.isfile(path):
            raise exception.ConfigurationError(section=self.backend_name,
                                               option="lvm_conf_file",
                                               reason="%r does not exist" % path)
        self._require_vg()
        if self.thin:
            with self.lvm.locked():
                if self._backend_call(self.lvm.get_lv, self.pool_name) is None:
                    self._backend_call(self.lvm.create_thin_pool, self.pool_name)
        self.check_for_setup_error()

    def check_for_setup_error(self) -> None:
        self._require_vg()
        if self.thin:
            pool = self._backend_call(self.lvm.get_lv, self.pool_name)
            if pool is None or not pool.is_thin_pool:
                raise exception.ConfigurationError(
                    section=self.backend_name, option="lvm_type",
                    reason="lvm_type = thin but %s/%s is %s" % (
                        self.lvm.vg_name, self.pool_name,
                        "missing" if pool is None else "not a thin pool (attr %s)" % pool.attr))

    def _require_vg(self):
        try:
            vg = self.lvm.vg_info()
        except exception.CommandExecutionError as exc:
            raise exception.BackendUnavailable(backend=self.backend_name,
                                               reason=exc.msg) from None
        if vg is None:
            raise exception.ConfigurationError(
                section=self.backend_name, option="volume_group",
                reason="volume group %r does not exist; create it with pvcreate and vgcreate"
                       % self.lvm.vg_name)
        return vg

    def _backend_call(self, func, *args):
        """Run a command-layer call, turning a command failure into the backend error."""
        try:
            return func(*args)
        except exception.CommandExecutionError as exc:
            raise exception.VolumeBackendAPIException(reason=exc.msg) from None

    def _lvs(self) -> dict[str, LogicalVolume]:
        return {lv.name: lv for lv in self._backend_call(self.lvm.list_lvs)}

    # --- stats ----------------------------------------------------------------------------

    def get_volume_stats(self, refresh: bool = False) -> VolumeStats:
        """Capacity from ``vgs`` (thick) or ``vgs`` + ``lvs`` (thin), cached until the next
        ``refresh=True``: a request never costs an lvm2 call."""
        if refresh or self._stats is None:
            self._stats = self._build_stats()
        return copy.deepcopy(self._stats)

    def _build_stats(self) -> VolumeStats:
        try:
            vg = self._require_vg()
        except exception.ConfigurationError as exc:   # the VG vanished after setup
            raise exception.BackendUnavailable(backend=self.backend_name,
                                               reason=exc.msg) from None
        conf = self.configuration
        if self.thin:
            lvs = self._lvs()
            pool = lvs.get(self.pool_name)
            if pool is None:
                raise exception.BackendUnavailable(
                    backend=self.backend_name,
                    reason="thin pool %s/%s is missing" % (vg.name, self.pool_name))
            used = pool.size_bytes * (pool.data_percent or 0.0) / 100.0
            total, free = pool.size_bytes, max(pool.size_bytes - used, 0.0)
            members = [lv for lv in lvs.values() if lv.pool_lv == self.pool_name]
            provisioned = sum(lv.size_bytes for lv in members)
            total_volumes = len(members)
        else:
            total, free = vg.size_bytes, vg.free_bytes
            provisioned = vg.size_bytes - vg.free_bytes
            total_volumes = vg.lv_count
        backend_name = conf.volume_backend_name or self.backend_name
        pool_stats: PoolStats = {
            "pool_name": backend_name,
            "total_capacity_gb": _gib(total),
            "free_capacity_gb": min(_gib(free), _gib(total)),
            "provisioned_capacity_gb": _gib(provisioned),
            "reserved_percentage": conf.reserved_percentage,
            "max_over_subscription_ratio": conf.max_over_subscription_ratio,
            "thin_provisioning_support": self.thin,
            "thick_provisioning_support": not self.thin,
            "total_volumes": total_volumes,
            "location_info": "LVMDriver:%s:%s:%s" % (self.host or "", vg.name,
                                                     conf.lvm_type),
            "QoS_support": False,
            "multiattach": False,
            "backend_state": "up",
        }
        return {"volume_backend_name": backend_name, "vendor_name": self.VENDOR,
                "driver_version": self.VERSION, "storage_protocol": self.STORAGE_PROTOCOL,
                "sparse_copy_volume": self.thin, "pools": [pool_stats]}

    # --- volumes --------------------------------------------------------------------------

    def _own_name(self, name: str) -> str:
        """Validate a name blockmgr built itself (from the database)."""
        problem = names.lv_name_problem(name)
        if problem:
            raise exception.InvalidInput(reason="cannot use it as an LV name: " + problem)
        return name

    def _create_lv(self, name: str, size_gib: int) -> None:
        if self.thin:
            self.lvm.create_thin(name, size_gib, self.pool_name)
        else:
            self.lvm.create_thick(name, size_gib)

    def create_volume(self, volume: VolumeView) -> VolumeModelUpdate | None:
        """``lvcreate``; a retry that finds the LV already there with the size succeeds."""
        name = self._own_name(volume.name)
        with self.lvm.locked():
            try:
                self._create_lv(name, volume.size)
            except exception.CommandExecutionError as exc:
                existing = self._lvs().get(name)
                if existing is not None and existing.size_bytes == volume.size * GiB:
                    return None
                raise exception.VolumeBackendAPIException(
                    reason="creating %s/%s failed: %s" % (self.lvm.vg_name, name, exc.msg)
                ) from None
        return None

    def delete_volume(self, volume: VolumeView) -> None:
        """Remove the LV; absent is success. A thick origin of snapshots is busy (lvremove
        would take its snapshots with it). Thin snapshots are independent LVs and survive
        the removal of their origin, so a thin volume is never busy."""
        name = self._own_name(volume.name)
        with self.lvm.locked():
            lv = self._lvs().get(name)
            if lv is None:
                return
            if lv.is_thick_origin:
                raise exception.VolumeIsBusy(volume_name=name)
            if self._should_wipe(lv):
                self._backend_call(self.lvm.set_active, name, True)
                self._backend_call(self._dd_zero, name, lv.size_bytes)
            self._backend_call(self.lvm.remove, name)

    def _should_wipe(self, lv: LogicalVolume) -> bool:
        return (self.configuration.volume_clear == "zero" and self.driverloaded
                and not lv.is_thin_volume)

    def _dd_zero(self, name: str, size_bytes: int) -> None:
        datacopy.zero_device(self.runner, self.lvm.device_path(name), size_bytes,
                             self.configuration.volume_dd_blocksize,
                             timeout=self.configuration.volume_copy_timeout)

    def _dd_copy(self, source: str, target: str, size_bytes: int) -> None:
        datacopy.copy_device(self.runner, self.lvm.device_path(source),
                             self.lvm.device_path(target), size_bytes,
                             self.configuration.volume_dd_blocksize,
                             timeout=self.configuration.volume_copy_timeout)

    def _require_data_access(self, operation: str) -> None:
        if not self.driverloaded:
            raise exception.Unsupported(
                operation=operation,
                what="backend %s (lvm_driverloaded = false: without device-mapper no LV can "
                     "be activated, so no data can be read or written)" % self.backend_name)

    def extend_volume(self, volume: VolumeView, new_size: int) -> None:
        """``lvextend``; a thick origin of snapshots is deactivated around it (lvm2 resizes
        snapshot origins only while inactive)."""
        name = self._own_name(volume.name)
        with self.lvm.locked():
            lv = self._require_lv(name, "volume %s" % volume.id)
            if lv.size_bytes == new_size * GiB:
                return
            if lv.size_bytes > new_size * GiB:
                raise exception.InvalidInput(
                    reason="volume %s is %d bytes; extending to %d GiB would shrink it"
                           % (volume.id, lv.size_bytes, new_size))
            if lv.is_thick_origin and self.driverloaded:
                self._backend_call(self.lvm.set_active, name, False)
                try:
                    self._backend_call(self.lvm.extend, name, new_size)
                finally:
                    self._backend_call(self.lvm.set_active, name, True)
            else:
                self._backend_call(self.lvm.extend, name, new_size)

    def _require_lv(self, name: str, what: str, lvs=None) -> LogicalVolume:
        lv = (lvs if lvs is not None else self._lvs()).get(name)
        if lv is None:
            raise exception.VolumeBackendAPIException(
                reason="LV %s/%s of %s does not exist" % (self.lvm.vg_name, name, what))
        return lv

    # --- snapshots ------------------------------------------------------------------------

    def create_snapshot(self, snapshot: SnapshotView) -> SnapshotModelUpdate | None:
        """Thin origin: thin snapshot. Thick origin: COW snapshot as large as the origin, so
        it can never overflow and become invalid. Idempotent."""
        origin = self._own_name(snapshot.volume_name)
        snap = names.snapshot_lv_name(snapshot)
        with self.lvm.locked():
            lvs = self._lvs()
            existing = lvs.get(snap)
            if existing is not None:
                if existing.origin == origin:
                    return None
                raise exception.VolumeBackendAPIException(
                    reason="LV %s/%s exists but is not a snapshot of %s"
                           % (self.lvm.vg_name, snap, origin))
            source = self._require_lv(origin, "volume %s" % snapshot.volume_id, lvs)
            size = None if source.is_thin_volume else max(
                snapshot.volume_size, manageable.size_gib(source))
            self._backend_call(self.lvm.create_snapshot, snap, origin, size)
        return None

    def delete_snapshot(self, snapshot: SnapshotView) -> None:
        """Remove the snapshot LV; absent is success. Never busy: volumes made from a snapshot
        are copies (thick) or independent thin LVs."""
        snap = names.snapshot_lv_name(snapshot)
        with self.lvm.locked():
            if snap in self._lvs():
                self._backend_call(self.lvm.remove, snap)

    def revert_to_snapshot(self, context: RequestContext, volume: VolumeView,
                           snapshot: SnapshotView) -> None:
        """``lvconvert --merge`` of the snapshot LV into the volume's LV (thick COW or thin
        snapshot), then the snapshot is taken again under its name, as lvm2 consumes a
        merged snapshot.

        Crash-safe through a tag on the volume's LV (``blockmgr-revert-<snapshot id>``),
        added before the merge and removed once the snapshot is back: a run that finds the
        snapshot LV gone *and* the tag knows the merge happened and only takes the snapshot
        again; without the tag a missing snapshot is ``SnapshotNotFound`` (nothing changed).
        A run that finds the tag and the snapshot merges again: the snapshot then is either
        the one the merge did not reach, or the one already taken again of the reverted
        data, so the result is the snapshot's data either way.

        :raises Unsupported: ``lvm_driverloaded = false`` (no data can be moved).
        :raises VolumeIsBusy: the volume's LV is open (lvm2 would defer the merge to its
            next activation); nothing changed.
        :raises SnapshotNotFound: the snapshot LV does not exist; nothing changed.
        :raises VolumeBackendAPIException: an lvm2 command failed.
        """
        self._require_data_access("revert_to_snapshot")
        origin = self._own_name(volume.name)
        snap = names.snapshot_lv_name(snapshot)
        tag = names.REVERT_TAG_PREFIX + snapshot.id
        with self.lvm.locked():
            lvs = self._lvs()
            lv = self._require_lv(origin, "volume %s" % volume.id, lvs)
            begun = tag in lv.tags
            existing = lvs.get(snap)
            if existing is None and not begun:
                raise exception.SnapshotNotFound(snapshot_id=snapshot.id)
            if existing is not None:
                if existing.origin != origin:
                    raise exception.VolumeBackendAPIException(
                        reason="LV %s/%s is not a snapshot of %s; nothing reverted"
                               % (self.lvm.vg_name, snap, origin))
                if lv.is_open and not begun:
                    raise exception.VolumeIsBusy(
                        "Volume %s is open (attached or in use on this host); close it "
                        "before reverting it." % origin, volume_name=origin)
                if not begun:
                    self._backend_call(self.lvm.add_tag, origin, tag)
                if not existing.is_merging_snapshot:
                    self._backend_call(self.lvm.merge_snapshot, snap)
                if snap in self._lvs():
                    raise exception.VolumeBackendAPIException(
                        reason="the merge of %s/%s into %s has not completed; lvm2 finishes it "
                               "when %s is next activated" % (self.lvm.vg_name, snap, origin,
                                                              origin))
            size = None if lv.is_thin_volume else max(snapshot.volume_size,
                                                      manageable.size_gib(lv))
            self._backend_call(self.lvm.create_snapshot, snap, origin, size)
            self._backend_call(self.lvm.delete_tag, origin, tag)

    def create_volume_from_snapshot(self, volume: VolumeView,
                                    snapshot: SnapshotView) -> VolumeModelUpdate | None:
        """Thin snapshot: a thin snapshot of it, grown to ``volume.size``. Thick snapshot: a new
        LV and a dd copy (needs device-mapper)."""
        snap = names.snapshot_lv_name(snapshot)
        source = self._require_lv(snap, "snapshot %s" % snapshot.id)
        return self._create_copy(volume, source)

    def create_cloned_volume(self, volume: VolumeView,
                             src_vref: VolumeView) -> VolumeModelUpdate | None:
        """Thin source: a thin snapshot of it. Thick source: copy from a temporary COW snapshot
        (a consistent point in time even if the source is in use), always removed after."""
        src_name = self._own_name(src_vref.name)
        source = self._require_lv(src_name, "volume %s" % src_vref.id)
        if source.is_thin_volume:
            return self._create_copy(volume, source)
        self._require_data_access("clone of a thick volume")
        temp = names.clone_snapshot_lv_name(volume)
        with self.lvm.locked():
            if temp in self._lvs():  # left by an interrupted attempt
                self._backend_call(self.lvm.remove, temp)
            self._backend_call(self.lvm.create_snapshot, temp, src_name,
                               manageable.size_gib(source))
        try:
            return self._create_copy(volume, self._require_lv(temp, "clone %s" % volume.id))
        finally:
            with self.lvm.locked():
                self._backend_call(self.lvm.remove, temp)

    def _create_copy(self, volume: VolumeView,
                     source: LogicalVolume) -> VolumeModelUpdate | None:
        name = self._own_name(volume.name)
        if volume.size * GiB < source.data_size_bytes:
            raise exception.InvalidInput(
                reason="volume %s (%d GiB) is smaller than its source %s (%d bytes)"
                       % (volume.id, volume.size, source.name, source.data_size_bytes))
        if source.is_thin_volume:
            with self.lvm.locked():
                existing = self._lvs().get(name)
                if existing is None:
                    self._backend_call(self.lvm.create_snapshot, name, source.name, None)
                elif existing.origin != source.name:
                    raise exception.VolumeBackendAPIException(
                        reason="LV %s/%s exists but is not a copy of %s"
                               % (self.lvm.vg_name, name, source.name))
                if volume.size * GiB > source.size_bytes and (
                        existing is None or existing.size_bytes < volume.size * GiB):
                    self._backend_call(self.lvm.extend, name, volume.size)
            return None
        self._require_data_access("copy from a thick snapshot")
        with self.lvm.locked():
            if name not in self._lvs():
                self._backend_call(self._create_lv, name, volume.size)
            self._backend_call(self.lvm.set_active, source.name, True)
        try:
            # The copy runs outside the VG lock: it can take minutes.
            self._backend_call(self._dd_copy, source.name, name, source.data_size_bytes)
        except exception.BlockmgrError:
            with self.lvm.locked():
                self._backend_call(self.lvm.remove, name)
            raise
        return None

    # --- exports --------------------------------------------------------------------------

    def create_export(self, context: RequestContext, volume: VolumeView,
                      connector: Connector) -> VolumeModelUpdate | None:
        """Activate the LV; the device node is the export (no target is set up)."""
        self._require_data_access("attach")
        self._backend_call(self.lvm.set_active, self._own_name(volume.name), True)
        return None

    def ensure_export(self, context: RequestContext,
                      volume: VolumeView) -> VolumeModelUpdate | None:
        return self.create_export(context, volume, None)

    def remove_export(self, context: RequestContext, volume: VolumeView) -> None:
        """Nothing to tear down: the LV stays active, as it was created."""
        return None

    def initialize_connection(self, volume: VolumeView, connector: Connector) -> ConnectionInfo:
        self._require_data_access("attach")
        return {"driver_volume_type": "local",
                "data": {"device_path": self.lvm.device_path(self._own_name(volume.name))}}

    def terminate_connection(self, volume: VolumeView, connector: Connector | None,
                             **kwargs) -> None:
        """A local device path holds no per-connector state."""
        return None

    # --- manage existing ------------------------------------------------------------------

    def create_consistencygroup(self, context: RequestContext,
                                group: GroupView) -> GroupModelUpdate | None:
        return {"status": "available"}

    def delete_consistencygroup(self, context: RequestContext, group: GroupView,
                                volumes: list[VolumeView]) -> GroupVolumesResult:
        updates, failed = [], False
        for volume in volumes:
            try:
                self.delete_volume(volume)
                updates.append({"id": volume.id, "status": "deleted"})
            except exception.BlockmgrError:
                failed = True
                updates.append({"id": volume.id, "status": "error_deleting"})
        return {"status": "error_deleting" if failed else "deleted"}, updates

    def update_consistencygroup(self, context: RequestContext, group: GroupView,
                                add_volumes: list[VolumeView] | None = None,
                                remove_volumes: list[VolumeView] | None = None
                                ) -> GroupMembershipResult:
        """Membership lives in the database only; LVM has nothing to change."""
        return None, None, None

    def create_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        """All members in one pass; on any failure the ones already taken are removed."""
        done = []
        with self.lvm.locked():
            try:
                for snapshot in snapshots:
                    self.create_snapshot(snapshot)
                    done.append(snapshot)
            except exception.BlockmgrError:
                for snapshot in done:
                    self.delete_snapshot(snapshot)
                return ({"status": "error"},
                        [{"id": s.id, "status": "error"} for s in snapshots])
        return {"status": "available"}, [{"id": s.id, "status": "available"} for s in snapshots]

    def delete_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        updates, failed = [], False
        for snapshot in snapshots:
            try:
                self.delete_snapshot(snapshot)
                updates.append({"id": snapshot.id, "status": "deleted"})
            except exception.BlockmgrError:
                failed = True
                updates.append({"id": snapshot.id, "status": "error_deleting"})
        return {"status": "error_deleting" if failed else "deleted"}, updates

    def create_consistencygroup_from_src(self, context: RequestContext, group: GroupView,
                                         volumes: list[VolumeView],
                                         cgsnapshot: GroupSnapshotView | None = None,
                                         snapshots: list[SnapshotView] | None = None,
                                         source_cg: GroupView | None = None,
                                         source_vols: list[VolumeView] | None = None
                                         ) -> GroupVolumesResult:
        """Each volume from its snapshot (``volume.snapshot_id``) or source volume
        (``volume.source_volid``); on failure the volumes already made are deleted."""
        if cgsnapshot is not None and snapshots:
            by_id = {s.id: s for s in snapshots}
            make = self.create_volume_from_snapshot
            pairs = [(v, by_id.get(v.snapshot_id)) for v in volumes]
        elif source_cg is not None and source_vols:
            by_id = {v.id: v for v in source_vols}
            make = self.create_cloned_volume
            pairs = [(v, by_id.get(v.source_volid)) for v in volumes]
        else:
            raise exception.InvalidInput(
                reason="create_consistencygroup_from_src needs a cgsnapshot with snapshots or "
                       "a source group with source volumes")
        missing = [v.id for v, source in pairs if source is None]
        if missing:
            raise exception.InvalidInput(
                reason="volumes %s have no matching source in the request" % ", ".join(missing))
        made = []
        try:
            for volume, source in pairs:
                make(volume, source)
                made.append(volume)
        except exception.BlockmgrError:
            for volume in made:
                self.delete_volume(volume)
            raise
        return None, None


def _gib(size_bytes: float) -> float:
    return math.floor(size_bytes / GiB * 100) / 100.0
