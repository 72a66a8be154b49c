"""Queries of the request ledger (``models.Request``); the rules that use them live in
:mod:`blockmgr.ledger`.

Every state change is one conditional UPDATE whose row count says whether it happened, so
two processes racing for a request never both win.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr.db import models

PENDING, CLAIMED, DONE, FAILED = "pending", "claimed", "done", "failed"
OPEN = (PENDING, CLAIMED)
#: The target of a request not placed on a backend yet.
SCHEDULER = "scheduler"

_T = models.Request.__table__
_C = _T.c


@dataclasses.dataclass(frozen=True)
class RequestRow:
    """A claimed request, as its runner needs it."""

    id: str
    kind: str
    resource_id: str
    action: str
    arguments: dict
    context: dict
    target: str
    attempts: int
    claimed_by: str | None = None
    #: True when only ``id`` and ``attempts`` are known (a first claim reads nothing back:
    #: the message carried the arguments); :func:`get_row` reads the rest when needed.
    partial: bool = False

    @classmethod
    def first_claim(cls, request_id: str) -> "RequestRow":
        return cls(id=request_id, kind="", resource_id="", action="", arguments={},
                   context={}, target="", attempts=1, partial=True)

    @classmethod
    def from_row(cls, row) -> "RequestRow":
        return cls(id=row.id, kind=row.kind, resource_id=row.resource_id, action=row.action,
                   arguments=json.loads(row.arguments), context=json.loads(row.context),
                   target=row.target, attempts=row.attempts, claimed_by=row.claimed_by)


def new_id() -> str:
    return str(uuid.uuid4())


def add(session: Session, *, kind: str, resource_id: str, action: str, arguments: dict,
        context: dict, target: str, request_id: str | None = None) -> str:
    """Insert a ``pending`` request in the caller's transaction; returns its id."""
    request_id = request_id or new_id()
    now = models.utcnow()
    session.execute(_T.insert().values(
        id=request_id, kind=kind, resource_id=resource_id, action=action,
        arguments=json.dumps(arguments, sort_keys=True), context=json.dumps(context),
        target=target, state=PENDING, attempts=0, created_at=now, updated_at=now))
    return request_id


def _claimable(now: dt.datetime):
    return sa.and_(_C.state.in_(OPEN),
                   sa.or_(_C.claim_expires_at.is_(None), _C.claim_expires_at <= now))


def claim(session: Session, request_id: str, owner: str, ttl: float,
          targets=None) -> RequestRow | None:
    """Claim ``request_id`` for ``owner`` for ``ttl`` seconds, if it is pending (and due)
    or its claim expired, and (with ``targets``) its target is one of them. The row as
    claimed, or None when someone else holds it or it is finished or gone."""
    now = models.utcnow()
    where = [_C.id == request_id, _claimable(now)]
    if targets is not None:
        where.append(_C.target.in_(list(targets)))
    won = session.execute(_T.update().where(*where).values(
        state=CLAIMED, claimed_by=owner, claim_expires_at=now + dt.timedelta(seconds=ttl),
        attempts=_C.attempts + 1, updated_at=now)).rowcount
    if won != 1:
        return None
    row = session.execute(sa.select(_T).where(_C.id == request_id)).one()
    return RequestRow.from_row(row)


def _claim_first_statement(target_clause):
    return _T.update().where(
        _C.id == sa.bindparam("b_id"), _C.state == PENDING, _C.attempts == 0,
        sa.or_(_C.claim_expires_at.is_(None), _C.claim_expires_at <= sa.bindparam("b_now")),
        target_clause).values(
        state=CLAIMED, claimed_by=sa.bindparam("b_owner"),
        claim_expires_at=sa.bindparam("b_expires"), attempts=1,
        updated_at=sa.bindparam("b_now"))


# One target (a backend's own) compares with "=": an IN list is an expanding parameter,
# rendered into the cached statement again at every execution.
_CLAIM_FIRST_ONE = _claim_first_statement(_C.target == sa.bindparam("b_target"))
_CLAIM_FIRST_ANY = _claim_first_statement(
    _C.target.in_(sa.bindparam("b_targets", expanding=True)))


def claim_first(conn, request_id: str, owner: str, ttl: float, targets) -> bool:
    """The common case of :func:`claim` in one prebuilt statement: a request never claimed
    before, pending and due. True if ``owner`` won it (nothing is read back)."""
    now = models.utcnow()
    params = {"b_id": request_id, "b_now": now, "b_owner": owner,
              "b_expires": now + dt.timedelta(seconds=ttl)}
    targets = list(targets)
    if len(targets) == 1:
        params["b_target"] = targets[0]
        return conn.execute(_CLAIM_FIRST_ONE, params).rowcount == 1
    params["b_targets"] = targets
    return conn.execute(_CLAIM_FIRST_ANY, params).rowcount == 1


def get_row(session: Session, request_id: str) -> RequestRow | None:
    row = get(session, request_id)
    return RequestRow.from_row(row) if row is not None else None


def claimable(session: Session, targets, limit: int,
              quiet_for: float = 0.0) -> list[RequestRow]:
    """Requests of ``targets`` that may be claimed now, oldest first (not claimed).

    ``quiet_for``: of the requests never claimed or given back (no claim expiry: their
    message may still be on its way), only those unchanged for that many seconds; a claim
    that expired or a request given back with a date (:func:`release`) counts at once."""
    now = models.utcnow()
    where = [_claimable(now), _C.target.in_(list(targets))]
    if quiet_for > 0:
        where.append(sa.or_(_C.claim_expires_at.is_not(None),
                            _C.updated_at <= now - dt.timedelta(seconds=quiet_for)))
    return [RequestRow.from_row(row) for row in session.execute(
        sa.select(_T).where(*where).order_by(_C.created_at).limit(limit))]


