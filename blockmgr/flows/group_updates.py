"""The driver model-update rules of the consistency-group operations, implemented once.

The consistency-group driver interface (Cinder's return conventions,
:mod:`blockmgr.interface.consistencygroup`) defines what a driver's ``model_update`` and
per-member updates mean. Every group flow hands
the driver's return to :func:`normalize` (shape check, JSON form for the logbook) and to
:func:`decide` (the rules), then writes the resulting :class:`Outcome` with
:func:`write_members`. The table, per operation (``RULES``):

``create_group``
    None -> ``available``; model ``error`` -> ``error``, raise; driver raises -> ``error``.
``create_group_from_src`` ("no exception means success")
    None -> all ``available``; an entry ``error`` is **kept** on its volume; model
    ``error`` ignored (logged); driver raises -> group and volumes ``error``.
``delete_group``
    None -> everything destroyed; an ``error``/``error_deleting`` entry promotes the model
    status -> group ``error``, entries written, raise; model error -> group ``error``,
    members keep their entries; driver raises -> group and volumes ``error``.
``update_group``
    None -> ``available``, volume statuses unchanged; entries written as given (no
    promotion); model ``error`` or driver raises -> group, add and remove volumes ``error``.
``create_group_snapshot``
    None -> all ``available``; an ``error`` entry promotes -> raise; model ``error`` ->
    group snapshot ``error``, snapshots keep their entries; raises -> all ``error``.
``delete_group_snapshot``
    None -> all destroyed; an ``error``/``error_deleting`` entry promotes -> raise; model
    error -> group snapshot ``error``; raises -> group snapshot and snapshots ``error``.

Where blockmgr deliberately differs from Cinder (each covered by a test; the other
departures are in ``docs/cinder-compat.md``):

* **Every** exception fails the operation cleanly (Cinder catches only its own exceptions in
  the group-snapshot paths and leaves ``creating``/``deleting`` behind): the flows' first
  task reverts every row of the operation that is still transitional to ``error``.
* ``create_group_from_src``: an entry ``error`` is kept on its volume (Cinder overwrites it
  with ``available`` at the end, advertising a volume the driver said it failed to create).
* ``delete_group`` returning ``(None, [entries with error])`` promotes and writes the entries
  (Cinder crashes on the ``None`` model and writes nothing).
* On a failed delete, members whose entry says ``deleted`` are really destroyed (row soft
  deleted, quota returned): their backend object is gone. Cinder writes the status
  ``deleted`` on a live row and never returns the quota.
* On a failure, members the driver gave no status for and that are still in the
  operation's transitional status become ``error`` (Cinder leaves them ``creating`` unless
  the driver returned no entries at all).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable

from blockmgr import exception
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.interface import updates as driver_updates

#: What a consistency-group driver method returns (:mod:`blockmgr.interface.updates`).
DriverReturn = (driver_updates.GroupModelUpdate | driver_updates.GroupVolumesResult
                | driver_updates.GroupMembershipResult | driver_updates.GroupSnapshotResult
                | None)

LOG = logging.getLogger(__name__)

ERROR, ERROR_DELETING = "error", "error_deleting"
AVAILABLE, IN_USE, DELETED = "available", "in-use", "deleted"

#: ``Rule.on_success`` values.
SET_AVAILABLE, DESTROY, KEEP = "available", "destroy", "keep"

_MEMBER_FIELDS = {"volume": common.VOLUME_MODEL_FIELDS,
                  "snapshot": common.SNAPSHOT_MODEL_FIELDS}


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one operation reads a driver's return (one row of the table above).

    :param returns: number of values the driver returns (1: ``model_update`` only).
    :param model_errors: model statuses that fail the operation (empty: model status ignored).
    :param promoting: entry statuses that promote the model status to themselves.
    :param entry_statuses: statuses an entry may write; any other is dropped and logged.
    :param on_success: what every member becomes when the operation succeeded.
    :param failure_errors_all: on failure every member becomes ``error`` (update_group);
        otherwise members keep their entry status and only the others become ``error``.
    """

    operation: str
    member_kind: str | None
    returns: int
    model_errors: frozenset
    promoting: frozenset = frozenset()
    entry_statuses: frozenset = frozenset()
    on_success: str = SET_AVAILABLE
    failure_errors_all: bool = False


_DELETE_ERRORS = frozenset({ERROR, ERROR_DELETING})

