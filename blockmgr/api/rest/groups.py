"""``/groups``: consistency groups (Cinder's generic groups, microversion 3.13+).

Thin: each route checks the body's shape, calls :class:`blockmgr.api.groups.GroupService`
(which owns every rule: statuses, quota, backends) and renders Cinder's view. Creating,
updating membership and deleting are asynchronous (``202``); clients poll the group's
``status``. Creating from a source (``POST /groups/action``, ``create-from-src``) needs 3.14.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Query
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import model_validator

from blockmgr import exception
from blockmgr import states
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views as views
from blockmgr.api.rest import zones

router = APIRouter(tags=["groups"], dependencies=[
    Depends(views.require_version(views.GROUPS_VERSION, "Groups"))])

GroupId = Annotated[str, Path(max_length=255, description="Group id (a UUID)")]


def _group_id(group_id: str) -> str:
    """A path id that is not a UUID names no group: ``404``, as Cinder answers."""
    return fields.path_id(group_id, exception.GroupNotFound, "group_id")


class GroupCreate(views.Body):
    name: views.Text | None = None
    description: views.Text | None = None
    group_type: views.TypeLabel | None = Field(
        None, description="Group type label (recorded, no catalogue)")
    volume_types: list[views.TypeLabel] | None = Field(
        None, max_length=64, description="Volume type labels (recorded, no catalogue)")
    availability_zone: views.Text | None = None


class GroupCreateBody(views.Body):
    group: GroupCreate


class GroupUpdate(views.Body):
    name: views.Text | None = None
    description: views.Text | None = None
    add_volumes: str | None = Field(None, max_length=37 * 1000,
                                    description="Comma-separated volume ids to add")
    remove_volumes: str | None = Field(None, max_length=37 * 1000,
                                       description="Comma-separated volume ids to remove")


class GroupUpdateBody(views.Body):
    group: GroupUpdate


class GroupDelete(views.Body):
    delete_volumes: bool = Field(False, alias="delete-volumes")


class GroupActionBody(views.Body):
    """``POST /groups/{id}/action``: ``delete``, or ``reset_status`` (admin, 3.20)."""
    delete: GroupDelete | None = None
    reset_status: views.ResetStatus | None = None

    @model_validator(mode="after")
    def _one_action(self):
        if (self.delete is None) == (self.reset_status is None):
            raise ValueError("give exactly one action: delete or reset_status")
        return self


class CreateFromSource(views.Body):
    name: views.Text | None = None
    description: views.Text | None = None
    group_snapshot_id: views.ResourceId | None = None
    source_group_id: views.ResourceId | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.group_snapshot_id is None) == (self.source_group_id is None):
            raise ValueError("give exactly one of group_snapshot_id and source_group_id")
        return self


class GroupsActionBody(views.Body):
    create_from_src: CreateFromSource = Field(alias="create-from-src")


#: Query parameters of the group listings that filter (public name -> library filter).
FILTERS = {"name": "name", "status": "status"}
ListFilter = Annotated[str | None, Query(max_length=255)]
AllTenants = Annotated[str | None, Query(max_length=8, description="1: every project's "
                                                                  "(admins)")]


#: ``list_volume=true`` adds the ids of the group's volumes (``volumes``) to its detail.
LIST_VOLUME_VERSION = (3, 25)


def _with_volumes(request: Request, ctx, state: deps.RestState, body: dict,
                  list_volume: str | None) -> dict:
    if request.state.api_version < LIST_VOLUME_VERSION:
        if list_volume is not None:
            raise exception.InvalidInput(reason="list_volume needs microversion 3.25 or "
                                                "later")
        return body
    if fields.as_bool(list_volume, "list_volume"):
        rows = state.client.volumes.list_volumes(ctx, filters={"group_id": body["id"]},
                                                 all_projects=ctx.is_admin)
        body["volumes"] = [row["id"] for row in rows]
    return body


def _listing(request: Request, ctx, state: deps.RestState, page: deps.Paging,
             all_tenants: str | None) -> list[dict]:
    ignored = {"all_tenants"}
    if request.state.api_version >= LIST_VOLUME_VERSION:
        ignored.add("list_volume")
    filters = fields.query_filters(request, FILTERS, "groups", frozenset(ignored))
    # As Cinder: all_tenants is ignored for a non-admin (clients send it when finding by
    # name).
    all_projects = fields.as_bool(all_tenants, "all_tenants") and ctx.is_admin
    return state.client.groups.list_groups(
        ctx, filters=filters, marker=page.marker, limit=page.limit, offset=page.offset,
        sort_keys=page.sort_keys, sort_dirs=page.sort_dirs, all_projects=all_projects)


@router.get("/groups", summary="List groups")
def list_groups(request: Request, ctx: deps.Context, state: deps.State, page: deps.Page,
                name: ListFilter = None, status: states.GroupStatus | None = None,
                all_tenants: AllTenants = None):
    """Summaries (``id``, ``name``) of the project's groups, newest first; paged with
    ``limit`` / ``marker``; ``all_tenants=1`` lists every project's for an admin."""
    rows = _listing(request, ctx, state, page, all_tenants)
    items = [views.group_summary(r) for r in rows]
    return {"groups": items, **deps.next_link(request, state, items, page, "groups")}


