"""The core volume interface every driver implements."""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase


class VolumeDriver(DriverBase):
    """Core volume operations (Cinder's ``VolumeDriverCore`` names and argument order).

    Model updates: methods documented as returning ``dict | None`` return the columns the
    manager should write on the resource (e.g. ``provider_location``) or None for nothing.
    Drivers raise :mod:`blockmgr.exception` errors (``VolumeBackendAPIException`` /
    ``VolumeDriverException`` for backend failures).
    """

    @abc.abstractmethod
    def do_setup(self, context) -> None:
        """Prepare the backend (connect, create directories, check tools).

        :raises ConfigurationError: the backend is misconfigured.
        :raises VolumeBackendAPIException: the backend cannot be reached.
        """

    @abc.abstractmethod
    def check_for_setup_error(self) -> None:
        """Raise if the backend is not usable; the service then stays down and retries."""

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict:
        """Capacity report: top level ``volume_backend_name``, ``vendor_name``,
        ``driver_version``, ``storage_protocol`` and a ``pools`` list whose entries carry
        ``pool_name``, ``total_capacity_gb``, ``free_capacity_gb``, ``provisioned_capacity_gb``,
        ``reserved_percentage``, ``max_over_subscription_ratio``,
        ``thin_provisioning_support``, ``thick_provisioning_support``.

        ``refresh=False`` may return a cached report; it must be cheap.
        """

    @abc.abstractmethod
    def create_volume(self, volume) -> dict | None:
        """Allocate ``volume.size`` GiB named for ``volume``. No export.

        Idempotent: if the object already exists with the requested size, succeed.
        """

    @abc.abstractmethod
    def delete_volume(self, volume) -> None:
        """Delete the volume's backend object. Succeeds if it is already gone.

        :raises VolumeIsBusy: it has dependents (e.g. snapshots) and nothing was deleted.
        """

    @abc.abstractmethod
    def create_snapshot(self, snapshot) -> dict | None:
        """Take a point-in-time copy of ``snapshot.volume_name``. Idempotent."""

    @abc.abstractmethod
    def delete_snapshot(self, snapshot) -> None:
        """Delete a snapshot. Succeeds if already gone.

        :raises SnapshotIsBusy: volumes still depend on it.
        """

    @abc.abstractmethod
    def create_volume_from_snapshot(self, volume, snapshot) -> dict | None:
        """Create ``volume`` holding the snapshot's data, grown to ``volume.size``."""

    @abc.abstractmethod
    def create_cloned_volume(self, volume, src_vref) -> dict | None:
        """Create ``volume`` as a copy of volume ``src_vref``, grown to ``volume.size``."""

    @abc.abstractmethod
    def extend_volume(self, volume, new_size: int) -> None:
        """Grow the volume to ``new_size`` GiB, keeping its data."""

    @abc.abstractmethod
    def create_export(self, context, volume, connector) -> dict | None:
        """Make the volume reachable for ``connector``; returns a model update or None."""

    @abc.abstractmethod
    def ensure_export(self, context, volume) -> dict | None:
        """Re-create an export after a restart (for volumes in use)."""

    @abc.abstractmethod
    def remove_export(self, context, volume) -> None:
        """Tear the export down. Succeeds if there is none."""

    @abc.abstractmethod
    def initialize_connection(self, volume, connector) -> dict:
        """Return ``{'driver_volume_type': ..., 'data': {...}}`` for os-brick's connector."""

    @abc.abstractmethod
    def terminate_connection(self, volume, connector, **kwargs) -> None:
        """Undo ``initialize_connection`` for ``connector`` (None: every connector)."""
