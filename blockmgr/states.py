"""Status vocabulary per resource and the transitions allowed between statuses.

Status names are Cinder's, so operators and clients see what they know. Every status write
goes through :func:`check_transition` (the ORM models validate assignments, and the
repository's compare-and-swap update checks the same table), so an illegal transition raises
:class:`~blockmgr.exception.InvalidStatusTransition` and writes nothing.

Writing the status a resource already has is always allowed: tasks are idempotent and may run
again after a crash.
"""

from __future__ import annotations

import enum
from typing import Mapping

from blockmgr import exception


class VolumeStatus(enum.StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    IN_USE = "in-use"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    MANAGING = "managing"
    ERROR_MANAGING = "error_managing"
    ERROR_MANAGING_DELETING = "error_managing_deleting"
    EXTENDING = "extending"
    ERROR_EXTENDING = "error_extending"
    UNMANAGING = "unmanaging"
    ERROR_UNMANAGING = "error_unmanaging"
    #: Held for an attachment (attachments API) until it is connected or deleted.
    RESERVED = "reserved"
    #: Being attached: legacy ``os-reserve``, or an attachment connected but not completed.
    ATTACHING = "attaching"
    #: Being detached: legacy ``os-begin_detaching``, or a detach request in flight.
    DETACHING = "detaching"
    #: Being reverted to its latest snapshot (``os-revert``, microversion 3.40).
    REVERTING = "reverting"


class SnapshotStatus(enum.StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    UNMANAGING = "unmanaging"
    #: Its volume is being reverted to it.
    RESTORING = "restoring"
    #: A manage that failed after the driver may have touched the object the user named
    #: (blockmgr's; Cinder leaves such a snapshot ``error``). Deleting it only unmanages.
    ERROR_MANAGING = "error_managing"
    #: Being deleted after a failed manage: the object is released (unmanaged), never deleted.
    ERROR_MANAGING_DELETING = "error_managing_deleting"


class GroupStatus(enum.StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    UPDATING = "updating"
    IN_USE = "in-use"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


class GroupSnapshotStatus(enum.StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    UPDATING = "updating"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


V, S, G, GS = VolumeStatus, SnapshotStatus, GroupStatus, GroupSnapshotStatus

VOLUME_TRANSITIONS: Mapping[VolumeStatus, frozenset[VolumeStatus]] = {
    # ``deleted`` from creating: the API removes a volume that was never scheduled.
    V.CREATING: frozenset({V.AVAILABLE, V.ERROR, V.DELETED}),
    V.AVAILABLE: frozenset({V.IN_USE, V.DELETING, V.EXTENDING, V.UNMANAGING, V.ERROR,
                            V.RESERVED, V.ATTACHING, V.REVERTING}),
    # ``reserved`` / ``attaching`` from in-use: another attachment of a multiattach volume.
    V.IN_USE: frozenset({V.AVAILABLE, V.EXTENDING, V.ERROR, V.DETACHING, V.RESERVED,
                         V.ATTACHING}),
    # Attaching (docs/rest-api.md, "Attachments"): every hold can be given back
    # (``available``, or ``in-use`` while another attachment is attached).
    # ``detaching``: a detach of a connected attachment (also forced by an admin).
    V.RESERVED: frozenset({V.ATTACHING, V.IN_USE, V.AVAILABLE, V.DETACHING, V.ERROR}),
    V.ATTACHING: frozenset({V.IN_USE, V.AVAILABLE, V.RESERVED, V.DETACHING, V.ERROR}),
    V.DETACHING: frozenset({V.AVAILABLE, V.IN_USE, V.RESERVED, V.ATTACHING, V.ERROR}),
    # ``available``: the driver said the volume is busy (has dependents), nothing was deleted.
    # ``error``: a group delete whose driver raised (every member ends ``error``,
    # ``blockmgr.flows.group_updates``).
    V.DELETING: frozenset({V.DELETED, V.ERROR_DELETING, V.AVAILABLE, V.ERROR}),
    V.ERROR: frozenset({V.DELETING, V.DELETED}),
    V.ERROR_DELETING: frozenset({V.DELETING}),
    V.MANAGING: frozenset({V.AVAILABLE, V.ERROR_MANAGING}),
    V.ERROR_MANAGING: frozenset({V.ERROR_MANAGING_DELETING, V.DELETED}),
    V.ERROR_MANAGING_DELETING: frozenset({V.DELETED, V.ERROR_MANAGING}),
    V.EXTENDING: frozenset({V.AVAILABLE, V.IN_USE, V.ERROR_EXTENDING}),
    V.ERROR_EXTENDING: frozenset({V.DELETING, V.EXTENDING}),
    V.UNMANAGING: frozenset({V.DELETED, V.ERROR_UNMANAGING, V.AVAILABLE}),
    # ``available``: reverted, or the driver refused before changing anything
    # (``Unsupported``); ``error``: the revert failed part-way.
    V.REVERTING: frozenset({V.AVAILABLE, V.ERROR}),
    V.ERROR_UNMANAGING: frozenset({V.UNMANAGING, V.DELETING}),
    V.DELETED: frozenset(),
}

SNAPSHOT_TRANSITIONS: Mapping[SnapshotStatus, frozenset[SnapshotStatus]] = {
    # ``error``: refused before the driver was asked to bind anything (as in Cinder);
    # ``error_managing``: a manage that failed after the driver may have touched the object.
    S.CREATING: frozenset({S.AVAILABLE, S.ERROR, S.ERROR_MANAGING, S.DELETED}),
    S.AVAILABLE: frozenset({S.DELETING, S.UNMANAGING, S.ERROR, S.RESTORING}),
    # ``error``: a group snapshot delete whose driver raised (every member ends ``error``).
    S.DELETING: frozenset({S.DELETED, S.ERROR_DELETING, S.AVAILABLE, S.ERROR}),
    S.ERROR: frozenset({S.DELETING, S.DELETED}),
    S.ERROR_DELETING: frozenset({S.DELETING}),
    S.UNMANAGING: frozenset({S.DELETED, S.ERROR_DELETING, S.AVAILABLE}),
    # A revert keeps its snapshot, whatever the outcome (as in Cinder).
    S.RESTORING: frozenset({S.AVAILABLE}),
    # Deleting a failed manage releases the object (delete_snapshot flow, unmanage).
    S.ERROR_MANAGING: frozenset({S.ERROR_MANAGING_DELETING}),
    S.ERROR_MANAGING_DELETING: frozenset({S.DELETED, S.ERROR_MANAGING}),
    S.DELETED: frozenset(),
}

GROUP_TRANSITIONS: Mapping[GroupStatus, frozenset[GroupStatus]] = {
    G.CREATING: frozenset({G.AVAILABLE, G.ERROR}),
    G.AVAILABLE: frozenset({G.UPDATING, G.DELETING, G.IN_USE, G.ERROR}),
    G.IN_USE: frozenset({G.AVAILABLE, G.UPDATING, G.DELETING, G.ERROR}),
    G.UPDATING: frozenset({G.AVAILABLE, G.ERROR}),
    G.DELETING: frozenset({G.DELETED, G.ERROR, G.ERROR_DELETING, G.AVAILABLE}),
    G.ERROR: frozenset({G.DELETING, G.DELETED}),
    G.ERROR_DELETING: frozenset({G.DELETING}),
    G.DELETED: frozenset(),
}

GROUP_SNAPSHOT_TRANSITIONS: Mapping[GroupSnapshotStatus, frozenset[GroupSnapshotStatus]] = {
    GS.CREATING: frozenset({GS.AVAILABLE, GS.ERROR}),
    GS.AVAILABLE: frozenset({GS.DELETING, GS.UPDATING, GS.ERROR}),
    GS.UPDATING: frozenset({GS.AVAILABLE, GS.ERROR}),
    GS.DELETING: frozenset({GS.DELETED, GS.ERROR, GS.ERROR_DELETING, GS.AVAILABLE}),
    GS.ERROR: frozenset({GS.DELETING, GS.DELETED}),
    GS.ERROR_DELETING: frozenset({GS.DELETING}),
    GS.DELETED: frozenset(),
}

class AttachStatus(enum.StrEnum):
    """``attach_status`` of an attachment row; a volume's ``attach_status`` takes the
    values of :data:`VOLUME_ATTACH_STATUSES`."""

    RESERVED = "reserved"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    DETACHED = "detached"
    ERROR_ATTACHING = "error_attaching"
    ERROR_DETACHING = "error_detaching"


A = AttachStatus

#: An attachment's life: reserved -> attaching (connected) -> attached (completed) ->
#: detaching -> detached (the row is deleted with that status). Any hold may be deleted.
ATTACHMENT_TRANSITIONS: Mapping[AttachStatus, frozenset[AttachStatus]] = {
    A.RESERVED: frozenset({A.ATTACHING, A.ATTACHED, A.DETACHING, A.DETACHED,
                           A.ERROR_ATTACHING}),
    A.ATTACHING: frozenset({A.ATTACHED, A.DETACHING, A.DETACHED, A.ERROR_ATTACHING}),
    A.ATTACHED: frozenset({A.DETACHING}),
    A.DETACHING: frozenset({A.DETACHED, A.ERROR_DETACHING, A.ATTACHED, A.ATTACHING}),
    A.ERROR_ATTACHING: frozenset({A.DETACHING, A.DETACHED, A.ATTACHING}),
    A.ERROR_DETACHING: frozenset({A.DETACHING, A.DETACHED, A.ATTACHED}),
    A.DETACHED: frozenset(),
}

#: What a volume's ``attach_status`` may be (its attachments say the rest).
VOLUME_ATTACH_STATUSES = frozenset({A.DETACHED, A.ATTACHING, A.ATTACHED, A.DETACHING})

#: Statuses in which a volume is held by a consumer: nothing destructive (delete, unmanage,
#: manage over it, offline extend) may touch it.
VOLUME_HELD = frozenset({V.RESERVED, V.ATTACHING, V.IN_USE, V.DETACHING})


def check_attach_transition(current: str | None, new: str, attachment_id=None) -> None:
    """Raise InvalidStatusTransition unless an attachment may go ``current -> new``."""
    try:
        target = AttachStatus(new)
    except ValueError:
        raise exception.InvalidInput(
            reason="'%s' is not an attach status; valid: %s"
            % (new, ", ".join(s.value for s in AttachStatus))) from None
    if current is None or current == new or target in ATTACHMENT_TRANSITIONS[A(current)]:
        return
    raise exception.InvalidStatusTransition(
        resource="Attachment", resource_id=attachment_id, current=current, requested=new,
        allowed=", ".join(sorted(s.value for s in ATTACHMENT_TRANSITIONS[A(current)]))
        or "(none: final)")


def check_volume_attach_status(value: str) -> str:
    if value not in VOLUME_ATTACH_STATUSES:
        raise exception.InvalidInput(
            reason="'%s' is not a volume attach status; valid: %s"
            % (value, ", ".join(sorted(VOLUME_ATTACH_STATUSES))))
    return str(value)


#: resource kind -> (status enum, transition table)
MACHINES: Mapping[str, tuple[type[enum.StrEnum], Mapping]] = {
    "volume": (VolumeStatus, VOLUME_TRANSITIONS),
    "snapshot": (SnapshotStatus, SNAPSHOT_TRANSITIONS),
    "group": (GroupStatus, GROUP_TRANSITIONS),
    "group_snapshot": (GroupSnapshotStatus, GROUP_SNAPSHOT_TRANSITIONS),
}

#: Statuses that mean "an operation is in flight"; recovery must move every one of them on.
TRANSITIONAL: Mapping[str, frozenset[str]] = {
    "volume": frozenset({V.CREATING, V.DELETING, V.MANAGING, V.EXTENDING, V.UNMANAGING,
                         V.ERROR_MANAGING_DELETING, V.REVERTING}),
    "snapshot": frozenset({S.CREATING, S.DELETING, S.UNMANAGING, S.RESTORING,
                           S.ERROR_MANAGING_DELETING}),
    "group": frozenset({G.CREATING, G.UPDATING, G.DELETING}),
    "group_snapshot": frozenset({GS.CREATING, GS.UPDATING, GS.DELETING}),
}


#: What an admin's reset (``os-reset_status``, ``blockmgr-manage ... reset-state``) may
#: write, from any status: every status but ``deleted`` and those a running flow owns
#: (a reset to one of those would leave a row no flow or request moves on).
RESETTABLE: Mapping[str, frozenset[str]] = {
    kind: frozenset(s.value for s in MACHINES[kind][0]
                    if s.value != "deleted" and s.value not in TRANSITIONAL[kind])
    for kind in MACHINES
}


def check_reset(kind: str, new: str) -> str:
    """The status an admin reset writes, or InvalidInput naming the allowed ones."""
    value = parse(kind, new).value
    if value not in RESETTABLE[kind]:
        raise exception.InvalidInput(
            reason="a %s cannot be reset to '%s'; reset to one of: %s"
            % (kind.replace("_", " "), value, ", ".join(sorted(RESETTABLE[kind]))))
    return value


def parse(kind: str, value: str) -> enum.StrEnum:
    """Return the enum member for ``value`` or raise InvalidInput naming the valid ones."""
    status_enum, _ = MACHINES[kind]
    try:
        return status_enum(value)
    except ValueError:
        raise exception.InvalidInput(
            reason="'%s' is not a %s status; valid: %s"
            % (value, kind, ", ".join(s.value for s in status_enum))) from None


def allowed_sources(kind: str, new: str) -> frozenset[str]:
    """Every status from which ``new`` may be written (``new`` itself included)."""
    _, table = MACHINES[kind]
    target = parse(kind, new)
    return frozenset({src.value for src, dsts in table.items() if target in dsts}
                     | {target.value})


def can_transition(kind: str, current: str | None, new: str) -> bool:
    if current is None or current == new:
        parse(kind, new)
        return True
    _, table = MACHINES[kind]
    return parse(kind, new) in table[parse(kind, current)]


def check_transition(kind: str, current: str | None, new: str, resource_id=None) -> None:
    """Raise InvalidStatusTransition unless ``current -> new`` is allowed.

    ``current`` None means the row is being created: any valid status may be the first.
    """
    if not can_transition(kind, current, new):
        _, table = MACHINES[kind]
        allowed = sorted(s.value for s in table[parse(kind, current)])
        raise exception.InvalidStatusTransition(
            resource=kind.replace("_", " ").capitalize(), resource_id=resource_id,
            current=current, requested=new, allowed=", ".join(allowed) or "(none: final)")