@router.get("/groups/detail", summary="List groups with details")
def list_groups_detail(request: Request, ctx: deps.Context, state: deps.State,
                       page: deps.Page, name: ListFilter = None,
                       status: states.GroupStatus | None = None,
                       all_tenants: AllTenants = None):
    rows = _listing(request, ctx, state, page, all_tenants)
    version = request.state.api_version
    list_volume = request.query_params.get("list_volume")
    items = [_with_volumes(request, ctx, state, views.group_detail(r, version), list_volume)
             for r in rows]
    return {"groups": items, **deps.next_link(request, state, items, page, "groups")}


@router.get("/groups/{group_id}", summary="Show a group")
def show_group(request: Request, ctx: deps.Context, state: deps.State, group_id: GroupId,
               list_volume: Annotated[str | None, Query(max_length=8)] = None):
    """``list_volume=true`` (3.25) adds the ids of its volumes as ``volumes``."""
    row = state.client.groups.get_group(ctx, _group_id(group_id))
    return {"group": _with_volumes(request, ctx, state,
                                   views.group_detail(row, request.state.api_version),
                                   list_volume)}


@router.post("/groups", status_code=202, summary="Create a group")
def create_group(request: Request, ctx: deps.Context, state: deps.State,
                 body: GroupCreateBody):
    """An empty group; it is ``creating`` until the scheduler placed it (``available``)."""
    spec = body.group
    zones.check_zone(state, spec.availability_zone)
    types = [{"id": label, "name": label} for label in dict.fromkeys(spec.volume_types or [])]
    row = state.client.groups.create_group(
        ctx, name=spec.name, description=spec.description, volume_types=types,
        group_type_id=spec.group_type, availability_zone=spec.availability_zone)
    return {"group": views.group_detail(row, request.state.api_version)}


@router.put("/groups/{group_id}", status_code=202, response_class=Response,
            summary="Update a group")
def update_group(ctx: deps.Context, state: deps.State, group_id: GroupId,
                 body: GroupUpdateBody):
    """Rename, re-describe, and add or remove volumes (comma-separated ids). Membership
    changes are asynchronous: the group is ``updating`` until the worker is done."""
    spec = body.group
    state.client.groups.update_group(
        ctx, _group_id(group_id), name=spec.name, description=spec.description,
        add_volumes=_id_list(spec.add_volumes, "add_volumes"),
        remove_volumes=_id_list(spec.remove_volumes, "remove_volumes"))
    return Response(status_code=202)


@router.post("/groups/{group_id}/action", status_code=202, response_class=Response,
             summary="Delete a group, or reset its status (action)")
def group_action(request: Request, ctx: deps.Context, state: deps.State, group_id: GroupId,
                 body: GroupActionBody):
    """``{"delete": {"delete-volumes": bool}}``: delete the group, with its volumes when
    ``delete-volumes`` is true (else the group must be empty). ``{"reset_status":
    {"status": S}}`` (admin, 3.20): put the group in status ``S``."""
    if body.reset_status is not None:
        views.reset_status(request, ctx, state, "group", _group_id(group_id),
                           body.reset_status)
        return Response(status_code=202)
    state.client.groups.delete_group(ctx, _group_id(group_id),
                                     delete_volumes=body.delete.delete_volumes)
    return Response(status_code=202)


@router.post("/groups/action", status_code=202, summary="Create a group from a source",
             dependencies=[Depends(views.require_version(views.GROUP_SNAPSHOTS_VERSION,
                                                         "Groups from a source"))])
def create_group_from_source(request: Request, ctx: deps.Context, state: deps.State,
                             body: GroupsActionBody):
    """A new group with a copy of every volume of a group snapshot or of a source group,
    on the source's backend."""
    spec = body.create_from_src
    row = state.client.groups.create_group_from_src(
        ctx, group_snapshot_id=spec.group_snapshot_id, source_group_id=spec.source_group_id,
        name=spec.name, description=spec.description)
    return {"group": views.group_detail(row, request.state.api_version)}


def _id_list(value: str | None, what: str) -> list[str] | None:
    """``"id1, id2"`` -> ``["id1", "id2"]``; None stays None."""
    if value is None:
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise exception.InvalidInput(reason="%s names no volume id" % what)
    bad = [i for i in ids if not fields.is_uuid(i)]
    if bad:
        raise exception.InvalidInput(reason="%s: %r is not a volume id (a UUID)"
                                            % (what, bad[0][:64]))
    return [i.lower() for i in ids]
