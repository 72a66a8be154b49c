"""Adopting existing backend objects as volumes, and letting go of them."""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase
from blockmgr.interface.objects import VolumeView
from blockmgr.interface.updates import ExistingRef, ManageableEntry, VolumeModelUpdate


class VolumeManagementDriver(DriverBase):
    """Manage / unmanage existing volumes and list what could be managed.

    ``existing_ref`` is a dict with ``source-name`` and/or ``source-id`` (driver-specific
    values). Anything else -- not a dict, neither key, a value of the wrong type, an empty
    name, a name that could be an option or a path (``-x``, ``../x``), an object that does not
    exist -- raises ``ManageExistingInvalidReference`` saying what was wrong, and changes
    nothing.
    """

    @abc.abstractmethod
    def manage_existing(self, volume: VolumeView,
                        existing_ref: ExistingRef) -> VolumeModelUpdate | None:
        """Bind the backend object to ``volume``: rename it to ``volume.name`` (then the old
        reference no longer resolves) or record a pointer (``provider_id`` /
        ``provider_location``) in the returned model update. Data is never changed.

        :param volume: VolumeView of the volume record being created for the object.
        :param existing_ref: ``{'source-name': ...}`` and/or ``{'source-id': ...}``.
        :returns: model update or None.
        :raises ManageExistingInvalidReference: bad or unknown reference.
        :raises ManageExistingAlreadyManaged: the object already belongs to a volume.
        """

    @abc.abstractmethod
    def manage_existing_get_size(self, volume: VolumeView, existing_ref: ExistingRef) -> int:
        """Size of the referenced object in GiB, rounded UP to a whole GiB (1 GiB + 1 byte
        -> 2). Changes nothing.

        :returns: an ``int``.
        :raises ManageExistingInvalidReference: bad or unknown reference.
        """

    @abc.abstractmethod
    def unmanage(self, volume: VolumeView) -> None:
        """Forget the volume. Never deletes or changes its data: afterwards the object is
        listed by ``get_manageable_volumes`` as safe to manage (when ``volume`` is no longer
        among ``cinder_volumes``) and can be managed again.
        """

    def manage_existing_source(self, volume: VolumeView,
                               existing_ref: ExistingRef) -> ExistingRef:
        """The reference that names the object ``existing_ref`` points at *before* it is
        bound, in the form :meth:`restore_managed_name` takes back (a JSON-serialisable
        dict). The manager records it in the flow's logbook before it calls
        :meth:`manage_existing`, so a manage that fails later -- a database error, a crash --
        can give the object its original name back. Changes nothing.

        The default returns a copy of ``existing_ref``, right for a driver whose references
        are the object's name (``source-name``). A driver that also resolves other
        references (an LVM ``source-id``, a serial number) returns the object's current
        name here, because after a rename nothing else would say what it was called.

        :raises ManageExistingInvalidReference: bad or unknown reference.
        """
        return dict(existing_ref) if isinstance(existing_ref, dict) else existing_ref

    def restore_managed_name(self, volume: VolumeView, source_ref: ExistingRef) -> None:
        """Undo :meth:`manage_existing` after the manage failed: give the object bound to
        ``volume`` the name ``source_ref`` records (what :meth:`manage_existing_source`
        returned before the manage), so the user finds it where it was.

        Called by the revert of a failed manage, after a crash too, so it must be
        idempotent: it succeeds when the object already has its original name, when
        ``manage_existing`` never renamed it, and when nothing is bound to ``volume``. It
        never deletes or changes data. When the original name is taken meanwhile, it leaves
        the object under a name :meth:`unmanage` would give it (listed as safe to manage)
        and logs where.

        The default calls :meth:`unmanage`, right for a driver that binds by pointer
        (``provider_id``) and never renames. A driver whose ``manage_existing`` renames the
        object MUST override it.

        :raises VolumeBackendAPIException: the backend failed; the object keeps its data.
        """
        self.unmanage(volume)

    @abc.abstractmethod
    def get_manageable_volumes(self, cinder_volumes: list[VolumeView], marker: dict | None,
                               limit: int | None, offset: int | None,
                               sort_keys: list[str] | None,
                               sort_dirs: list[str] | None) -> list[ManageableEntry]:
        """Backend objects that could be managed, each ``{'reference': {'source-name': ...},
        'size': int (GiB, rounded up), 'safe_to_manage': bool, 'reason_not_safe': str | None,
        'cinder_id': str | None, 'extra_info': ...}``.

        Objects belonging to a volume in ``cinder_volumes`` are either omitted or listed with
        ``safe_to_manage=False``, a reason and ``cinder_id`` set to that volume's id. Every
        other volume-like object the driver could manage (including one left by
        ``unmanage``) is listed; objects that are not volumes (snapshots, pools, metadata)
        are not.

        :param cinder_volumes: VolumeViews of the volumes already managed on this backend.
        :param marker: a ``reference`` dict; the page starts after that entry (None: start).
        :param limit: maximum entries (None: no limit).
        :param offset: entries to skip after the marker (None or 0: none).
        :param sort_keys: list of ``'identifier'`` (the reference's name/id) or ``'size'``.
        :param sort_dirs: list of ``'asc'`` / ``'desc'``, one per key.
        :returns: the sorted page (a list).
        :raises InvalidInput: an unknown sort key/direction or a marker that is not listed.
        """
