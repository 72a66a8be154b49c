"""``/v3/{project_id}/volumes``: list (+ ``/detail``), show, create, update, delete.

Thin: the body's shape is checked here (pydantic, unknown fields refused), every rule of
the operation is the client library's (:class:`blockmgr.api.volumes.VolumeService`), and
the answer is Cinder's view (:mod:`blockmgr.api.rest.views`).

What blockmgr does not have is refused, not ignored: metadata, images, backups and
legacy consistency groups. A client that sends them empty
(python-cinderclient sends ``"metadata": {}`` and nulls) is served.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi import Response
from pydantic import Field

from blockmgr import exception
from blockmgr import states
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views
from blockmgr.api.rest import views
from blockmgr.api.rest import zones
from blockmgr.db import models

router = APIRouter(tags=["volumes"])

#: Query name -> library filter (``display_name`` is the v1 spelling clients still send;
#: ``X~`` is a like-filter: a case-insensitive substring).
FILTERS = {"name": "name", "display_name": "name", "status": "status",
           "availability_zone": "availability_zone", "group_id": "group_id",
           "project_id": "project_id", "bootable": "bootable",
           "name~": "name~", "display_name~": "name~", "status~": "status~",
           "availability_zone~": "availability_zone~",
           "created_at": "created_at", "updated_at": "updated_at",
           "consumes_quota": "consumes_quota"}
_LIST_PARAMS = frozenset({"all_tenants"})
#: ``group_id`` became a volume list filter.
GROUP_FILTER_VERSION = (3, 10)
#: Like-filters (``name~=...``).
LIKE_FILTER_VERSION = (3, 34)
#: ``created_at`` / ``updated_at`` comparisons (``gt:``, ``gte:``, ``lt:``, ``lte:``, ...).
TIME_FILTER_VERSION = (3, 60)
#: The ``consumes_quota`` filter.
CONSUMES_QUOTA_VERSION = (3, 65)
#: Filters that need a microversion (query name -> version); the others are at every one
#: (``bootable`` is parsed strictly at every version, as Cinder from 3.2).
FILTER_VERSIONS = {"group_id": GROUP_FILTER_VERSION,
                   **{k: LIKE_FILTER_VERSION for k in FILTERS if k.endswith("~")},
                   "created_at": TIME_FILTER_VERSION, "updated_at": TIME_FILTER_VERSION,
                   "consumes_quota": CONSUMES_QUOTA_VERSION}
#: ``GET /volumes/summary``; its ``metadata`` key from 3.36.
SUMMARY_VERSION = (3, 12)
SUMMARY_METADATA_VERSION = (3, 36)
#: ``with_count=true`` adds the number of matching volumes (all pages) as ``count``.
WITH_COUNT_VERSION = (3, 45)
#: ``DELETE /volumes/{id}?force=true``.
FORCE_DELETE_VERSION = (3, 23)


class VolumeCreate(fields.Body):
    size: fields.Size | None = Field(
        None, description="GiB; optional from a snapshot or source volume (defaults to "
                           "its size)")
    name: fields.Text | None = None
    description: fields.Text | None = None
    snapshot_id: fields.Uuid | None = None
    source_volid: fields.Uuid | None = None
    availability_zone: fields.Text | None = None
    group_id: fields.Uuid | None = Field(None, description="microversion 3.13 or later")
    volume_type: fields.Text | None = Field(
        None, description="a volume type's name or id (default: the default type)")
    metadata: Any = Field(None, description="not supported: must be empty or null")
    consistencygroup_id: Any = Field(None, description="not supported: must be null")
    imageRef: Any = Field(None, description="not supported: must be null")
    backup_id: Any = Field(None, description="not supported: must be null")
    multiattach: Any = Field(None, description="not supported: must be false or null")

    refuse_metadata = fields.refuse_unless_empty(
        "metadata", "volume metadata is not supported by blockmgr",
        "omit metadata or send {}")
    refuse_consistencygroup_id = fields.refuse_unless_empty(
        "consistencygroup_id", "legacy consistency groups are not supported",
        "use group_id (3.13+)")
    refuse_imageRef = fields.refuse_unless_empty(
        "imageRef", "creating a volume from an image is not supported",
        "omit imageRef")
    refuse_backup_id = fields.refuse_unless_empty(
        "backup_id", "backups are not supported",
        "omit backup_id")
    refuse_multiattach = fields.refuse_unless_empty(
        "multiattach", "multi-attach volumes are not supported",
        "omit multiattach")


class VolumeCreateRequest(fields.Body):
    volume: VolumeCreate
    scheduler_hints: dict[str, Any] | None = Field(
        None, alias="OS-SCH-HNT:scheduler_hints", max_length=32)


class VolumeUpdate(fields.Body):
    name: fields.Text | None = None
    description: fields.Text | None = None
    display_name: fields.Text | None = None
    display_description: fields.Text | None = None
    metadata: Any = None

    refuse_metadata = fields.refuse_unless_empty(
        "metadata", "volume metadata is not supported by blockmgr",
        "omit metadata")


class VolumeUpdateRequest(fields.Body):
    volume: VolumeUpdate


def volume_id_of(volume_id: str) -> str:
    return fields.path_id(volume_id, exception.VolumeNotFound, "volume_id")


def _list(request: Request, ctx, state, page, detail: bool, all_tenants: str | None):
    accepted = fields.versioned_filters(request, FILTERS, FILTER_VERSIONS)
    counting = request.state.api_version >= WITH_COUNT_VERSION
    filters = fields.query_filters(request, accepted, "volumes",
                                   _LIST_PARAMS | ({"with_count"} if counting else set()))
    # Cinder ignores all_tenants for a non-admin; python-cinderclient sends it on every
    # lookup by name, so refusing it would break `cinder show <name>`.
    all_projects = fields.as_bool(all_tenants, "all_tenants") and ctx.is_admin
    rows = state.client.volumes.list_volumes(
        ctx, filters=filters, marker=page.marker, limit=page.limit, offset=page.offset,
        sort_keys=page.sort_keys, sort_dirs=page.sort_dirs, all_projects=all_projects)
    items = views.volume_list(request, ctx, rows, detail)
    body = {"volumes": items, **deps.next_link(request, state, items, page, "volumes")}
    if counting and fields.as_bool(request.query_params.get("with_count"), "with_count"):
        body["count"] = len(state.client.volumes.list_volumes(
            ctx, filters=filters, all_projects=all_projects))
    return body


@router.get("/volumes", summary="List volumes (id, name, links)")
def list_volumes(request: Request, ctx: deps.Context, state: deps.State, page: deps.Page,
                 all_tenants: str | None = Query(None, max_length=8),
                 name: str | None = Query(None), status: states.VolumeStatus | None = None):
    """Filters: ``name``, ``status``, ``availability_zone``, ``group_id``; an admin with
    ``all_tenants=1`` sees every project's (and may filter by ``project_id``)."""
    return _list(request, ctx, state, page, False, all_tenants)