def renew(session: Session, owner: str, ttl: float) -> int:
    """Extend every live claim of ``owner`` by ``ttl`` seconds from now."""
    now = models.utcnow()
    return session.execute(_T.update().where(_C.state == CLAIMED, _C.claimed_by == owner)
                           .values(claim_expires_at=now + dt.timedelta(seconds=ttl))).rowcount


def _now_due() -> dt.datetime:
    """The claim expiry of a request given back with no message coming: claimable now,
    and rung by the next sweep however recently it changed (:func:`claimable`)."""
    return models.utcnow()


def release_previous_claims(session: Session, targets, owner_prefix: str, owner: str) -> int:
    """Put back to ``pending`` the claims on ``targets`` of earlier processes of this member
    (owners ``<owner_prefix>...`` other than ``owner``): a process that starts knows its
    predecessor under the same name is gone."""
    return session.execute(_T.update().where(
        _C.state == CLAIMED, _C.target.in_(list(targets)),
        _C.claimed_by.like(owner_prefix.replace("%", r"\%").replace("_", r"\_") + "%",
                           escape="\\"),
        _C.claimed_by != owner).values(
        state=PENDING, claimed_by=None, claim_expires_at=_now_due(),
        updated_at=models.utcnow())).rowcount


_FINISH = _T.update().where(
    _C.id == sa.bindparam("b_id"), _C.state == CLAIMED,
    _C.claimed_by == sa.bindparam("b_owner")).values(
    state=sa.bindparam("b_state"), result=sa.bindparam("b_result"),
    finished_at=sa.bindparam("b_now"), claim_expires_at=None,
    updated_at=sa.bindparam("b_now"))


def finish(session: Session, request_id: str, owner: str, state: str = DONE,
           result: str | None = None) -> bool:
    """Mark a request ``owner`` holds finished (``done`` or ``failed``)."""
    return session.execute(_FINISH, {
        "b_id": request_id, "b_owner": owner, "b_state": state,
        "b_result": (result or None) and result[:255],
        "b_now": models.utcnow()}).rowcount == 1


def release(session: Session, request_id: str, owner: str, not_before: dt.datetime | None,
            result: str | None = None) -> bool:
    """Give a claimed request back (``pending``), claimable again from ``not_before``."""
    return session.execute(_T.update().where(
        _C.id == request_id, _C.state == CLAIMED, _C.claimed_by == owner).values(
        state=PENDING, claimed_by=None, claim_expires_at=not_before,
        result=(result or None) and result[:255], updated_at=models.utcnow())).rowcount == 1


def release_all(session: Session, owner: str, keep=()) -> int:
    """Give back every claim of ``owner`` except those in ``keep`` (a stopping process)."""
    where = [_C.state == CLAIMED, _C.claimed_by == owner]
    if keep:
        where.append(_C.id.notin_(list(keep)))
    return session.execute(_T.update().where(*where).values(
        state=PENDING, claimed_by=None, claim_expires_at=_now_due(),
        updated_at=models.utcnow())).rowcount


def hand_off(session: Session, request_id: str, owner: str, target: str, action: str,
             arguments: dict) -> bool:
    """Pass a claimed request on to ``target`` (the scheduler placed it), ``pending``
    there, in the caller's transaction (the one that records the placement)."""
    return session.execute(_T.update().where(
        _C.id == request_id, _C.state == CLAIMED, _C.claimed_by == owner).values(
        target=target, action=action, arguments=json.dumps(arguments, sort_keys=True),
        state=PENDING, claimed_by=None, claim_expires_at=None, attempts=0,
        updated_at=models.utcnow())).rowcount == 1


def newer_open_request(session: Session, request_id: str, resource_id: str) -> bool:
    """True if a request on ``resource_id`` accepted after ``request_id`` is open: the API
    accepts one only once the resource left the earlier one's transitional status, so the
    earlier request's work was finished."""
    mine = sa.select(_C.created_at).where(_C.id == request_id).scalar_subquery()
    return session.execute(sa.select(_C.id).where(
        _C.resource_id == resource_id, _C.id != request_id, _C.state.in_(OPEN),
        _C.created_at > mine).limit(1)).first() is not None


def open_resource_ids(session: Session, resource_ids) -> set[str]:
    """Which of ``resource_ids`` have an open request."""
    ids = list(resource_ids)
    if not ids:
        return set()
    return set(session.execute(sa.select(_C.resource_id).where(
        _C.resource_id.in_(ids), _C.state.in_(OPEN))).scalars())


def fail_open(session: Session, resource_id: str, reason: str) -> int:
    """End every open request on ``resource_id`` as ``failed`` with ``reason``, in the
    caller's transaction (the one that puts the resource in its error status)."""
    now = models.utcnow()
    return session.execute(_T.update().where(
        _C.resource_id == resource_id, _C.state.in_(OPEN)).values(
        state=FAILED, result=reason[:255], claimed_by=None, claim_expires_at=None,
        finished_at=now, updated_at=now)).rowcount


def get(session: Session, request_id: str):
    return session.execute(sa.select(_T).where(_C.id == request_id)).first()


def prune(session: Session, older_than: dt.datetime) -> int:
    """Delete finished requests that finished before ``older_than``."""
    return session.execute(_T.delete().where(
        _C.state.in_((DONE, FAILED)), _C.finished_at < older_than)).rowcount