RULES = {rule.operation: rule for rule in (
    Rule("create_group", None, 1, frozenset({ERROR})),
    Rule("create_group_from_src", "volume", 2, frozenset(),
         entry_statuses=frozenset({AVAILABLE, ERROR})),
    Rule("delete_group", "volume", 2, _DELETE_ERRORS, promoting=_DELETE_ERRORS,
         entry_statuses=frozenset({DELETED, AVAILABLE}) | _DELETE_ERRORS, on_success=DESTROY),
    Rule("update_group", "volume", 3, frozenset({ERROR}),
         entry_statuses=frozenset({AVAILABLE, IN_USE, ERROR}), on_success=KEEP,
         failure_errors_all=True),
    Rule("create_group_snapshot", "snapshot", 2, frozenset({ERROR}),
         promoting=frozenset({ERROR}), entry_statuses=frozenset({AVAILABLE, ERROR})),
    Rule("delete_group_snapshot", "snapshot", 2, _DELETE_ERRORS, promoting=_DELETE_ERRORS,
         entry_statuses=frozenset({DELETED, AVAILABLE}) | _DELETE_ERRORS, on_success=DESTROY),
)}


@dataclasses.dataclass
class Outcome:
    """What to write after a driver call.

    ``parent_status`` is the group's / group snapshot's new status (``deleted`` with
    ``destroy_parent``); ``member_status`` and ``member_fields`` are per member id;
    ``destroy`` lists the members whose rows are soft deleted (their quota returned).
    """

    failed: bool
    reason: str | None
    parent_status: str
    member_status: dict[str, str]
    member_fields: dict[str, dict]
    destroy: list[str]
    destroy_parent: bool = False


def normalize(rule: Rule, raw: DriverReturn) -> dict:
    """The driver's return in JSON form: ``{'model': dict|None, 'entries': list|None}``
    (update_group: ``'add'`` and ``'remove'`` instead of ``'entries'``).

    Only ``status`` is kept from the model update and ``id``, ``status`` and the member's
    model fields from each entry; anything else is logged and dropped.

    :raises VolumeDriverException: the return does not have the documented shape.
    """
    if rule.returns == 1:
        parts = [raw]
    elif raw is None:
        parts = [None] * rule.returns
    elif isinstance(raw, (tuple, list)) and len(raw) == rule.returns:
        parts = list(raw)
    else:
        raise _bad_return(rule, raw, "expected a %d-tuple or None" % rule.returns)
    model = parts[0]
    if model is not None and not isinstance(model, dict):
        raise _bad_return(rule, raw, "the model update must be a dict or None")
    if model is not None and set(model) - {"status"}:
        LOG.warning("%s: ignoring driver model update fields %s", rule.operation,
                    sorted(set(model) - {"status"}))
    result = {"model": None if model is None else {"status": _text(model.get("status"))}}
    names = ["add", "remove"] if rule.returns == 3 else ["entries"]
    allowed = {"id", "status"} | _MEMBER_FIELDS.get(rule.member_kind, frozenset())
    for name, entries in zip(names, parts[1:]):
        if entries is not None and not isinstance(entries, (list, tuple)):
            raise _bad_return(rule, raw, "member updates must be a list of dicts or None")
        clean = None
        if entries is not None:
            clean = []
            for entry in entries:
                if not isinstance(entry, dict) or not entry.get("id"):
                    raise _bad_return(rule, raw, "every member update needs an 'id'")
                clean.append({k: _text(v) for k, v in entry.items() if k in allowed})
        result[name] = clean
    return result


