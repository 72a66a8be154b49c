"""Query functions over the models. Queries only: no policy, no quota, no transactions.

Every function takes the caller's ``Session``; the caller owns the (short) transaction.
Status changes that must not race (a flow moving a resource on while an API request moves it
elsewhere) use :func:`transition`, a compare-and-swap ``UPDATE ... WHERE status IN (...)``
checked against the same transition table the models enforce.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models

M = TypeVar("M", bound=models.Base)

_NOT_FOUND = {
    models.Volume: (exception.VolumeNotFound, "volume_id"),
    models.Snapshot: (exception.SnapshotNotFound, "snapshot_id"),
    models.Group: (exception.GroupNotFound, "group_id"),
    models.GroupSnapshot: (exception.GroupSnapshotNotFound, "group_snapshot_id"),
}


def get(session: Session, model: type[M], resource_id: str, *, project_id: str | None = None,
        read_deleted: bool = False, for_update: bool = False) -> M:
    """Return the row or raise the model's typed NotFound.

    ``project_id`` restricts the lookup to one project (a row of another project is reported as
    not found, never as forbidden, so ids of other projects do not leak).
    """
    stmt = _get_statement(model, project_id is not None, read_deleted, for_update, False)
    row = session.scalars(stmt, {"b_id": resource_id, "b_project": project_id}).first()
    if row is None:
        raise _not_found(model, resource_id)
    return row


def get_columns(session: Session | sa.Connection, model: type[M], resource_id: str,
                columns: tuple[str, ...]) -> sa.Row:
    """Some columns of a live row, as a read-only ``Row`` (attribute access by column name);
    the typed NotFound like :func:`get`. ``session`` may be a Core connection
    (``Database.read_connection``).

    For readers that only turn the row into a view: no ORM object is built or put in the
    session, which halves the cost of the read.
    """
    key = ("columns", model, columns)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        table = model.__table__
        stmt = sa.select(*(table.c[name] for name in columns)).where(
            table.c.id == sa.bindparam("b_id"))
        if "deleted" in table.c:
            stmt = stmt.where(table.c.deleted.is_(False))
        _STATEMENTS[key] = stmt
    row = session.execute(stmt, {"b_id": resource_id}).first()
    if row is None:
        raise _not_found(model, resource_id)
    return row


def live_ids_on_host(session: Session, model: type[M], host: str, *,
                     ids: Iterable[str] = (), provider_id: str | None = None) -> list[str]:
    """Ids of live rows on ``host@backend`` (any ``#pool`` under it) that have one of
    ``ids`` or the given ``provider_id``: what a backend already manages under those names.

    ``ids`` is a primary-key lookup; ``provider_id`` has no index of its own and is
    narrowed by the ``(host, status)`` index, so it costs a scan of the backend's rows.
    """
    ids = sorted(set(ids))
    found: list[str] = []
    table = model.__table__
    on_host = sa.or_(table.c.host == host, table.c.host.like(host + "#%"))
    if ids:
        found += session.scalars(sa.select(table.c.id).where(
            table.c.id.in_(ids), table.c.deleted.is_(False), on_host)).all()
    if provider_id is not None:
        found += session.scalars(sa.select(table.c.id).where(
            table.c.provider_id == provider_id, table.c.deleted.is_(False), on_host)).all()
    return sorted(set(found))


def _not_found(model, resource_id: str) -> exception.NotFound:
    exc_cls, kwarg = _NOT_FOUND.get(model, (exception.NotFound, "id"))
    return exc_cls(**{kwarg: resource_id})


#: Statements built once and reused with bound parameters. Building a select and computing
#: its cache key costs more than running it on SQLite (~0.25 ms per call here); a reused
#: statement object keeps its cache key, so the compiled form is found at once.
_STATEMENTS: dict[tuple, object] = {}


def _get_statement(model, by_project: bool, read_deleted: bool, for_update: bool,
                   refresh: bool):
    key = ("get", model, by_project, read_deleted, for_update, refresh)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = sa.select(model).where(model.id == sa.bindparam("b_id"))
        if by_project:
            stmt = stmt.where(model.project_id == sa.bindparam("b_project"))
        if not read_deleted and hasattr(model, "deleted"):
            stmt = stmt.where(model.deleted.is_(False))
        if for_update:
            stmt = stmt.with_for_update()
        if refresh:
            stmt = stmt.execution_options(populate_existing=True)
        _STATEMENTS[key] = stmt
    return stmt


def _update_statement(model, columns: tuple[str, ...], *, checked_status: bool,
                      one_source: bool = False):
    """``UPDATE <table> SET <columns> WHERE id = :b_id AND NOT deleted`` (and, with
    ``checked_status``, ``AND status IN :b_sources``, or ``AND status = :b_source`` with
    ``one_source``), built once per shape and cached; parameters ``v_<column>``.

    ``one_source`` because an IN list is an *expanding* parameter, which SQLAlchemy renders
    into the cached statement again at every execution (a few percent of a worker's CPU
    per create, for a flow's closing write that has one source status).

    Built on the model's Table, not the mapped class: a Core UPDATE skips the ORM's bulk
    update machinery, about half the CPU of the flows' finishing writes. ``Session.execute``
    still flushes what the session holds before running it, as for an ORM UPDATE, so a
    pending change is not written over it at commit (tested).
    """
    key = ("update", model, columns, checked_status, one_source)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        mapped = sa.inspect(model).columns
        for name in columns:
            if name not in mapped:
                raise exception.InvalidInput(
                    reason="%s has no field %r" % (model.__name__, name))
        table = model.__table__
        where = [table.c.id == sa.bindparam("b_id"), table.c.deleted.is_(False)]
        if checked_status and one_source:
            where.append(table.c.status == sa.bindparam("b_source"))
        elif checked_status:
            where.append(table.c.status.in_(sa.bindparam("b_sources", expanding=True)))
        stmt = (sa.update(table).where(*where)
                .values({mapped[name]: sa.bindparam("v_" + name) for name in columns}))
        _STATEMENTS[key] = stmt
    return stmt


def create(session: Session, model: type[M], **values) -> M:
    row = model(**values)
    session.add(row)
    session.flush()
    return row


def update(session: Session, row: models.Base, **values) -> models.Base:
    """Apply ``values`` to a loaded row (status goes through the model's validator)."""
    for key, value in values.items():
        if not hasattr(type(row), key):
            raise exception.InvalidInput(
                reason="%s has no field %r" % (type(row).__name__, key))
        setattr(row, key, value)
    session.flush()
    return row


def update_by_id(session: Session, model: type[M], resource_id: str, **values) -> None:
    """Write ``values`` to the live row ``resource_id`` without loading it: one UPDATE.

    For fields other than ``status`` (status changes go through :func:`transition`, which
    checks them). Raises the typed NotFound if the row is gone (nothing written).
    """
    if "status" in values:
        raise exception.InvalidInput(reason="status changes go through transition()")
    stmt = _update_statement(model, tuple(sorted(values)), checked_status=False)
    params = {"v_" + name: value for name, value in values.items()}
    params["b_id"] = resource_id
    if session.execute(stmt, params).rowcount != 1:
        raise _not_found(model, resource_id)


def transition(session: Session, model: type[M], resource_id: str, new_status: str, *,
               expected: Iterable[str] | None = None, fetch: bool = True,
               **values) -> M | None:
    """Atomically move a row to ``new_status`` if its current status allows it.

    ``expected`` narrows the allowed current statuses further (e.g. only ``deleting``).
    Raises the typed NotFound if the row is gone and InvalidStatusTransition if the current
    status does not allow the move; in both cases nothing is written. Returns the row as
    written, read back once; ``fetch=False`` skips that read (and returns None) for a caller
    that does not use the row -- the write and its checks are the same.
    """
    kind = model.__status_kind__
    sources = set(states.allowed_sources(kind, new_status))
    if expected is not None:
        sources &= {str(s) for s in expected}
    values = {**values, "status": str(new_status)}
    stmt = _update_statement(model, tuple(sorted(values)), checked_status=True)
    params = {"v_" + name: value for name, value in values.items()}
    params.update(b_id=resource_id, b_sources=sorted(sources))
    if session.execute(stmt, params).rowcount != 1:
        current = get(session, model, resource_id)
        states.check_transition(kind, current.status, new_status, resource_id=resource_id)
        raise exception.InvalidStatusTransition(
            resource=kind, resource_id=resource_id, current=current.status,
            requested=new_status, allowed="only from " + ", ".join(sorted(sources)))
    if not fetch:
        return None
    # One read that also overwrites a copy of the row the session may already hold.
    row = session.scalars(_get_statement(model, False, False, False, True),
                          {"b_id": resource_id, "b_project": None}).first()
    if row is None:
        raise _not_found(model, resource_id)
    return row


def finish(session: Session, model: type[M], resource_id: str, new_status: str, *,
           in_progress: str, pending=(), **values) -> bool:
    """A flow's last write: move the row from ``in_progress`` to ``new_status``; True if
    written, False if the row has already left ``in_progress`` (or is gone) -- nothing is
    written then and nothing is raised.

    Why False is not an error: a worker that dies after this write committed but before its
    logbook recorded it runs the step again at the next start. Meanwhile the API may have
    accepted the next request on the now usable resource (a delete, an extend), so the row
    can be in *any* status by then; re-applying the write -- or failing and reverting a
    flow whose work is done -- would undo or overwrite that request. The row leaving
    ``in_progress`` is the proof the write happened, because only the flow that owns the
    status moves a row out of it. Where a later request can put the row back into the same
    status (a second extend), ``pending`` adds SQL conditions that hold only before this
    flow's write (``Volume.size < new_size``).

    The status rules still apply: ``in_progress -> new_status`` must be an allowed move.
    """
    kind = model.__status_kind__
    if str(in_progress) not in states.allowed_sources(kind, new_status):
        states.check_transition(kind, in_progress, new_status, resource_id=resource_id)
    values = {**values, "status": str(new_status)}
    stmt = _update_statement(model, tuple(sorted(values)), checked_status=True,
                             one_source=True)
    if pending:
        stmt = stmt.where(*pending)
    params = {"v_" + name: value for name, value in values.items()}
    params.update(b_id=resource_id, b_source=str(in_progress))
    return session.execute(stmt, params).rowcount == 1


def soft_delete(session: Session, row: models.SoftDeleteMixin) -> None:
    """Mark a resource deleted (status ``deleted`` for resources that have a status)."""
    if isinstance(row, models.StatusMixin):
        row.status = "deleted"
    row.deleted = True
    row.deleted_at = models.utcnow()
    session.flush()


def list_by_host_and_status(session: Session, model: type[M], host: str,
                            statuses: Iterable[str]) -> Sequence[M]:
    """Rows of one host in the given statuses, served by the ``(host, status)`` index.

    ``host`` matches ``host@backend`` exactly and any ``host@backend#pool`` under it.
    """
    stmt = (sa.select(model)
            .where(model.deleted.is_(False), model.status.in_(list(statuses)),
                   sa.or_(model.host == host, model.host.like(host + "#%"))))
    return session.scalars(stmt).all()


def list_snapshots_by_host_and_status(session: Session, host: str,
                                      statuses: Iterable[str]) -> Sequence[models.Snapshot]:
    """Snapshots (which have no host of their own) whose parent volume lives on ``host``."""
    stmt = (sa.select(models.Snapshot)
            .join(models.Volume, models.Volume.id == models.Snapshot.volume_id)
            .where(models.Snapshot.deleted.is_(False),
                   models.Snapshot.status.in_(list(statuses)),
                   sa.or_(models.Volume.host == host, models.Volume.host.like(host + "#%"))))
    return session.scalars(stmt).all()


def list_for_project(session: Session, model: type[M], project_id: str | None, *,
                     limit: int | None = None, marker: str | None = None,
                     filters: dict | None = None) -> Sequence[M]:
    """Live rows of a project (all projects when ``project_id`` is None), ordered by id."""
    stmt = sa.select(model).where(model.deleted.is_(False))
    if project_id is not None:
        stmt = stmt.where(model.project_id == project_id)
    for key, value in (filters or {}).items():
        stmt = stmt.where(getattr(model, key) == value)
    if marker is not None:
        stmt = stmt.where(model.id > marker)
    stmt = stmt.order_by(model.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def volumes_in_group(session: Session, group_id: str) -> Sequence[models.Volume]:
    stmt = sa.select(models.Volume).where(models.Volume.group_id == group_id,
                                          models.Volume.deleted.is_(False))
    return session.scalars(stmt.order_by(models.Volume.id)).all()


def snapshots_of_group_snapshot(session: Session,
                                group_snapshot_id: str) -> Sequence[models.Snapshot]:
    stmt = sa.select(models.Snapshot).where(
        models.Snapshot.group_snapshot_id == group_snapshot_id,
        models.Snapshot.deleted.is_(False))
    return session.scalars(stmt.order_by(models.Snapshot.id)).all()


def snapshots_of_volume(session: Session, volume_id: str) -> Sequence[models.Snapshot]:
    stmt = sa.select(models.Snapshot).where(models.Snapshot.volume_id == volume_id,
                                            models.Snapshot.deleted.is_(False))
    return session.scalars(stmt.order_by(models.Snapshot.id)).all()


def list_group_snapshots_by_host_and_status(session: Session, host: str,
                                            statuses: Iterable[str]
                                            ) -> Sequence[models.GroupSnapshot]:
    """Group snapshots (no host of their own) whose group lives on ``host``."""
    stmt = (sa.select(models.GroupSnapshot)
            .join(models.Group, models.Group.id == models.GroupSnapshot.group_id)
            .where(models.GroupSnapshot.deleted.is_(False),
                   models.GroupSnapshot.status.in_(list(statuses)),
                   sa.or_(models.Group.host == host, models.Group.host.like(host + "#%"))))
    return session.scalars(stmt).all()


def volumes_on_host(session: Session, host: str) -> Sequence[models.Volume]:
    """Live volumes of ``host@backend`` (any ``#pool`` under it), ordered by id."""
    stmt = (sa.select(models.Volume)
            .where(models.Volume.deleted.is_(False),
                   sa.or_(models.Volume.host == host, models.Volume.host.like(host + "#%")))
            .order_by(models.Volume.id))
    return session.scalars(stmt).all()


def snapshots_on_host(session: Session, host: str) -> Sequence[models.Snapshot]:
    """Live snapshots whose volume lives on ``host@backend``, ordered by id."""
    stmt = (sa.select(models.Snapshot)
            .join(models.Volume, models.Volume.id == models.Snapshot.volume_id)
            .where(models.Snapshot.deleted.is_(False),
                   sa.or_(models.Volume.host == host, models.Volume.host.like(host + "#%")))
            .order_by(models.Snapshot.id))
    return session.scalars(stmt).all()


# --- sorted, keyset-paged listings (REST list calls) ------------------------------------------

#: Columns that may be NULL are sorted by a non-NULL stand-in, so that every database orders
#: them the same way (NULLs first on SQLite/MariaDB, last on PostgreSQL otherwise) and a
#: keyset condition on them never meets a NULL comparison.
def _sort_expression(model, name: str):
    column = model.__table__.c[name]
    if name == "updated_at":
        return sa.func.coalesce(model.updated_at, model.created_at)
    if column.nullable:
        return sa.func.coalesce(getattr(model, name), "")
    return getattr(model, name)


@dataclasses.dataclass(frozen=True)
class Match:
    """A filter condition of :func:`list_page` other than equality: ``op`` is ``like`` (a
    case-insensitive substring; ``%`` and ``_`` in ``value`` match themselves) or a
    comparison ``eq``, ``neq``, ``gt``, ``gte``, ``lt``, ``lte``."""
    op: str
    value: object

    OPERATORS = ("like", "eq", "neq", "gt", "gte", "lt", "lte")

    def __post_init__(self):
        if self.op not in self.OPERATORS:
            raise exception.InvalidInput(reason="unknown filter operator %r; operators are: %s"
                                                % (self.op, ", ".join(self.OPERATORS)))

    def clause(self, column):
        if self.op == "like":
            escaped = (str(self.value).replace("!", "!!").replace("%", "!%")
                       .replace("_", "!_"))
            return column.ilike("%" + escaped + "%", escape="!")
        return {"eq": column.__eq__, "neq": column.__ne__, "gt": column.__gt__,
                "gte": column.__ge__, "lt": column.__lt__,
                "lte": column.__le__}[self.op](self.value)


def list_page(session: Session, model: type[M], *, project_id: str | None,
              filters: dict | None = None, order: Sequence[tuple[str, str]] = (),
              marker_id: str | None = None, offset: int = 0,
              limit: int | None = None) -> Sequence[M]:
    """One page of live rows, ordered by ``order`` (``[(column, "asc"|"desc")]``, ``id``
    appended as the tie-breaker) and starting after the row ``marker_id`` (keyset paging, so
    a page does not shift when rows are added before it), then skipping ``offset`` rows.

    ``project_id`` None means every project. ``filters`` map columns to a value (equality),
    a :class:`Match` or a list of them (all must hold).
    The marker must be a live row in the same project scope; the caller checks that first
    (:func:`get`), so this function reports a vanished marker as the model's NotFound.
    """
    stmt = sa.select(model).where(model.deleted.is_(False))
    if project_id is not None:
        stmt = stmt.where(model.project_id == project_id)
    for key, value in (filters or {}).items():
        column = getattr(model, key)
        for condition in (value if isinstance(value, list) else [value]):
            stmt = stmt.where(condition.clause(column) if isinstance(condition, Match)
                              else column == condition)
    keys = list(order)
    if "id" not in [name for name, _d in keys]:
        keys.append(("id", keys[-1][1] if keys else "asc"))
    exprs = [(_sort_expression(model, name), direction) for name, direction in keys]
    if marker_id is not None:
        values = session.execute(
            sa.select(*[e for e, _d in exprs]).where(model.id == marker_id,
                                                     model.deleted.is_(False))).first()
        if values is None:
            raise _not_found(model, marker_id)
        after = []
        for i, (expr, direction) in enumerate(exprs):
            equal = [exprs[j][0] == values[j] for j in range(i)]
            beyond = expr > values[i] if direction == "asc" else expr < values[i]
            after.append(sa.and_(*equal, beyond))
        stmt = stmt.where(sa.or_(*after))
    stmt = stmt.order_by(*[e.asc() if d == "asc" else e.desc() for e, d in exprs])
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()
