"""Adopting existing backend snapshots (Cinder's snapshot management driver interface).

``existing_ref`` rules are those of :class:`~blockmgr.interface.volume_management.
VolumeManagementDriver`. The manager calls these methods with keyword arguments
(``snapshot=``, ``existing_ref=``), so argument names are part of the contract.
"""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase
from blockmgr.interface.objects import SnapshotView
from blockmgr.interface.updates import ExistingRef, ManageableSnapshotEntry, SnapshotModelUpdate


class SnapshotManagementDriver(DriverBase):

    @abc.abstractmethod
    def manage_existing_snapshot(self, snapshot: SnapshotView,
                                 existing_ref: ExistingRef) -> SnapshotModelUpdate | None:
        """Bind the backend snapshot to ``snapshot`` (rename to ``snapshot.name`` or record
        a pointer in the returned model update). Data is never changed.

        :param snapshot: SnapshotView of the record being created (its ``volume_name`` is
            the parent volume).
        :param existing_ref: ``{'source-name': ...}`` and/or ``{'source-id': ...}``.
        :returns: model update or None.
        :raises ManageExistingInvalidReference: bad or unknown reference, or an object that
            is not a snapshot of ``snapshot.volume_name``.
        """

    @abc.abstractmethod
    def manage_existing_snapshot_get_size(self, snapshot: SnapshotView,
                                          existing_ref: ExistingRef) -> int:
        """Size of the referenced snapshot in GiB, rounded UP (an ``int``). Changes nothing.

        :raises ManageExistingInvalidReference: bad or unknown reference.
        """

    @abc.abstractmethod
    def unmanage_snapshot(self, snapshot: SnapshotView) -> None:
        """Forget the snapshot. Never deletes the backend object: afterwards it is listed by
        ``get_manageable_snapshots`` as safe to manage and can be managed again."""

    def manage_existing_snapshot_source(self, snapshot: SnapshotView,
                                        existing_ref: ExistingRef) -> ExistingRef:
        """Like :meth:`VolumeManagementDriver.manage_existing_source`, for a snapshot: the
        reference naming the object before it is bound (default: a copy of
        ``existing_ref``). Changes nothing.

        :raises ManageExistingInvalidReference: bad or unknown reference.
        """
        return dict(existing_ref) if isinstance(existing_ref, dict) else existing_ref

    def restore_managed_snapshot_name(self, snapshot: SnapshotView,
                                      source_ref: ExistingRef) -> None:
        """Like :meth:`VolumeManagementDriver.restore_managed_name`, for a snapshot: undo
        :meth:`manage_existing_snapshot` after the manage failed by giving the object the
        name ``source_ref`` records. Idempotent, never deletes. The default calls
        :meth:`unmanage_snapshot`; a driver whose manage renames MUST override it.

        :raises VolumeBackendAPIException: the backend failed; the object keeps its data.
        """
        self.unmanage_snapshot(snapshot)

    @abc.abstractmethod
    def get_manageable_snapshots(self, cinder_snapshots: list[SnapshotView],
                                 marker: dict | None, limit: int | None, offset: int | None,
                                 sort_keys: list[str] | None,
                                 sort_dirs: list[str] | None) -> list[ManageableSnapshotEntry]:
        """Like ``get_manageable_volumes`` (same entry fields, ownership rule via
        ``cinder_snapshots``, sorting and paging); entries add ``source_reference``, the
        reference dict of the parent volume (e.g. ``{'source-name': 'volume-<id>'}``)."""
