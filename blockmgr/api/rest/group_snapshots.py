"""``/group_snapshots``: consistent snapshots of every volume of a group (3.14+).

Thin, like ``groups``: the shape is checked here, every rule lives in
:class:`blockmgr.api.groups.GroupService`. Create and delete are asynchronous (``202``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Query
from fastapi import Request
from fastapi import Response

from blockmgr import exception
from blockmgr import states
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views as views

router = APIRouter(tags=["group snapshots"], dependencies=[
    Depends(views.require_version(views.GROUP_SNAPSHOTS_VERSION, "Group snapshots"))])

GroupSnapshotId = Annotated[str, Path(max_length=255,
                                      description="Group snapshot id (a UUID)")]
ListFilter = Annotated[str | None, Query(max_length=255)]


def _snapshot_id(value: str) -> str:
    """A path id that is not a UUID names no group snapshot: ``404``, as in Cinder."""
    return fields.path_id(value, exception.GroupSnapshotNotFound, "group_snapshot_id")


class GroupSnapshotCreate(views.Body):
    group_id: views.ResourceId
    name: views.Text | None = None
    description: views.Text | None = None


class GroupSnapshotCreateBody(views.Body):
    group_snapshot: GroupSnapshotCreate


#: Query parameters of the listings that filter (public name -> library filter).
FILTERS = {"name": "name", "status": "status", "group_id": "group_id"}
AllTenants = Annotated[str | None, Query(max_length=8, description="1: every project's "
                                                                  "(admins)")]
Status = states.GroupSnapshotStatus


def _listing(request: Request, ctx, state: deps.RestState, page: deps.Paging,
             all_tenants: str | None) -> list[dict]:
    filters = fields.query_filters(request, FILTERS, "group snapshots",
                                   frozenset({"all_tenants"}))
    all_projects = fields.as_bool(all_tenants, "all_tenants") and ctx.is_admin
    return state.client.groups.list_group_snapshots(
        ctx, filters=filters, marker=page.marker, limit=page.limit, offset=page.offset,
        sort_keys=page.sort_keys, sort_dirs=page.sort_dirs, all_projects=all_projects)


@router.get("/group_snapshots", summary="List group snapshots")
def list_group_snapshots(request: Request, ctx: deps.Context, state: deps.State,
                         page: deps.Page, name: ListFilter = None,
                         status: Status | None = None, group_id: ListFilter = None,
                         all_tenants: AllTenants = None):
    rows = _listing(request, ctx, state, page, all_tenants)
    items = [views.group_snapshot_summary(r) for r in rows]
    return {"group_snapshots": items,
            **deps.next_link(request, state, items, page, "group_snapshots")}


@router.get("/group_snapshots/detail", summary="List group snapshots with details")
def list_group_snapshots_detail(request: Request, ctx: deps.Context, state: deps.State,
                                page: deps.Page, name: ListFilter = None,
                                status: Status | None = None, group_id: ListFilter = None,
                                all_tenants: AllTenants = None):
    rows = _listing(request, ctx, state, page, all_tenants)
    version = request.state.api_version
    items = [views.group_snapshot_detail(r, version) for r in rows]
    return {"group_snapshots": items,
            **deps.next_link(request, state, items, page, "group_snapshots")}


@router.get("/group_snapshots/{group_snapshot_id}", summary="Show a group snapshot")
def show_group_snapshot(request: Request, ctx: deps.Context, state: deps.State,
                        group_snapshot_id: GroupSnapshotId):
    row = state.client.groups.get_group_snapshot(ctx, _snapshot_id(group_snapshot_id))
    return {"group_snapshot": views.group_snapshot_detail(row,
                                                          request.state.api_version)}


@router.post("/group_snapshots", status_code=202, summary="Create a group snapshot")
def create_group_snapshot(request: Request, ctx: deps.Context, state: deps.State,
                          body: GroupSnapshotCreateBody):
    """Snapshot every volume of an ``available`` group at once; ``creating`` until the
    worker is done. The group must have volumes."""
    spec = body.group_snapshot
    row = state.client.groups.create_group_snapshot(ctx, spec.group_id, name=spec.name,
                                                    description=spec.description)
    return {"group_snapshot": views.group_snapshot_detail(row,
                                                          request.state.api_version)}


@router.delete("/group_snapshots/{group_snapshot_id}", status_code=202,
               response_class=Response, summary="Delete a group snapshot")
def delete_group_snapshot(ctx: deps.Context, state: deps.State,
                          group_snapshot_id: GroupSnapshotId):
    """Delete an ``available`` or ``error`` group snapshot with its member snapshots."""
    state.client.groups.delete_group_snapshot(ctx, _snapshot_id(group_snapshot_id))
    return Response(status_code=202)


class GroupSnapshotActionBody(views.Body):
    """``POST /group_snapshots/{id}/action``: ``reset_status`` (admin, 3.19)."""
    reset_status: views.ResetStatus


@router.post("/group_snapshots/{group_snapshot_id}/action", status_code=202,
             response_class=Response, summary="Reset a group snapshot's status (action)")
def group_snapshot_action(request: Request, ctx: deps.Context, state: deps.State,
                          group_snapshot_id: GroupSnapshotId,
                          body: GroupSnapshotActionBody):
    """``{"reset_status": {"status": S}}`` (admin, 3.19): put the group snapshot in status
    ``S``."""
    views.reset_status(request, ctx, state, "group_snapshot",
                       _snapshot_id(group_snapshot_id), body.reset_status)
    return Response(status_code=202)
