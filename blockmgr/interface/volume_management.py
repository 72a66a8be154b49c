"""Adopting existing backend objects as volumes, and letting go of them."""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase


class VolumeManagementDriver(DriverBase):
    """Manage / unmanage existing volumes and list what could be managed.

    ``existing_ref`` is a dict with ``source-name`` and/or ``source-id``; anything else raises
    ``ManageExistingInvalidReference`` saying what was wrong.
    """

    @abc.abstractmethod
    def manage_existing(self, volume, existing_ref) -> dict | None:
        """Bind the backend object to ``volume`` (rename it to ``volume.name`` or record a
        pointer in the returned model update).

        :raises ManageExistingInvalidReference: bad or unknown reference.
        :raises ManageExistingAlreadyManaged: the object already belongs to a volume.
        """

    @abc.abstractmethod
    def manage_existing_get_size(self, volume, existing_ref) -> int:
        """Size of the referenced object in GiB, rounded UP to a whole GiB."""

    @abc.abstractmethod
    def unmanage(self, volume) -> None:
        """Forget the volume. Never deletes or changes its data."""

    @abc.abstractmethod
    def get_manageable_volumes(self, cinder_volumes, marker, limit, offset, sort_keys,
                               sort_dirs) -> list[dict]:
        """Backend objects that could be managed, each
        ``{'reference': {'source-name': ...}, 'size': int, 'safe_to_manage': bool,
        'reason_not_safe': str | None, 'cinder_id': str | None, 'extra_info': ...}``;
        sorted by ``sort_keys`` (``identifier`` | ``size``) and ``sort_dirs`` (``asc`` |
        ``desc``), then paged by ``marker`` (a reference), ``offset`` and ``limit``.
        ``cinder_volumes`` are the views of volumes already managed on this backend.
        """