def decide(rule: Rule, model: dict | None, entries: Iterable[dict] | None,
           member_ids: Iterable[str]) -> Outcome:
    """Apply ``rule`` to a normalized driver return; pure (no I/O), see the module table."""
    members = list(dict.fromkeys(member_ids))
    known = set(members)
    status_of: dict[str, str] = {}
    fields_of: dict[str, dict] = {}
    allowed_fields = _MEMBER_FIELDS.get(rule.member_kind, frozenset())
    for entry in entries or []:
        member_id = entry.get("id")
        if member_id not in known:
            LOG.warning("%s: driver update for %s, which is not a member; ignored",
                        rule.operation, member_id)
            continue
        fields = {k: v for k, v in entry.items() if k in allowed_fields}
        if fields:
            fields_of[member_id] = fields
        status = entry.get("status")
        if status is None:
            continue
        if status not in rule.entry_statuses:
            LOG.warning("%s: driver status %r for %s is not one of %s; ignored",
                        rule.operation, status, member_id, sorted(rule.entry_statuses))
            continue
        status_of[member_id] = status

    model_status = (model or {}).get("status")
    promoted = [status_of[m] for m in members if status_of.get(m) in rule.promoting]
    if promoted and model_status not in rule.promoting:
        model_status = promoted[0]
    if model_status is not None and model_status in (ERROR, ERROR_DELETING) \
            and model_status not in rule.model_errors:
        LOG.warning("%s: driver model status %r ignored: for this call only an exception "
                    "means failure", rule.operation, model_status)

    if model_status in rule.model_errors:
        failing = [m for m in members if status_of.get(m) in rule.promoting]
        reason = ("driver reported %s for %s" % (model_status, ", ".join(failing))
                  if failing else "driver reported status %s" % model_status)
        if rule.failure_errors_all:
            member_status = {m: ERROR for m in members}
        else:
            member_status = {m: status_of.get(m, ERROR) for m in members}
        destroy = [m for m in members if member_status[m] == DELETED]
        for member_id in destroy:
            del member_status[member_id]
        return Outcome(True, reason, ERROR, member_status,
                       {m: f for m, f in fields_of.items() if m not in destroy}, destroy)

    if rule.on_success == DESTROY:
        return Outcome(False, None, DELETED, {}, {}, members, destroy_parent=True)
    if rule.on_success == KEEP:
        return Outcome(False, None, AVAILABLE, status_of, fields_of, [])
    member_status = {m: ERROR if status_of.get(m) == ERROR else AVAILABLE for m in members}
    return Outcome(False, None, AVAILABLE, member_status, fields_of, [])


def failure_error(rule: Rule, outcome: Outcome) -> exception.BlockmgrError:
    return exception.VolumeDriverException(
        reason="%s failed: %s" % (rule.operation, outcome.reason))


# --- writing --------------------------------------------------------------------------------

def set_status(session, model, resource_id: str, status: str, *,
               expected: Iterable[str] | None = None, **values) -> bool:
    """Move one row to ``status`` (compare-and-swap) if the state machine and ``expected``
    allow it; True if written. A refused move is logged, never raised: the rules decide
    *what* should happen, the state machine has the last word on *whether* it may."""
    try:
        repository.transition(session, model, resource_id, status, expected=expected,
                              **values)
        return True
    except exception.NotFound:
        LOG.warning("%s %s vanished before it could become %s", model.__name__,
                    resource_id, status)
    except exception.InvalidStatusTransition as exc:
        LOG.warning("Not writing status %s: %s", status, exc)
    return False


def write_members(session, model, outcome: Outcome, *, success_values: dict | None = None,
                  reason: str | None = None) -> None:
    """Write ``outcome``'s member fields and statuses (not its destroys).

    ``success_values`` go with every ``available`` status (``progress``, ``launched_at``);
    ``reason`` becomes the ``status_reason`` of every ``error`` status.
    """
    for member_id, fields in outcome.member_fields.items():
        try:
            repository.update(session, repository.get(session, model, member_id), **fields)
        except exception.NotFound:
            LOG.warning("%s %s vanished before its driver update", model.__name__, member_id)
    for member_id, status in outcome.member_status.items():
        values = {}
        if status == AVAILABLE:
            values.update(success_values or {})
            values["status_reason"] = None
        elif status in (ERROR, ERROR_DELETING):
            values["status_reason"] = (reason or "driver error")[:255]
        set_status(session, model, member_id, status, **values)


def error_out(session, model, resource_ids: Iterable[str], transitional: Iterable[str],
              reason: str | None = None) -> list[str]:
    """Move the rows of ``resource_ids`` still in one of ``transitional`` to ``error``;
    rows in any other status (or gone) are left alone. Returns the ids moved."""
    transitional = set(transitional)
    values = {"status_reason": (reason or "operation failed")[:255]} \
        if hasattr(model, "status_reason") else {}
    moved = []
    for resource_id in resource_ids:
        try:
            current = repository.get(session, model, resource_id).status
        except exception.NotFound:
            continue
        if current in transitional and set_status(session, model, resource_id, ERROR,
                                                  expected=transitional, **values):
            moved.append(resource_id)
    return moved


def _bad_return(rule: Rule, raw, why: str) -> exception.VolumeDriverException:
    text = repr(raw)
    return exception.VolumeDriverException(
        reason="%s returned %s: %s" % (rule.operation, text[:200], why))


def _text(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)