@router.get("/volumes/detail", summary="List volumes with details")
def list_volumes_detail(request: Request, ctx: deps.Context, state: deps.State,
                        page: deps.Page, all_tenants: str | None = Query(None, max_length=8),
                        name: str | None = Query(None),
                        status: states.VolumeStatus | None = None):
    return _list(request, ctx, state, page, True, all_tenants)


@router.get("/volumes/summary", summary="Count and total size of volumes (3.12)")
def volumes_summary(request: Request, ctx: deps.Context, state: deps.State,
                    all_tenants: str | None = Query(None, max_length=8)):
    """``{"volume-summary": {"total_count", "total_size", "metadata" (3.36)}}`` over the
    project's volumes (every project's for an admin with ``all_tenants=1``). blockmgr has
    no volume metadata: ``metadata`` is ``{}``."""
    group_views.require_version(SUMMARY_VERSION, "The volume summary")(request)
    all_projects = fields.as_bool(all_tenants, "all_tenants") and ctx.is_admin
    stmt = sa.select(sa.func.count(models.Volume.id),
                     sa.func.coalesce(sa.func.sum(models.Volume.size), 0)).where(
        models.Volume.deleted.is_(False))
    if not all_projects:
        stmt = stmt.where(models.Volume.project_id == ctx.project_id)
    with state.db.reader() as session:
        count, size = session.execute(stmt).one()
    summary = {"total_count": int(count), "total_size": int(size)}
    if request.state.api_version >= SUMMARY_METADATA_VERSION:
        summary["metadata"] = {}
    return {"volume-summary": summary}


