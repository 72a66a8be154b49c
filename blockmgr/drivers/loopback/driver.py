"""``LoopbackDriver``: volumes as sparse files in a directory, attached as loop devices.

Decisions a driver author or operator should know (also in ``docs/driver-loopback.md``):

- The directory *is* the state: ``volume-<id>`` / ``snapshot-<id>`` files (see
  :mod:`.layout`). Every file appears under its final name only once complete and fsynced,
  so an operation interrupted by a crash and run again finds either nothing or the finished
  file, and create/snapshot/clone are idempotent.
- Snapshots and clones are independent files (reflink or sparse copy), so deleting a volume
  that has snapshots is allowed and leaves the snapshots usable: ``delete_volume`` raises
  ``VolumeIsBusy`` only while the volume is attached to a loop device.
- ``unmanage`` renames ``volume-<id>`` to ``unmanaged-volume-<id>`` (and a snapshot to
  ``<volume name>@snapshot-<id>``): the data stays, the name is no longer ours, so a later
  manage-existing can adopt it again and it shows in the manageable listings.
- Consistency-group snapshots copy every member in one tight pass (all reflinks back to back,
  then all renames). With reflink each member is an atomic point in time and the members are
  milliseconds apart; that is crash-consistent for the group only if nothing writes to the
  members during the pass. Files are not frozen together.
"""

from __future__ import annotations

import copy
import logging
import os
import stat
import threading
from typing import TYPE_CHECKING

from blockmgr import exception
from blockmgr.drivers.command import CommandRunner
from blockmgr.drivers.loopback import capacity
from blockmgr.drivers.loopback import filecopy
from blockmgr.drivers.loopback import layout
from blockmgr.drivers.loopback import loopdev
from blockmgr.drivers.loopback.manage import LoopbackManagement
from blockmgr.drivers.loopback.manage import field as _field
from blockmgr.drivers.loopback import options
from blockmgr.interface import ConsistencyGroupDriver
from blockmgr.interface import SnapshotManagementDriver
from blockmgr.interface import VolumeDriver
from blockmgr.interface import VolumeManagementDriver
from blockmgr.interface.objects import GroupSnapshotView, GroupView, SnapshotView, VolumeView
from blockmgr.interface.stats import VolumeStats
from blockmgr.interface.updates import (ConnectionInfo, Connector, GroupMembershipResult,
                                        GroupModelUpdate, GroupSnapshotResult, GroupVolumesResult,
                                        SnapshotModelUpdate, VolumeModelUpdate)

if TYPE_CHECKING:
    from blockmgr.context import RequestContext

LOG = logging.getLogger(__name__)

GiB = layout.GiB


