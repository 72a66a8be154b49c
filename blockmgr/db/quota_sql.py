"""The quota engine's SQL: its statements, built once, and the small queries around them.

Building a statement and its cache key costs more than running it on SQLite, so the
statements the quota engine runs on every reservation are module constants whose parameters
(the ``b_*`` names) are bound per call. The queries below return plain values; which rows to
lock, and in which order, is the engine's business (:mod:`blockmgr.quota`).
"""

from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from blockmgr.db import models


def new_usage(project_id: str, resource: str) -> models.QuotaUsage:
    return models.QuotaUsage(project_id=project_id, resource=resource, in_use=0, reserved=0)


#: The hot statements, built once (building a statement and its cache key costs more than
#: running it on SQLite); parameters are bound per call.
USAGES = (sa.select(models.QuotaUsage)
           .where(models.QuotaUsage.project_id == sa.bindparam("b_project"),
                  models.QuotaUsage.resource.in_(sa.bindparam("b_resources", expanding=True)))
           .order_by(models.QuotaUsage.resource)
           .execution_options(populate_existing=True))
USAGES_FOR_UPDATE = USAGES.with_for_update()
INSERT_RESERVATION = sa.insert(models.Reservation.__table__)
ADD_RESERVED = (sa.update(models.QuotaUsage.__table__)
                 .where(models.QuotaUsage.__table__.c.id == sa.bindparam("b_id"))
                 .values(reserved=models.QuotaUsage.__table__.c.reserved
                         + sa.bindparam("b_delta"),
                         updated_at=sa.bindparam("b_now")))
RESOLVE_USAGE = (sa.update(models.QuotaUsage.__table__)
                  .where(models.QuotaUsage.__table__.c.id == sa.bindparam("b_id"))
                  .values(reserved=sa.bindparam("b_reserved"),
                          in_use=sa.bindparam("b_in_use"), updated_at=sa.bindparam("b_now")))
RESOLVE_RESERVATIONS = (sa.update(models.Reservation.__table__)
                         .where(models.Reservation.__table__.c.id.in_(
                             sa.bindparam("b_ids", expanding=True)))
                         .values(deleted=True, deleted_at=sa.bindparam("b_now"),
                                 updated_at=sa.bindparam("b_now")))
# Table-level (Core) statements where no ORM object is needed: an ORM-enabled select costs
# about twice as much to execute as the same SQL from the table.
_QT, _RT, _UT = models.Quota.__table__, models.Reservation.__table__, models.QuotaUsage.__table__
LIMITS = (sa.select(_QT.c.resource, _QT.c.hard_limit)
           .where(_QT.c.project_id == sa.bindparam("b_project")))
LIVE_OF_OWNER = (sa.select(_RT.c.uuid, _RT.c.project_id, _RT.c.resource)
                  .where(_RT.c.owner == sa.bindparam("b_owner"), _RT.c.deleted.is_(False))
                  .order_by(_RT.c.id))
LIVE_UUIDS_OF_OWNER = (sa.select(_RT.c.uuid)
                        .where(_RT.c.owner == sa.bindparam("b_owner"),
                               _RT.c.deleted.is_(False))
                        .order_by(_RT.c.id))
KEYS_OF_UUIDS = (sa.select(_RT.c.project_id, _RT.c.resource)
                  .where(_RT.c.uuid.in_(sa.bindparam("b_uuids", expanding=True)),
                         _RT.c.deleted.is_(False))
                  .distinct())
LIVE_BY_UUIDS_FOR_UPDATE = (
    sa.select(_RT.c.id, _RT.c.uuid, _RT.c.project_id, _RT.c.resource, _RT.c.delta)
    .where(_RT.c.uuid.in_(sa.bindparam("b_uuids", expanding=True)), _RT.c.deleted.is_(False))
    .order_by(_RT.c.id)
    .with_for_update())
#: Usage values (no ORM objects), locked, for callers that write them with Core statements.
USAGE_VALUES_FOR_UPDATE = (
    sa.select(_UT.c.id, _UT.c.resource, _UT.c.in_use, _UT.c.reserved)
    .where(_UT.c.project_id == sa.bindparam("b_project"),
           _UT.c.resource.in_(sa.bindparam("b_resources", expanding=True)))
    .order_by(_UT.c.resource)
    .with_for_update())


def select_usages(session: Session, project_id: str, resources: Iterable[str], *,
                   for_update: bool) -> dict[str, models.QuotaUsage]:
    stmt = USAGES_FOR_UPDATE if for_update else USAGES
    return {u.resource: u for u in session.scalars(
        stmt, {"b_project": project_id, "b_resources": sorted(set(resources))})}


def live_deltas(session: Session, project_id: str, resource: str) -> list[int]:
    return [int(d) for d in session.scalars(
        sa.select(models.Reservation.delta)
        .where(models.Reservation.project_id == project_id,
               models.Reservation.resource == resource,
               models.Reservation.deleted.is_(False)))]


