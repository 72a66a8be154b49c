"""Consistency groups (Cinder's consistency group driver interface).

Return conventions are exactly Cinder's (``docs/cinder-compat.md``); the manager applies
them in :mod:`blockmgr.flows.group_updates`:

- ``model_update`` is a :class:`~blockmgr.interface.updates.GroupModelUpdate`
  (``{'status': ...}``) or None; on the group/cgsnapshot.
- per-member updates are lists the driver BUILDS (never the objects it was given) of
  ``VolumeMemberUpdate`` / ``SnapshotMemberUpdate``, each with the member's ``'id'`` and the
  columns to write (e.g. ``'status'``), or None. The tuple types are in
  :mod:`blockmgr.interface.updates` (``GroupVolumesResult``...).
- ``None`` / ``(None, None)`` means plain success; the manager then sets the final statuses.
- An ``'error'`` (or ``'error_deleting'``) status in a member entry promotes the model status;
  an error model status makes the manager raise and mark the resource ``error``. For
  ``create_consistencygroup_from_src`` only an exception means failure.
- If the driver raises, the group/cgsnapshot and all members end ``error``.

Deletes are idempotent: a group or cgsnapshot (or member) that is already gone is success.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from blockmgr.interface.base import DriverBase
from blockmgr.interface.objects import GroupSnapshotView, GroupView, SnapshotView, VolumeView
from blockmgr.interface.updates import (GroupMembershipResult, GroupModelUpdate,
                                        GroupSnapshotResult, GroupVolumesResult)

if TYPE_CHECKING:
    from blockmgr.context import RequestContext


class ConsistencyGroupDriver(DriverBase):

    @abc.abstractmethod
    def create_consistencygroup(self, context: RequestContext,
                                group: GroupView) -> GroupModelUpdate | None:
        """Create the group on the backend (many backends need nothing).

        :param context: RequestContext.
        :param group: GroupView.
        :returns: model_update or None; status ``error`` -> the group ends ``error``.
        """

    @abc.abstractmethod
    def delete_consistencygroup(self, context: RequestContext, group: GroupView,
                                volumes: list[VolumeView]) -> GroupVolumesResult:
        """Delete the group and every volume in ``volumes`` (member volumes' data is gone).

        :param volumes: VolumeViews of the members (may be empty).
        :returns: ``(model_update, volumes_model_update)``; ``(None, None)`` for success.
        """

    @abc.abstractmethod
    def update_consistencygroup(self, context: RequestContext, group: GroupView,
                                add_volumes: list[VolumeView] | None = None,
                                remove_volumes: list[VolumeView] | None = None
                                ) -> GroupMembershipResult:
        """Change membership on the backend (many backends need nothing).

        :param add_volumes: VolumeViews joining the group (or None).
        :param remove_volumes: VolumeViews leaving it (or None).
        :returns: ``(model_update, add_volumes_update, remove_volumes_update)``; all None
            for success with no changes.
        """

    @abc.abstractmethod
    def create_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        """Snapshot every member: one snapshot per entry of ``snapshots`` (SnapshotViews whose
        ``volume_name`` is the member), taken as close to the same instant as the backend
        allows; the docstring of the implementing driver says what consistency that gives.

        :param cgsnapshot: GroupSnapshotView.
        :returns: ``(model_update, snapshots_model_update)``; ``(None, None)`` for success.
        """

    @abc.abstractmethod
    def delete_cgsnapshot(self, context: RequestContext, cgsnapshot: GroupSnapshotView,
                          snapshots: list[SnapshotView]) -> GroupSnapshotResult:
        """Delete every member snapshot.

        :returns: ``(model_update, snapshots_model_update)``; ``(None, None)`` for success.
        """

    @abc.abstractmethod
    def create_consistencygroup_from_src(self, context: RequestContext, group: GroupView,
                                         volumes: list[VolumeView],
                                         cgsnapshot: GroupSnapshotView | None = None,
                                         snapshots: list[SnapshotView] | None = None,
                                         source_cg: GroupView | None = None,
                                         source_vols: list[VolumeView] | None = None
                                         ) -> GroupVolumesResult:
        """Create ``volumes`` of ``group`` from a cgsnapshot (``cgsnapshot`` + ``snapshots``)
        or from a source group (``source_cg`` + ``source_vols``); the i-th volume is created
        from the i-th snapshot / source volume.

        :returns: ``(model_update, volumes_model_update)``; no exception means success.
        :raises InvalidInput: neither or both sources given, or counts differ.
        """