class LoopbackDriver(LoopbackManagement, VolumeDriver, VolumeManagementDriver,
                     SnapshotManagementDriver, ConsistencyGroupDriver):
    """Sparse files in ``loopback_directory``; all four capability interfaces."""

    #: ``extend_volume`` grows the file and runs ``losetup --set-capacity`` (``-c``) on its
    #: loop devices, so an attached consumer sees the new size.
    online_extend_support = True

    VERSION = "1.0.0"

    def __init__(self, configuration, backend_name: str, host: str | None = None, *,
                 command_runner: CommandRunner | None = None, privileged: bool | None = None):
        """:param command_runner: runs ``losetup`` (tests pass a recording runner).
        :param privileged: whether this process may attach loop devices; defaults to
            "running as root".
        """
        super().__init__(configuration, backend_name, host)
        self._runner = command_runner or CommandRunner()
        self._loop = loopdev.LoopDevices(self._runner)
        self._privileged = (os.geteuid() == 0) if privileged is None else privileged
        self._directory = layout.VolumeDirectory(self._configured_directory())
        self._use_reflink = False
        self._reflink_note = "not probed: do_setup has not run"
        self._set_up = False
        self._stats: VolumeStats | None = None
        self._stats_lock = threading.Lock()

    @classmethod
    def list_opts(cls):
        return options.list_opts()

    # --- configuration and setup ----------------------------------------------------------

    def _configured_directory(self) -> str:
        raw = self.configuration.loopback_directory
        if not raw:
            raise exception.ConfigurationError(section=self.backend_name,
                                               option="loopback_directory",
                                               reason="must name a directory")
        path = raw.replace(options.BACKEND_PLACEHOLDER, self.backend_name)
        if not os.path.isabs(path):
            raise exception.ConfigurationError(
                section=self.backend_name, option="loopback_directory",
                reason="%r is not an absolute path (it would depend on the working "
                       "directory of the service)" % path)
        return path

    @property
    def directory(self) -> str:
        """Absolute path of the volume directory."""
        return self._directory.path

    @property
    def uses_reflink(self) -> bool:
        """Whether snapshots and clones are reflinks (decided by ``do_setup``)."""
        return self._use_reflink

    def _generic_option(self, name: str, default):
        # Generic backend options live in the same section; a bare configuration object
        # (standalone use of the driver) may not carry them.
        return getattr(self.configuration, name, default)

    def do_setup(self, context: RequestContext | None) -> None:
        """Create the directory, drop temp files a crash left, decide on reflink."""
        try:
            self._directory.ensure_exists()
        except OSError as exc:
            raise exception.ConfigurationError(
                section=self.backend_name, option="loopback_directory",
                reason="cannot create %s: %s" % (self.directory, exc.strerror)) from None
        if not os.path.isdir(self.directory):
            raise exception.ConfigurationError(
                section=self.backend_name, option="loopback_directory",
                reason="%s exists and is not a directory" % self.directory)
        removed = self._directory.remove_leftover_temp_files()
        if removed:
            LOG.warning("Removed %d unfinished file(s) an earlier run left in %s: %s",
                        len(removed), self.directory, ", ".join(sorted(removed)))
        mode = self.configuration.loopback_use_reflink
        if mode == options.REFLINK_NEVER:
            self._use_reflink, self._reflink_note = False, "disabled by loopback_use_reflink"
        else:
            self._use_reflink, self._reflink_note = filecopy.probe_reflink(self.directory)
            if mode == options.REFLINK_ALWAYS and not self._use_reflink:
                raise exception.ConfigurationError(
                    section=self.backend_name, option="loopback_use_reflink",
                    reason="'always' but %s; put loopback_directory on btrfs or xfs "
                           "(mkfs.xfs -m reflink=1) or set it to 'auto'" % self._reflink_note)
        LOG.info("Loopback backend %s in %s: %s", self.backend_name, self.directory,
                 self._reflink_note)
        self._set_up = True

    def check_for_setup_error(self) -> None:
        if not self._set_up:
            raise exception.DriverNotInitialized(driver=type(self).__name__,
                                                 reason="do_setup has not run")
        if not os.path.isdir(self.directory):
            raise exception.ConfigurationError(
                section=self.backend_name, option="loopback_directory",
                reason="%s does not exist or is not a directory" % self.directory)
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise exception.ConfigurationError(
                section=self.backend_name, option="loopback_directory",
                reason="%s is not writable by uid %d" % (self.directory, os.geteuid()))
        if (self.configuration.loopback_attach == options.ATTACH_LOOP_DEVICE
                and not self._privileged):
            LOG.warning("Backend %s is not running as root: volumes can be created, copied "
                        "and deleted, but attaching them (losetup) will fail. Set "
                        "loopback_attach = file to hand out file paths instead.",
                        self.backend_name)

    # --- capacity -------------------------------------------------------------------------

    def get_volume_stats(self, refresh: bool = False) -> VolumeStats:
        """Cached report; ``refresh=True`` measures again (one statvfs + one stat per file)."""
        with self._stats_lock:
            if refresh or self._stats is None:
                self._stats = capacity.build_report(
                    capacity.measure(self._directory),
                    backend_name=(self._generic_option("volume_backend_name", None)
                                  or self.backend_name),
                    pool_name=self.backend_name,
                    driver_version=self.VERSION,
                    reserved_percentage=self._generic_option("reserved_percentage", 0),
                    max_over_subscription_ratio=self._generic_option(
                        "max_over_subscription_ratio", 20.0),
                    location_info="LoopbackDriver:%s:%s" % (self.host or "", self.directory),
                    reflink=self._use_reflink)
            return copy.deepcopy(self._stats)

    # --- helpers --------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return self._directory.path_of(name)

    def _existing_size(self, name: str) -> int | None:
        """Size of the regular file ``name``, None if absent; Conflict if not a file."""
        st = self._directory.stat(name)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise exception.Conflict(reason="%s in %s exists but is not a regular file"
                                     % (name, self.directory))
        return st.st_size

    def _already_there(self, name: str, size_bytes: int) -> bool:
        """True when a previous run already created ``name`` with this size; Conflict when
        a file of that name exists with another size (it is never overwritten)."""
        existing = self._existing_size(name)
        if existing is None:
            return False
        if existing == size_bytes:
            LOG.info("%s already exists with %d bytes; nothing to do", name, size_bytes)
            return True
        raise exception.Conflict(
            reason="%s already exists in %s with %d bytes, not the requested %d; it is "
                   "left untouched" % (name, self.directory, existing, size_bytes))

    def _copy_all(self, jobs: list[tuple[str, str, int]], replace: bool) -> list[str]:
        """Copy each ``(source_path, target_name, min_size_bytes)`` in one pass.

        All copies are made into temp files back to back (phase 1), then each is grown and
        renamed to its final name (phase 2), so the copies are as close in time as the
        copy method allows and no final name ever shows a partial file. ``replace=False``
        never overwrites an existing target (FileExistsError). On failure, temp files and
        the targets published by this call are removed. Returns the copy methods used.
        """
        temps: list[str] = []
        published: list[str] = []
        methods = []
        try:
            for source, name, _size in jobs:
                self._path(name)  # validate before any work
                temp = self._directory.new_temp_path(name)
                temps.append(temp)
                methods.append(filecopy.copy_file(source, temp, self._use_reflink,
                                                  layout.FILE_MODE))
            for (_source, name, size_bytes), temp in zip(jobs, temps):
                layout.grow_file(temp, size_bytes)
                if replace:
                    os.rename(temp, self._path(name))
                else:
                    layout.rename_noreplace(temp, self._path(name))
                published.append(name)
            self._directory.sync()
        except BaseException:
            for name in published:
                self._directory.remove(name)
            raise
        finally:
            for temp in temps:
                layout.unlink_quietly(temp)
        return methods

    def _copy_one(self, source_path: str, name: str, size_bytes: int) -> None:
        if self._already_there(name, size_bytes):
            return
        try:
            self._copy_all([(source_path, name, size_bytes)], replace=False)
        except FileExistsError:  # a concurrent run of the same request finished first
            if not self._already_there(name, size_bytes):
                raise

    def _source_size(self, name: str, missing_error: exception.BlockmgrError) -> int:
        size = self._existing_size(name)
        if size is None:
            raise missing_error
        return size

    # --- volumes --------------------------------------------------------------------------

    def create_volume(self, volume: VolumeView) -> VolumeModelUpdate | None:
        size_bytes = volume.size * GiB
        if self._already_there(volume.name, size_bytes):
            return None
        try:
            self._directory.create_sparse(volume.name, size_bytes)
        except FileExistsError:
            if not self._already_there(volume.name, size_bytes):
                raise
        return None

    def delete_volume(self, volume: VolumeView) -> None:
        """Deletes the file; succeeds if it is gone. Snapshots are independent files and stay.

        :raises VolumeIsBusy: the file is attached to a loop device.
        """
        path = self._path(volume.name)
        devices = self._loop.attached_to(path)
        if devices:
            raise exception.VolumeIsBusy(
                "Volume %s is attached to %s; detach it (terminate_connection) before "
                "deleting it." % (volume.name, ", ".join(devices)), volume_name=volume.name)
        if not self._directory.remove(volume.name):
            LOG.info("Volume file %s was already gone", path)

    def create_snapshot(self, snapshot: SnapshotView) -> SnapshotModelUpdate | None:
        """Copy (reflink or sparse) the volume file to ``snapshot-<id>``. Idempotent: an
        existing snapshot file is the earlier, complete point in time and is kept."""
        source = self._path(snapshot.volume_name)
        if self._existing_size(snapshot.name) is not None:
            return None
        size = self._source_size(snapshot.volume_name,
                                 exception.VolumeNotFound(volume_id=snapshot.volume_id))
        self._copy_one(source, snapshot.name, size)
        return None

    def delete_snapshot(self, snapshot: SnapshotView) -> None:
        """Deletes the snapshot file; succeeds if gone. Nothing ever depends on a snapshot
        file (volumes made from it are independent copies), so never SnapshotIsBusy."""
        if not self._directory.remove(snapshot.name):
            LOG.info("Snapshot file %s was already gone", self._path(snapshot.name))

    def create_volume_from_snapshot(self, volume: VolumeView,
                                    snapshot: SnapshotView) -> VolumeModelUpdate | None:
        source_size = self._source_size(snapshot.name,
                                         exception.SnapshotNotFound(snapshot_id=snapshot.id))
        self._copy_one(self._path(snapshot.name), volume.name,
                       self._target_size(volume, source_size, "snapshot %s" % snapshot.id))
        return None

    def create_cloned_volume(self, volume: VolumeView,
                             src_vref: VolumeView) -> VolumeModelUpdate | None:
        source_size = self._source_size(src_vref.name,
                                        exception.VolumeNotFound(volume_id=src_vref.id))
        self._copy_one(self._path(src_vref.name), volume.name,
                       self._target_size(volume, source_size, "volume %s" % src_vref.id))
        return None

    @staticmethod
    def _target_size(volume, source_size: int, what: str) -> int:
        target = volume.size * GiB
        if target < source_size:
            raise exception.InvalidInput(
                reason="volume %s of %d GiB is smaller than its source %s (%d bytes)"
                % (volume.id, volume.size, what, source_size))
        return target

    def extend_volume(self, volume: VolumeView, new_size: int) -> None:
        """Grow the file (a hole at the end) and tell attached loop devices. Never shrinks;
        extending to the current size is a no-op (a resumed extend)."""
        size = self._source_size(volume.name, exception.VolumeNotFound(volume_id=volume.id))
        new_bytes = new_size * GiB
        if new_bytes < size:
            raise exception.InvalidInput(
                reason="cannot shrink volume %s from %d bytes to %d GiB; extend only grows"
                % (volume.id, size, new_size))
        if new_bytes > size:
            self._directory.grow(volume.name, new_bytes)
        if self._loop.refresh_size(self._path(volume.name)):
            LOG.info("Attached loop devices of %s now see %d GiB", volume.name, new_size)

    def revert_to_snapshot(self, context: RequestContext, volume: VolumeView,
                           snapshot: SnapshotView) -> None:
        """Replace the volume file by a copy of the snapshot file (reflink when the
        filesystem shares blocks, else a sparse copy), grown to the volume's size: the copy
        is made under a temp name and renamed over the volume in one step, so the volume's
        name always holds either the old data or the snapshot's, never a mix. The snapshot
        file stays. Repeating it copies the same data again.

        :raises SnapshotNotFound, VolumeNotFound: a file is missing (nothing changed).
        :raises VolumeIsBusy: the volume file is attached to a loop device, which would
            keep reading the replaced file (nothing changed).
        """
        snapshot_size = self._source_size(snapshot.name,
                                          exception.SnapshotNotFound(snapshot_id=snapshot.id))
        self._source_size(volume.name, exception.VolumeNotFound(volume_id=volume.id))
        target = self._path(volume.name)
        devices = self._loop.attached_to(target)
        if devices:
            raise exception.VolumeIsBusy(
                "Volume %s is attached to %s; detach it (terminate_connection) before "
                "reverting it." % (volume.name, ", ".join(devices)), volume_name=volume.name)
        size_bytes = self._target_size(volume, snapshot_size, "snapshot %s" % snapshot.id)
        temp = self._directory.new_temp_path(volume.name)
        try:
            method = filecopy.copy_file(self._path(snapshot.name), temp, self._use_reflink,
                                        layout.FILE_MODE)
            layout.grow_file(temp, size_bytes)
            os.rename(temp, target)
            self._directory.sync()
        finally:
            layout.unlink_quietly(temp)
        LOG.info("Volume %s reverted to snapshot %s (%s)", volume.name, snapshot.name, method)

    # --- export and attach ----------------------------------------------------------------

    def create_export(self, context: RequestContext, volume: VolumeView,
                      connector: Connector) -> VolumeModelUpdate | None:
        """Nothing to export: the volume is consumed on this host."""
        return None

    def ensure_export(self, context: RequestContext,
                      volume: VolumeView) -> VolumeModelUpdate | None:
        """Nothing to re-create: loop devices survive a service restart."""
        return None

    def remove_export(self, context: RequestContext, volume: VolumeView) -> None:
        """Detach loop devices of the volume that are still attached (a consumer that never
        called terminate_connection); does nothing when there are none."""
        if self.configuration.loopback_attach == options.ATTACH_LOOP_DEVICE:
            detached = self._loop.detach_all(self._path(volume.name))
            if detached:
                LOG.info("remove_export detached %s from %s", ", ".join(detached),
                         volume.name)

    def initialize_connection(self, volume: VolumeView, connector: Connector) -> ConnectionInfo:
        """``{'driver_volume_type': 'local', 'data': {'device_path', 'file_path'}}`` (the
        shape os-brick's LOCAL connector consumes). ``device_path`` is a loop device (an
        existing attachment of the file is reused), or the file itself when
        ``loopback_attach = file``.

        :raises VolumeNotFound: no file for the volume.
        :raises VolumeDriverException: a loop device is needed but the process is not root.
        """
        path = self._path(volume.name)
        if self._existing_size(volume.name) is None:
            raise exception.VolumeNotFound(volume_id=volume.id)
        if self.configuration.loopback_attach == options.ATTACH_FILE:
            device = path
        else:
            existing = self._loop.attached_to(path)
            if existing:
                device = existing[0]
            elif not self._privileged:
                raise exception.VolumeDriverException(
                    reason="attaching volume %s needs root: losetup cannot attach %s as "
                           "uid %d. Run the volume service as root, or set "
                           "loopback_attach = file in [%s] to hand out the file path"
                           % (volume.id, path, os.geteuid(), self.backend_name))
            else:
                device = self._loop.attach(path)
        return {"driver_volume_type": "local",
                "data": {"device_path": device, "file_path": path}}

    def terminate_connection(self, volume: VolumeView, connector: Connector | None,
                             **kwargs) -> None:
        """Detach the volume's loop devices (all of them; there is one per file). Idempotent."""
        if self.configuration.loopback_attach == options.ATTACH_LOOP_DEVICE:
            self._loop.detach_all(self._path(volume.name))

    # --- consistency groups ---------------------------------------------------------------

    def create_consistencygroup(self, context: RequestContext,
                                group: GroupView) -> GroupModelUpdate | None:
        """A group is a database notion here: nothing to create on disk."""
        return {"status": "available"}

    def update_consistencygroup(self, context: RequestContext, group: GroupView,
                                add_volumes: list[VolumeView] | None = None,
                                remove_volumes: list[VolumeView] | None = None
                                ) -> GroupMembershipResult:
        """Membership is recorded by the manager; added volumes must live on this backend.

        :raises InvalidVolume: an added volume has no file here.
        """
        missing = [_field(v, "id") for v in (add_volumes or [])
                   if self._existing_size(_field(v, "name")) is None]
        if missing:
            raise exception.InvalidVolume(
                reason="volume(s) %s have no file in %s; only volumes of backend %s can join "
                       "group %s" % (", ".join(missing), self.directory, self.backend_name,
                                     _field(group, "id")))
        return None, None, None

    def delete_consistencygroup(self, context: RequestContext, group: GroupView,
                                volumes: list[VolumeView]) -> GroupVolumesResult:
        """Delete every member's file. Per-volume entries: ``deleted``; ``available`` for an
        attached (busy) volume, which makes the group ``error``; ``error_deleting`` for any
        other failure, which makes the group ``error_deleting``."""
        model_status = "deleted"
        updates = []
        for volume in volumes or []:
            try:
                self.delete_volume(volume)
                updates.append({"id": volume.id, "status": "deleted"})
            except exception.VolumeIsBusy as exc:
                LOG.warning("Group %s: %s", _field(group, "id"), exc)
                updates.append({"id": volume.id, "status": "available"})
                if model_status == "deleted":
                    model_status = "error"
            except (exception.BlockmgrError, OSError) as exc:
                LOG.error("Group %s: deleting %s failed: %s", _field(group, "id"),
                          volume.name, exc)
                updates.append({"id": volume.id, "status": "error_deleting"})
                model_status = "error_deleting"
        return {"status": model_status}, updates

    def create_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        """Snapshot every member in one pass (see the module docstring for the consistency
        this gives). All or nothing: on failure no member snapshot is left and it raises."""
        jobs = []
        for snapshot in snapshots or []:
            size = self._source_size(snapshot.volume_name,
                                     exception.VolumeNotFound(volume_id=snapshot.volume_id))
            jobs.append((self._path(snapshot.volume_name), snapshot.name, size))
        # replace=True: a rerun after a crash retakes every member, so all of them come from
        # the same pass (no snapshot of this group snapshot was handed out yet).
        self._copy_all(jobs, replace=True)
        return ({"status": "available"},
                [{"id": snapshot.id, "status": "available"} for snapshot in snapshots or []])

    def delete_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        model_status = "deleted"
        updates = []
        for snapshot in snapshots or []:
            try:
                self.delete_snapshot(snapshot)
                updates.append({"id": snapshot.id, "status": "deleted"})
            except (exception.BlockmgrError, OSError) as exc:
                LOG.error("Group snapshot %s: deleting %s failed: %s",
                          _field(cgsnapshot, "id"), snapshot.name, exc)
                updates.append({"id": snapshot.id, "status": "error_deleting"})
                model_status = "error_deleting"
        return {"status": model_status}, updates

    def create_consistencygroup_from_src(self, context: RequestContext, group: GroupView,
                                         volumes: list[VolumeView],
                                         cgsnapshot: GroupSnapshotView | None = None,
                                         snapshots: list[SnapshotView] | None = None,
                                         source_cg: GroupView | None = None,
                                         source_vols: list[VolumeView] | None = None
                                         ) -> GroupVolumesResult:
        """Create every volume from its source (member snapshot or source volume) in one
        pass. Sources are matched to volumes by ``snapshot_id``/``source_volid`` when the
        volumes carry them, else by position. All or nothing; raises on failure.

        :raises InvalidInput: no source given, or sources and volumes do not pair up.
        """
        volumes = list(volumes or [])
        if cgsnapshot is not None or snapshots:
            sources = list(snapshots or [])
            pairs = _pair(volumes, sources, "snapshot_id", "group snapshot")
            jobs = [(self._path(src.name), vol.name,
                     self._target_size(vol, self._source_size(
                         src.name, exception.SnapshotNotFound(snapshot_id=src.id)),
                         "snapshot %s" % src.id))
                    for vol, src in pairs]
        elif source_cg is not None or source_vols:
            sources = list(source_vols or [])
            pairs = _pair(volumes, sources, "source_volid", "source group")
            jobs = [(self._path(src.name), vol.name,
                     self._target_size(vol, self._source_size(
                         src.name, exception.VolumeNotFound(volume_id=src.id)),
                         "volume %s" % src.id))
                    for vol, src in pairs]
        else:
            raise exception.InvalidInput(
                reason="creating group %s from a source needs a group snapshot with its "
                       "snapshots or a source group with its volumes" % _field(group, "id"))
        # replace=True: the new volumes are still 'creating'; a rerun redoes the whole pass.
        self._copy_all(jobs, replace=True)
        return ({"status": "available"},
                [{"id": vol.id, "status": "available"} for vol in volumes])


def _pair(volumes: list, sources: list, link_field: str, what: str) -> list[tuple]:
    if len(volumes) != len(sources):
        raise exception.InvalidInput(
            reason="%d volumes cannot be created from a %s with %d members"
            % (len(volumes), what, len(sources)))
    by_id = {src.id: src for src in sources}
    links = [getattr(vol, link_field, None) for vol in volumes]
    if all(link in by_id for link in links) and len(set(links)) == len(links):
        return [(vol, by_id[link]) for vol, link in zip(volumes, links)]
    return list(zip(volumes, sources))
