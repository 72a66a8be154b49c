"""Adopting existing backend snapshots (seed ``003``: Cinder's snapshot management interface)."""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase


class SnapshotManagementDriver(DriverBase):

    @abc.abstractmethod
    def manage_existing_snapshot(self, snapshot, existing_ref) -> dict | None:
        """Bind the backend snapshot to ``snapshot`` (rename to ``snapshot.name`` or record
        a pointer in the returned model update).

        :raises ManageExistingInvalidReference: bad or unknown reference.
        """

    @abc.abstractmethod
    def manage_existing_snapshot_get_size(self, snapshot, existing_ref) -> int:
        """Size of the referenced snapshot in GiB, rounded UP."""

    @abc.abstractmethod
    def unmanage_snapshot(self, snapshot) -> None:
        """Forget the snapshot. Never deletes the backend object."""

    @abc.abstractmethod
    def get_manageable_snapshots(self, cinder_snapshots, marker, limit, offset, sort_keys,
                                 sort_dirs) -> list[dict]:
        """Like ``get_manageable_volumes``; entries add ``source_reference`` (the parent)."""
