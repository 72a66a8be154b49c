"""Manage existing and unmanage for :class:`~blockmgr.drivers.lvm.driver.LVMDriver`, which
mixes this class in: adopting an LV by renaming it to the volume's (or snapshot's) name,
giving a failed import its original name back, releasing an LV, and the manageable
listings. The rules: ``docs/driver-lvm.md``.
"""

from __future__ import annotations

import logging

from blockmgr import exception
from blockmgr.drivers.lvm import manageable
from blockmgr.drivers.lvm import names
from blockmgr.drivers.lvm.lvm import LogicalVolume
from blockmgr.interface.objects import SnapshotView, VolumeView
from blockmgr.interface.updates import (ExistingRef, ManageableEntry, ManageableSnapshotEntry,
                                        SnapshotModelUpdate, VolumeModelUpdate)

_REF_KEYS = ("source-name", "source-id")

#: Prefix of the name a failed manage's LV gets when its original name was taken meanwhile.
UNMANAGED_PREFIX = "unmanaged-"

LOG = logging.getLogger("blockmgr.drivers.lvm.driver")


class LVMManagement:
    """The manage/unmanage half of the LVM driver (it uses the driver's ``_lvs``,
    ``_require_vg``, ``_backend_call`` and ``lvm``)."""

    def _check_ref(self, existing_ref) -> tuple[str | None, str | None]:
        """Validate a reference before anything runs: ``source-name`` an LV name (never an
        option nor a path), ``source-id`` an LV UUID."""
        def invalid(reason):
            return exception.ManageExistingInvalidReference(existing_ref=existing_ref,
                                                            reason=reason)
        if not isinstance(existing_ref, dict):
            raise invalid("the reference must be a dict with source-name (LV name) and/or "
                          "source-id (LV UUID)")
        unknown = sorted(set(existing_ref) - set(_REF_KEYS))
        if unknown:
            raise invalid("unknown key(s) %s; use source-name (LV name) and/or source-id "
                          "(LV UUID)" % ", ".join(map(str, unknown)))
        name, lv_id = existing_ref.get("source-name"), existing_ref.get("source-id")
        if name is None and lv_id is None:
            raise invalid("give source-name (LV name) or source-id (LV UUID)")
        if name is not None:
            problem = names.lv_name_problem(name)
            if problem:
                raise invalid(problem)
        if lv_id is not None and not names.is_lv_uuid(lv_id):
            raise invalid("source-id %r is not an LV UUID (as `lvs -o lv_uuid` prints it)"
                          % (lv_id,))
        return name, lv_id

    def _find_ref(self, existing_ref, lvs: dict[str, LogicalVolume]) -> LogicalVolume:
        name, lv_id = self._check_ref(existing_ref)
        found = lvs.get(name) if name is not None else next(
            (lv for lv in lvs.values() if lv.uuid == lv_id), None)
        if found is None:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason="no such LV in volume group %s" % self.lvm.vg_name)
        if lv_id is not None and found.uuid != lv_id:
            raise exception.ManageExistingInvalidReference(
                existing_ref=existing_ref,
                reason="source-name and source-id name different LVs")
        return found

    def manage_existing(self, volume: VolumeView,
                        existing_ref: ExistingRef) -> VolumeModelUpdate | None:
        """Rename the LV to ``volume.name``. A retry after the rename succeeds.

        The driver cannot see the database, so it cannot tell an unmanaged ``volume-<uuid>``
        LV from one whose volume still exists: refusing a reference to an existing volume
        (``ManageExistingAlreadyManaged``) is the manager's check.
        """
        def refusal(lv):
            if not lv.is_plain_volume or manageable.is_snapshot_lv(lv):
                return ("LV %s is not a plain volume (attr %s: a thin pool, snapshot or "
                        "LVM-internal LV)" % (lv.name, lv.attr))
            if lv.is_open:
                return "LV %s is open (in use); renaming it would break its user" % lv.name
            return None

        self._adopt(existing_ref, self._own_name(volume.name), refusal)
        return None

    def _adopt(self, existing_ref: ExistingRef, target: str, refusal) -> None:
        """Rename the LV ``existing_ref`` names to ``target`` under the VG lock, unless it
        has that name already (a retry). ``refusal(lv)`` says why the LV cannot be adopted
        (None: it can); an LV already named ``target`` refuses it too.

        :raises ManageExistingInvalidReference: with the reason.
        """
        self._check_ref(existing_ref)
        with self.lvm.locked():
            lvs = self._lvs()
            lv = self._find_ref(existing_ref, lvs)
            if lv.name == target:
                return
            reason = refusal(lv)
            if reason is None and target in lvs:
                reason = "an LV named %s already exists" % target
            if reason:
                raise exception.ManageExistingInvalidReference(existing_ref=existing_ref,
                                                               reason=reason)
            self._backend_call(self.lvm.rename, lv.name, target)

    def _ref_size(self, existing_ref: ExistingRef) -> int:
        self._check_ref(existing_ref)
        return manageable.size_gib(self._find_ref(existing_ref, self._lvs()))

    def _ref_source(self, existing_ref: ExistingRef) -> ExistingRef:
        """``{'source-name': <the LV's current name>}``: a ``source-id`` reference is
        resolved, since after the rename nothing else records the LV's original name."""
        self._check_ref(existing_ref)
        return {"source-name": self._find_ref(existing_ref, self._lvs()).name}

    def manage_existing_get_size(self, volume: VolumeView, existing_ref: ExistingRef) -> int:
        return self._ref_size(existing_ref)

    def manage_existing_source(self, volume: VolumeView,
                               existing_ref: ExistingRef) -> ExistingRef:
        """``{'source-name': <the LV's current name>}`` (``_ref_source``)."""
        return self._ref_source(existing_ref)

    def unmanage(self, volume: VolumeView) -> None:
        """Nothing to do: the LV keeps its name and data; blockmgr just forgets it."""
        return None

    def _rename_back(self, current: str, source_ref, what: str) -> None:
        """Rename LV ``current`` to the ``source-name`` of ``source_ref``; idempotent."""
        original, _lv_id = self._check_ref(source_ref)
        if original is None:
            raise exception.ManageExistingInvalidReference(
                existing_ref=source_ref,
                reason="restoring a name needs the LV's original source-name")
        with self.lvm.locked():
            lvs = self._lvs()
            if current == original or current not in lvs:
                return   # never renamed, or already given back
            target = original
            if original in lvs:
                # Taken meanwhile: never take another LV's name; release this one under a
                # name no volume or snapshot of blockmgr has (manageable, data intact).
                target = self._free_name(UNMANAGED_PREFIX + current, lvs)
                LOG.warning("Cannot give LV %s its original name %s back (%s): an LV of that "
                            "name exists in volume group %s; releasing it as %s instead",
                            current, original, what, self.lvm.vg_name, target)
            self._backend_call(self.lvm.rename, current, target)
        LOG.info("Gave LV %s back as %s (%s)", current, target, what)

    def _free_name(self, base: str, lvs) -> str:
        for candidate in [base] + ["%s-%d" % (base, n) for n in range(2, 1000)]:
            if candidate not in lvs and names.lv_name_problem(candidate) is None:
                return candidate
        raise exception.VolumeBackendAPIException(
            reason="no free LV name like %s in volume group %s" % (base, self.lvm.vg_name))

    def restore_managed_name(self, volume: VolumeView, source_ref: ExistingRef) -> None:
        """Rename ``volume-<id>`` back to the LV name the manage started from."""
        self._rename_back(self._own_name(volume.name), source_ref, "volume %s" % volume.id)

    def get_manageable_volumes(self, cinder_volumes: list[VolumeView], marker, limit, offset,
                               sort_keys, sort_dirs) -> list[ManageableEntry]:
        manageable.paginate([], None, None, None, sort_keys, sort_dirs)  # validate first
        entries = manageable.volume_entries(list(self._lvs().values()), cinder_volumes)
        return manageable.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    # --- snapshot management --------------------------------------------------------------

    def manage_existing_snapshot(self, snapshot: SnapshotView,
                                 existing_ref: ExistingRef) -> SnapshotModelUpdate | None:
        """Rename a snapshot LV of the snapshot's volume to ``_snapshot-<id>``. Unlike
        Cinder, the LV must really be a snapshot of ``snapshot.volume_name``."""
        origin = self._own_name(snapshot.volume_name)

        def refusal(lv):
            if not lv.is_snapshot:
                return "LV %s is not a snapshot (attr %s)" % (lv.name, lv.attr)
            if lv.origin != origin:
                return "LV %s is a snapshot of %s, not of the snapshot's volume %s" % (
                    lv.name, lv.origin or "(unknown)", origin)
            if lv.is_open:
                return "LV %s is open (in use)" % lv.name
            return None

        self._adopt(existing_ref, names.snapshot_lv_name(snapshot), refusal)
        return None

    def manage_existing_snapshot_get_size(self, snapshot: SnapshotView,
                                          existing_ref: ExistingRef) -> int:
        return self._ref_size(existing_ref)

    def manage_existing_snapshot_source(self, snapshot: SnapshotView,
                                        existing_ref: ExistingRef) -> ExistingRef:
        """``{'source-name': <the snapshot LV's current name>}`` (``_ref_source``)."""
        return self._ref_source(existing_ref)

    def unmanage_snapshot(self, snapshot: SnapshotView) -> None:
        """Nothing to do: the snapshot LV stays as it is."""
        return None

    def restore_managed_snapshot_name(self, snapshot: SnapshotView,
                                      source_ref: ExistingRef) -> None:
        """Rename ``_snapshot-<id>`` back to the LV name the manage started from."""
        self._rename_back(names.snapshot_lv_name(snapshot), source_ref,
                          "snapshot %s" % snapshot.id)

    def get_manageable_snapshots(self, cinder_snapshots: list[SnapshotView], marker, limit,
                                 offset, sort_keys, sort_dirs) -> list[ManageableSnapshotEntry]:
        manageable.paginate([], None, None, None, sort_keys, sort_dirs)  # validate first
        entries = manageable.snapshot_entries(list(self._lvs().values()), cinder_snapshots)
        return manageable.paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    # --- consistency groups ---------------------------------------------------------------
    # LVM has no group object and no multi-LV atomic snapshot. A group snapshot takes every
    # member's snapshot in one pass while holding the VG lock (no other metadata change
    # interleaves), but one lvcreate after another: each member is crash-consistent on its
    # own; across members the set is consistent only if writers are quiesced (e.g. fsfreeze)
    # for the duration of the call.
