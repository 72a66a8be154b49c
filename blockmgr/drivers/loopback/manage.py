"""Manage existing and unmanage for :class:`~blockmgr.drivers.loopback.driver.LoopbackDriver`.

Adopting a file of the directory as a volume or snapshot renames it to blockmgr's name;
unmanaging renames it to a name that is no longer blockmgr's (``unmanaged-volume-<id>``,
``<volume name>@snapshot-<id>``), so the data stays and a later manage can adopt it again; the
manageable listings show the files that are not blockmgr's. The methods rely on the driver's
``configuration``, ``_path``, ``_existing_size``, ``_loop`` and the other helpers of
:class:`~blockmgr.drivers.loopback.driver.LoopbackDriver`, which mixes this class in.
"""

from __future__ import annotations

import logging
import stat

from blockmgr import exception
from blockmgr.drivers.loopback import layout
from blockmgr.drivers import manageable
from blockmgr.interface.objects import SnapshotView, VolumeView
from blockmgr.interface.updates import (ExistingRef, ManageableEntry, ManageableSnapshotEntry,
                                        SnapshotModelUpdate, VolumeModelUpdate)

#: The driver's logger: one name for everything the loopback driver logs.
LOG = logging.getLogger("blockmgr.drivers.loopback.driver")


def field(obj, name: str):
    """A field of a view (or of a dict, for callers holding plain dicts)."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name)


class LoopbackManagement:
    """The manage-existing half of the loopback driver (module docstring)."""

    # --- manage existing: shared checks ---------------------------------------------------

    def _reference_name(self, existing_ref) -> str:
        def invalid(reason):
            return exception.ManageExistingInvalidReference(existing_ref=existing_ref,
                                                            reason=reason)

        if not isinstance(existing_ref, dict):
            raise invalid("a reference must be a dict like {'source-name': <file name in %s>}"
                          % self.directory)
        unknown = sorted(set(existing_ref) - {"source-name", "source-id"})
        if unknown:
            raise invalid("unknown key(s) %s; the loopback driver takes 'source-name'"
                          % ", ".join(map(repr, unknown)))
        if "source-name" not in existing_ref:
            raise invalid("'source-name' (a file name in %s) is required; the loopback "
                          "driver cannot find files by 'source-id'" % self.directory)
        name = existing_ref["source-name"]
        problem = layout.name_problem(name)
        if problem:
            raise invalid(problem)
        return name

    def _foreign_file_size(self, name: str, existing_ref) -> int:
        """Size in bytes of the foreign regular file ``name``; typed errors otherwise."""
        if layout.is_managed_name(name):
            raise exception.ManageExistingAlreadyManaged(
                reason="file %s in %s (names volume-* and snapshot-* belong to blockmgr)"
                % (name, self.directory))
        st = self._directory.stat(name)
        reason = None
        if st is None:
            reason = "there is no file named %r in %s" % (name, self.directory)
        elif stat.S_ISLNK(st.st_mode):
            reason = "%r is a symbolic link; only regular files can be managed" % name
        elif not stat.S_ISREG(st.st_mode):
            reason = "%r is not a regular file" % name
        elif st.st_size == 0:
            reason = "%r is empty; a volume needs at least one byte" % name
        else:
            devices = self._loop.attached_to(self._path(name))
            if devices:
                reason = "%r is attached to %s; detach it first" % (name, ", ".join(devices))
        if reason:
            raise exception.ManageExistingInvalidReference(existing_ref=existing_ref,
                                                           reason=reason)
        return st.st_size

    def _resumed_manage(self, source: str, target: str) -> bool:
        """True when a previous run already renamed ``source`` to ``target``."""
        return self._directory.stat(source) is None and \
            self._existing_size(target) is not None

    def _adopt(self, source: str, target: str) -> None:
        try:
            self._directory.rename(source, target)
        except FileExistsError:
            raise exception.Conflict(
                reason="cannot manage %s as %s: a file named %s already exists in %s"
                % (source, target, target, self.directory)) from None

    def _release(self, name: str, new_name: str) -> str | None:
        """Rename ``name`` to ``new_name`` (or ``new_name-N`` if taken); None if absent."""
        if self._directory.stat(name) is None:
            return None
        candidate = new_name
        for attempt in range(2, 1000):
            try:
                self._directory.rename(name, candidate)
                return candidate
            except FileExistsError:
                candidate = "%s-%d" % (new_name, attempt)
        raise exception.Conflict(reason="no free name like %s in %s" % (new_name,
                                                                         self.directory))

    def _give_back(self, name: str, original: str, fallback) -> None:
        """Rename the bound file ``name`` back to ``original`` (a failed manage's revert).

        Idempotent: nothing to do when ``name`` is absent (never renamed, or already given
        back). When ``original`` is taken meanwhile, ``fallback()`` (unmanage) keeps the data
        under a foreign name instead; nothing is ever deleted.
        """
        if self._directory.stat(name) is None:
            if self._directory.stat(original) is not None:
                LOG.info("%s already has its original name %s", name, original)
            return
        if name == original:
            return
        try:
            self._directory.rename(name, original)
        except FileExistsError:
            LOG.warning("Cannot give %s its original name back: a file named %s exists in "
                        "%s; releasing it under another name instead", name, original,
                        self.directory)
            fallback()
            return
        LOG.info("Gave %s its original name back: %s", name, self._path(original))

    # --- volume management ----------------------------------------------------------------

    def manage_existing(self, volume: VolumeView,
                        existing_ref: ExistingRef) -> VolumeModelUpdate | None:
        """Rename the file ``source-name`` to ``volume.name``. The file keeps its size; the
        volume's size is that rounded up to whole GiB (see manage_existing_get_size)."""
        source = self._reference_name(existing_ref)
        if self._resumed_manage(source, volume.name):
            return None
        self._foreign_file_size(source, existing_ref)
        self._adopt(source, volume.name)
        return None

    def manage_existing_get_size(self, volume: VolumeView, existing_ref: ExistingRef) -> int:
        source = self._reference_name(existing_ref)
        if self._resumed_manage(source, volume.name):
            return manageable.size_in_gib_rounded_up(self._existing_size(volume.name))
        return manageable.size_in_gib_rounded_up(self._foreign_file_size(source, existing_ref))

    def unmanage(self, volume: VolumeView) -> None:
        """Rename ``volume-<id>`` to ``unmanaged-volume-<id>``: data untouched, manageable."""
        new_name = self._release(volume.name, layout.UNMANAGED_PREFIX + volume.name)
        if new_name:
            LOG.info("Unmanaged %s: the file is now %s", volume.name, self._path(new_name))

    def restore_managed_name(self, volume: VolumeView, source_ref: ExistingRef) -> None:
        """Rename ``volume-<id>`` back to the ``source-name`` the manage started from
        (``unmanaged-volume-<id>`` if that name was taken meanwhile). Idempotent."""
        original = self._reference_name(source_ref)
        self._give_back(volume.name, original, lambda: self.unmanage(volume))

    def get_manageable_volumes(self, cinder_volumes: list[VolumeView], marker, limit, offset,
                               sort_keys, sort_dirs) -> list[ManageableEntry]:
        """Foreign files (not ``volume-*``/``snapshot-*`` of this backend, not snapshot-like
        ``a@b``). ``volume-*`` files that no volume of this backend owns are listed as not
        safe (rename them first)."""
        owned = {field(v, "name") for v in (cinder_volumes or [])}
        devices = self._loop.list_all()
        entries = []
        for name in self._directory.names():
            if name in owned or name.startswith(layout.SNAPSHOT_PREFIX) \
                    or layout.is_snapshot_like(name):
                continue
            entry = self._listing_entry(name, devices)
            if name.startswith(layout.VOLUME_PREFIX) and entry["safe_to_manage"]:
                entry.update(safe_to_manage=False,
                             reason_not_safe="named like a blockmgr volume but no volume of "
                                             "this backend owns it; rename the file to "
                                             "manage it")
            entries.append(entry)
        entries.sort(key=manageable.identifier)  # ties keep a stable, name order
        return manageable.sort_and_page(entries, marker, limit, offset, sort_keys, sort_dirs)

    def _listing_entry(self, name: str, devices: list[dict]) -> ManageableEntry:
        st = self._directory.stat(name)
        reason = None
        size = 0
        if st is None:
            reason = "the file disappeared while listing"
        elif not stat.S_ISREG(st.st_mode):
            reason = "not a regular file (symbolic link or special file)"
        else:
            size = manageable.size_in_gib_rounded_up(st.st_size)
            attached = self._loop.attached_to(self._path(name), devices)
            if st.st_size == 0:
                reason = "the file is empty"
            elif attached:
                reason = "attached to %s" % ", ".join(attached)
        return manageable.manageable_entry(
            {"source-name": name}, size, reason_not_safe=reason,
            extra_info=None if st is None else {"allocated_bytes": st.st_blocks * 512,
                                                "apparent_bytes": st.st_size})

    # --- snapshot management --------------------------------------------------------------

    def _check_snapshot_parent(self, snapshot, name: str, existing_ref) -> None:
        parent = layout.snapshot_parent(name)
        if parent is not None and parent != snapshot.volume_name:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason="%r is a snapshot of %r, not of volume %s (%s)"
                % (name, parent, snapshot.volume_id, snapshot.volume_name))

    def manage_existing_snapshot(self, snapshot: SnapshotView,
                                 existing_ref: ExistingRef) -> SnapshotModelUpdate | None:
        """Rename the file ``source-name`` to ``snapshot.name``. A snapshot-like name
        ``<parent>@<x>`` must have the snapshot's volume as parent; any other foreign file
        is accepted as a snapshot of that volume."""
        source = self._reference_name(existing_ref)
        if self._resumed_manage(source, snapshot.name):
            return None
        self._check_snapshot_parent(snapshot, source, existing_ref)
        self._foreign_file_size(source, existing_ref)
        self._adopt(source, snapshot.name)
        return None

    def manage_existing_snapshot_get_size(self, snapshot: SnapshotView,
                                          existing_ref: ExistingRef) -> int:
        source = self._reference_name(existing_ref)
        if self._resumed_manage(source, snapshot.name):
            return manageable.size_in_gib_rounded_up(self._existing_size(snapshot.name))
        self._check_snapshot_parent(snapshot, source, existing_ref)
        return manageable.size_in_gib_rounded_up(self._foreign_file_size(source, existing_ref))

    def unmanage_snapshot(self, snapshot: SnapshotView) -> None:
        """Rename ``snapshot-<id>`` to ``<volume name>@snapshot-<id>``: data untouched, and
        listed by get_manageable_snapshots with its parent."""
        new_name = self._release(snapshot.name, "%s%s%s" % (
            snapshot.volume_name, layout.SNAPSHOT_SEPARATOR, snapshot.name))
        if new_name:
            LOG.info("Unmanaged %s: the file is now %s", snapshot.name, self._path(new_name))

    def restore_managed_snapshot_name(self, snapshot: SnapshotView,
                                      source_ref: ExistingRef) -> None:
        """Rename ``snapshot-<id>`` back to the ``source-name`` the manage started from
        (``<volume name>@snapshot-<id>`` if that name was taken meanwhile). Idempotent."""
        original = self._reference_name(source_ref)
        self._give_back(snapshot.name, original, lambda: self.unmanage_snapshot(snapshot))

    def get_manageable_snapshots(self, cinder_snapshots: list[SnapshotView], marker, limit,
                                 offset, sort_keys, sort_dirs) -> list[ManageableSnapshotEntry]:
        """Snapshot-like foreign files ``<parent>@<x>``; ``source_reference`` names the
        parent. Safe only when the parent is a volume file (``volume-*``) present here."""
        owned = {field(s, "name") for s in (cinder_snapshots or [])}
        devices = self._loop.list_all()
        present = set(self._directory.names())
        entries = []
        for name in sorted(present):
            if name in owned or not layout.is_snapshot_like(name):
                continue
            parent = layout.snapshot_parent(name)
            entry = self._listing_entry(name, devices)
            entry["source_reference"] = {"source-name": parent}
            if entry["safe_to_manage"]:
                if not parent.startswith(layout.VOLUME_PREFIX):
                    entry.update(safe_to_manage=False,
                                 reason_not_safe="parent %r is not a managed volume" % parent)
                elif parent not in present:
                    entry.update(safe_to_manage=False,
                                 reason_not_safe="parent volume file %r does not exist"
                                                 % parent)
            entries.append(entry)
        entries.sort(key=manageable.identifier)  # ties keep a stable, name order
        return manageable.sort_and_page(entries, marker, limit, offset, sort_keys, sort_dirs)