def live_uuids_of(session: Session, owner: str) -> list[str]:
    return list(session.scalars(LIVE_UUIDS_OF_OWNER, {"b_owner": owner}))


def live_of(session: Session, owner: str) -> list[tuple[str, str, str]]:
    """``(uuid, project_id, resource)`` of ``owner``'s live reservations, oldest first."""
    return [tuple(row) for row in session.execute(LIVE_OF_OWNER, {"b_owner": owner})]


def reservation_keys(session: Session, uuids: list[str]) -> set[tuple[str, str]]:
    return {(project_id, resource) for project_id, resource in session.execute(
        KEYS_OF_UUIDS, {"b_uuids": list(uuids)})}


def all_projects(session: Session) -> list[str]:
    queries = [
        sa.select(models.QuotaUsage.project_id),
        sa.select(models.Reservation.project_id).where(models.Reservation.deleted.is_(False)),
        sa.select(models.Volume.project_id).where(models.Volume.deleted.is_(False)),
        sa.select(models.Snapshot.project_id).where(models.Snapshot.deleted.is_(False)),
        sa.select(models.Group.project_id).where(models.Group.deleted.is_(False)),
    ]
    projects: set[str] = set()
    for query in queries:
        projects.update(p for p in session.scalars(query.distinct()) if p)
    return sorted(projects)


# --- per-volume-type resources (blockmgr.quota.per_type) -------------------------------------

_VTT = models.VolumeType.__table__
#: Names of types by id, deleted ones included: the per-type truth (:func:`typed_count`,
#: :func:`typed_gigabytes`) matches rows by their type's name whether or not it is deleted,
#: so a reservation must name the same resource.
TYPE_NAMES = (sa.select(_VTT.c.id, _VTT.c.name)
               .where(_VTT.c.id.in_(sa.bindparam("b_ids", expanding=True))))
LIVE_TYPE_NAMES = (sa.select(_VTT.c.name).where(_VTT.c.deleted.is_(False)).distinct()
                    .order_by(_VTT.c.name))


def type_names(session: Session, type_ids: Iterable[str | None]) -> dict[str, str]:
    """``{type id: type name}`` of the given ids (unknown ids are left out)."""
    ids = sorted({t for t in type_ids if t})
    if not ids:
        return {}
    return {i: n for i, n in session.execute(TYPE_NAMES, {"b_ids": ids})}


def live_type_names(session: Session) -> list[str]:
    """Names of the volume types that exist (not deleted), sorted."""
    return list(session.scalars(LIVE_TYPE_NAMES))


def usage_resources(session: Session, project_id: str) -> list[str]:
    """Names of the usage rows a project has."""
    return list(session.scalars(sa.select(_UT.c.resource).where(
        _UT.c.project_id == project_id).order_by(_UT.c.resource)))


def limit_resources(session: Session, project_id: str) -> list[str]:
    """Names of the limits a project overrides."""
    return list(session.scalars(sa.select(_QT.c.resource).where(
        _QT.c.project_id == project_id).order_by(_QT.c.resource)))


def _typed(columns, model, project_id: str, type_name: str | None):
    """``SELECT columns`` over a project's live, quota-counted rows of ``model`` (volumes or
    snapshots) joined to their type; ``type_name`` None: rows of every type."""
    stmt = (sa.select(*columns).select_from(model)
            .join(models.VolumeType, model.volume_type_id == models.VolumeType.id)
            .where(model.project_id == project_id, model.deleted.is_(False),
                   model.use_quota.is_(True)))
    if type_name is not None:
        stmt = stmt.where(models.VolumeType.name == type_name)
    return stmt


def typed_count(session: Session, model, project_id: str, type_name: str) -> int:
    """How many live, quota-counted volumes (or snapshots) of a project have a type named
    ``type_name``."""
    return int(session.scalar(_typed([sa.func.count(model.id)], model, project_id,
                                     type_name)))


def typed_gigabytes(session: Session, project_id: str, type_name: str, *,
                    snapshots: bool) -> int:
    """Gigabytes of a project's volumes (and, with ``snapshots``, snapshots) of a type
    named ``type_name``: what ``gigabytes_<type>`` counts."""
    total = int(session.scalar(_typed(
        [sa.func.coalesce(sa.func.sum(models.Volume.size), 0)], models.Volume, project_id,
        type_name)))
    if snapshots:
        total += int(session.scalar(_typed(
            [sa.func.coalesce(sa.func.sum(models.Snapshot.volume_size), 0)], models.Snapshot,
            project_id, type_name)))
    return total


def typed_names_in_use(session: Session, project_id: str) -> list[str]:
    """Names of the types some live, quota-counted volume or snapshot of the project has:
    the per-type resources whose truth may be non-zero."""
    names: set[str] = set()
    for model in (models.Volume, models.Snapshot):
        names.update(session.scalars(
            _typed([models.VolumeType.name], model, project_id, None).distinct()))
    return sorted(names)
