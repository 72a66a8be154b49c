"""What drivers return besides stats: model updates, connection info, manageable entries.

A *model update* is a dict of the columns the manager writes on the resource after the call;
a driver never writes the database itself. The manager keeps only the keys declared here
(:data:`VOLUME_MODEL_FIELDS`, :data:`SNAPSHOT_MODEL_FIELDS`) and logs and drops the others,
so a typo in a key shows in the log instead of silently writing nothing. ``None`` means
"nothing to write".

Consistency-group operations return tuples of a group-level update and per-member updates,
with Cinder's conventions (:mod:`blockmgr.interface.consistencygroup`).
"""

# No ``from __future__ import annotations``: TypedDict reads Required[...] only from
# evaluated annotations.
from typing import Any, Optional, Required, TypedDict


class VolumeModelUpdate(TypedDict, total=False):
    """Columns a volume operation (create, clone, from snapshot, export, manage) may set."""

    #: Where the backend object is, in the driver's own terms (a path, a target IQN...).
    provider_location: Optional[str]
    #: The backend's id of the object, when it binds by id instead of name.
    provider_id: Optional[str]
    #: Credentials a consumer needs (e.g. CHAP), from ``create_export``.
    provider_auth: Optional[str]


class SnapshotModelUpdate(TypedDict, total=False):
    """Columns a snapshot operation (create, manage) may set."""

    provider_location: Optional[str]
    provider_id: Optional[str]
    provider_auth: Optional[str]


#: The volume columns a driver's model update may write (any other key is dropped).
VOLUME_MODEL_FIELDS = frozenset(VolumeModelUpdate.__annotations__)
#: The snapshot columns a driver's model update may write.
SNAPSHOT_MODEL_FIELDS = frozenset(SnapshotModelUpdate.__annotations__)


class GroupModelUpdate(TypedDict, total=False):
    """The group's (or group snapshot's) update: only ``status`` is read; ``'error'`` fails
    the operation (see the rules of each method)."""

    status: str


class VolumeMemberUpdate(TypedDict, total=False):
    """One member volume's update, built by the driver (never the view it was given)."""

    id: Required[str]
    #: ``'available'``, ``'error'``, ``'deleted'``, ``'error_deleting'``... per operation.
    status: str
    provider_location: Optional[str]
    provider_id: Optional[str]
    provider_auth: Optional[str]


class SnapshotMemberUpdate(TypedDict, total=False):
    """One member snapshot's update of a cgsnapshot operation."""

    id: Required[str]
    status: str
    provider_location: Optional[str]
    provider_id: Optional[str]
    provider_auth: Optional[str]


#: ``(model_update, volumes_model_update)``: delete_consistencygroup,
#: create_consistencygroup_from_src. ``(None, None)`` is plain success.
GroupVolumesResult = tuple[Optional[GroupModelUpdate], Optional[list[VolumeMemberUpdate]]]
#: ``(model_update, add_volumes_update, remove_volumes_update)``: update_consistencygroup.
GroupMembershipResult = tuple[Optional[GroupModelUpdate], Optional[list[VolumeMemberUpdate]],
                              Optional[list[VolumeMemberUpdate]]]
#: ``(model_update, snapshots_model_update)``: create_cgsnapshot, delete_cgsnapshot.
GroupSnapshotResult = tuple[Optional[GroupModelUpdate], Optional[list[SnapshotMemberUpdate]]]


#: ``existing_ref`` of the manage calls: ``{'source-name': ...}`` and/or
#: ``{'source-id': ...}`` (driver-specific values). It comes from the user, so drivers
#: check it (``blockmgr.drivers.manageable.parse_reference``) instead of trusting this type.
ExistingRef = TypedDict("ExistingRef", {"source-name": str, "source-id": str}, total=False)

#: os-brick connector properties of the consumer (``host``, ``initiator``, ...); None in
#: ``terminate_connection`` means every connector.
Connector = dict[str, Any]


class ConnectionInfo(TypedDict):
    """``initialize_connection``'s answer, handed to the consumer's os-brick connector."""

    #: The os-brick connector type, e.g. ``'local'``, ``'iscsi'``.
    driver_volume_type: str
    #: What that connector needs (e.g. ``{'device_path': ...}`` for ``'local'``).
    data: dict[str, Any]


class ManageableEntry(TypedDict):
    """One entry of ``get_manageable_volumes`` / ``get_manageable_snapshots``."""

    #: What to pass as ``existing_ref`` to manage it.
    reference: dict[str, Any]
    #: GiB, rounded up.
    size: int
    safe_to_manage: bool
    #: Why not, exactly when ``safe_to_manage`` is False.
    reason_not_safe: Optional[str]
    #: The id of the volume / snapshot it already belongs to, if any.
    cinder_id: Optional[str]
    extra_info: Any


class ManageableSnapshotEntry(ManageableEntry):
    """A snapshot entry also names its parent volume's reference."""

    source_reference: dict[str, Any]
