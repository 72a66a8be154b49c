"""Consistency groups (seed ``004``: Cinder's consistency group driver interface).

Return conventions are exactly the seed's: ``model_update`` is ``{'status': ..., ...}`` or
None; per-member updates are lists of dicts the driver builds, each with ``'id'``; returning
None (or ``None, None``) means success.
"""

from __future__ import annotations

import abc

from blockmgr.interface.base import DriverBase


class ConsistencyGroupDriver(DriverBase):

    @abc.abstractmethod
    def create_consistencygroup(self, context, group) -> dict | None:
        """Returns model_update (status ``error`` -> the group ends ``error``)."""

    @abc.abstractmethod
    def delete_consistencygroup(self, context, group, volumes):
        """Returns ``(model_update, volumes_model_update)``."""

    @abc.abstractmethod
    def update_consistencygroup(self, context, group, add_volumes=None, remove_volumes=None):
        """Returns ``(model_update, add_volumes_update, remove_volumes_update)``."""

    @abc.abstractmethod
    def create_cgsnapshot(self, context, cgsnapshot, snapshots):
        """Returns ``(model_update, snapshots_model_update)``."""

    @abc.abstractmethod
    def delete_cgsnapshot(self, context, cgsnapshot, snapshots):
        """Returns ``(model_update, snapshots_model_update)``."""

    @abc.abstractmethod
    def create_consistencygroup_from_src(self, context, group, volumes, cgsnapshot=None,
                                         snapshots=None, source_cg=None, source_vols=None):
        """Returns ``(model_update, volumes_model_update)``; no exception means success."""