@router.get("/volumes/{volume_id}", summary="Show a volume")
def show_volume(request: Request, ctx: deps.Context, state: deps.State, volume_id: str):
    row = state.client.volumes.get_volume(ctx, volume_id_of(volume_id))
    return {"volume": views.volume_detail(request, ctx, row)}


@router.post("/volumes", status_code=202, summary="Create a volume")
def create_volume(request: Request, ctx: deps.Context, state: deps.State,
                  body: VolumeCreateRequest):
    """A raw volume (``size``), or from ``snapshot_id`` or ``source_volid`` (on the
    source's backend; ``size`` defaults to the source's), of ``volume_type`` (a name or
    id; the default type when absent). ``202``: the volume is
    ``creating``; poll it until ``available`` or ``error``."""
    spec = body.volume
    if spec.group_id is not None and request.state.api_version < views.GROUP_ID_VERSION:
        raise exception.InvalidInput(reason="group_id needs microversion 3.13 or later "
                                            "(send OpenStack-API-Version: volume 3.13)")
    if spec.size is None and spec.snapshot_id is None and spec.source_volid is None:
        raise exception.InvalidInput(reason="size is required for a volume that is not "
                                            "created from a snapshot or a source volume")
    zones.check_zone(state, spec.availability_zone)
    row = state.client.volumes.create_volume(
        ctx, spec.size, name=spec.name, description=spec.description,
        snapshot_id=spec.snapshot_id, source_volid=spec.source_volid,
        availability_zone=spec.availability_zone, group_id=spec.group_id,
        volume_type=spec.volume_type, scheduler_hints=body.scheduler_hints)
    return {"volume": views.volume_detail(request, ctx, row)}


@router.put("/volumes/{volume_id}", summary="Rename or re-describe a volume")
def update_volume(request: Request, ctx: deps.Context, state: deps.State, volume_id: str,
                  body: VolumeUpdateRequest):
    spec = body.volume.model_dump(exclude_unset=True, exclude={"metadata"})
    spec = fields.labels(spec)
    row = state.client.volumes.update_volume(ctx, volume_id_of(volume_id), **spec)
    return {"volume": views.volume_detail(request, ctx, row)}


@router.delete("/volumes/{volume_id}", status_code=202, response_class=Response,
               summary="Delete a volume")
def delete_volume(request: Request, ctx: deps.Context, state: deps.State, volume_id: str,
                  cascade: str | None = Query(None, max_length=8),
                  force: str | None = Query(None, max_length=8)):
    """``cascade=true`` deletes its snapshots too. ``202``: the volume is ``deleting``.
    ``force=true`` (3.23, admin only) deletes it whatever its status, as the
    ``os-force_delete`` action does (a volume a consumer holds is still refused)."""
    forced = False
    if force is not None:
        if request.state.api_version < FORCE_DELETE_VERSION:
            raise exception.InvalidInput(reason="force needs microversion 3.23 or later "
                                                "(send OpenStack-API-Version: volume 3.23)")
        forced = fields.as_bool(force, "force")
    state.client.volumes.delete_volume(ctx, volume_id_of(volume_id),
                                       cascade=fields.as_bool(cascade, "cascade"),
                                       force=forced)
    return Response(status_code=202)
