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


class SnapshotStatus(enum.StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    UNMANAGING = "unmanaging"


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
    V.AVAILABLE: frozenset({V.IN_USE, V.DELETING, V.EXTENDING, V.UNMANAGING, V.ERROR}),
    V.IN_USE: frozenset({V.AVAILABLE, V.EXTENDING, V.ERROR}),
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
    V.ERROR_UNMANAGING: frozenset({V.UNMANAGING, V.DELETING}),
    V.DELETED: frozenset(),
}

SNAPSHOT_TRANSITIONS: Mapping[SnapshotStatus, frozenset[SnapshotStatus]] = {
    S.CREATING: frozenset({S.AVAILABLE, S.ERROR, S.DELETED}),
    S.AVAILABLE: frozenset({S.DELETING, S.UNMANAGING, S.ERROR}),
    # ``error``: a group snapshot delete whose driver raised (every member ends ``error``).
    S.DELETING: frozenset({S.DELETED, S.ERROR_DELETING, S.AVAILABLE, S.ERROR}),
    S.ERROR: frozenset({S.DELETING, S.DELETED}),
    S.ERROR_DELETING: frozenset({S.DELETING}),
    S.UNMANAGING: frozenset({S.DELETED, S.ERROR_DELETING, S.AVAILABLE}),
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
                         V.ERROR_MANAGING_DELETING}),
    "snapshot": frozenset({S.CREATING, S.DELETING, S.UNMANAGING}),
    "group": frozenset({G.CREATING, G.UPDATING, G.DELETING}),
    "group_snapshot": frozenset({GS.CREATING, GS.UPDATING, GS.DELETING}),
}


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
