"""``/v3/{project_id}/snapshots``: list (+ ``/detail``), show, create, update, delete, and
the ``os-unmanage`` action (admin only, as for volumes: it frees quota while the data
stays), and the admin actions ``os-reset_status`` and ``os-force_delete``. Rules are the client library's (:class:`blockmgr.api.snapshots.SnapshotService`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import model_validator

from blockmgr import exception
from blockmgr import states
from blockmgr.api.rest import deps
from blockmgr.api.rest import errors
from blockmgr.api.rest import fields
from blockmgr.api.rest import views
from blockmgr.api.rest import volumes

router = APIRouter(tags=["snapshots"])

FILTERS = {"name": "name", "display_name": "name", "status": "status",
           "volume_id": "volume_id", "project_id": "project_id",
           "name~": "name~", "display_name~": "name~", "status~": "status~",
           "consumes_quota": "consumes_quota"}
#: Filters that need a microversion: like-filters 3.34, ``consumes_quota`` 3.65.
FILTER_VERSIONS = {**{k: volumes.LIKE_FILTER_VERSION for k in FILTERS if k.endswith("~")},
                   "consumes_quota": volumes.CONSUMES_QUOTA_VERSION}
_LIST_PARAMS = frozenset({"all_tenants"})
ACTIONS = ("os-unmanage", "os-reset_status", "os-force_delete")
#: From 3.66 an in-use volume is snapshotted without ``force`` (and ``force: false`` is a
#: ``400``).
IN_USE_WITHOUT_FORCE_VERSION = (3, 66)


class SnapshotCreate(fields.Body):
    volume_id: fields.Uuid
    name: fields.Text | None = None
    description: fields.Text | None = None
    force: fields.Flag | None = Field(None, description="snapshot an in-use volume")
    metadata: Any = Field(None, description="not supported: must be empty or null")

    refuse_metadata = fields.refuse_unless_empty(
        "metadata", "snapshot metadata is not supported by blockmgr",
        "omit metadata or send {}")


class SnapshotCreateRequest(fields.Body):
    snapshot: SnapshotCreate


class SnapshotUpdate(fields.Body):
    name: fields.Text | None = None
    description: fields.Text | None = None
    display_name: fields.Text | None = None
    display_description: fields.Text | None = None


class SnapshotUpdateRequest(fields.Body):
    snapshot: SnapshotUpdate


class SnapshotResetStatus(fields.Body):
    status: fields.Text


class SnapshotAction(fields.Body):
    unmanage: dict | None = Field(None, alias="os-unmanage", max_length=0)
    reset_status: SnapshotResetStatus | None = Field(None, alias="os-reset_status")
    force_delete: dict | None = Field(None, alias="os-force_delete", max_length=0)

    @model_validator(mode="before")
    @classmethod
    def exactly_one_action(cls, data: Any):
        if not isinstance(data, dict) or len(data) != 1 or set(data) - set(ACTIONS):
            names = sorted(data) if isinstance(data, dict) else []
            raise ValueError("unknown or missing snapshot action (%s); this server "
                             "supports %s" % (", ".join(map(repr, names)) or "none",
                                              ", ".join(ACTIONS)))
        return data


def snapshot_id_of(snapshot_id: str) -> str:
    return fields.path_id(snapshot_id, exception.SnapshotNotFound, "snapshot_id")


def _list(request: Request, ctx, state, page, detail: bool, all_tenants: str | None):
    counting = request.state.api_version >= volumes.WITH_COUNT_VERSION
    accepted = fields.versioned_filters(request, FILTERS, FILTER_VERSIONS)
    filters = fields.query_filters(request, accepted, "snapshots",
                                   _LIST_PARAMS | ({"with_count"} if counting else set()))
    all_projects = fields.as_bool(all_tenants, "all_tenants") and ctx.is_admin
    rows = state.client.snapshots.list_snapshots(
        ctx, filters=filters, marker=page.marker, limit=page.limit, offset=page.offset,
        sort_keys=page.sort_keys, sort_dirs=page.sort_dirs, all_projects=all_projects)
    items = [views.snapshot_view(request, ctx, row, detail) for row in rows]
    body = {"snapshots": items,
            **deps.next_link(request, state, items, page, "snapshots")}
    if counting and fields.as_bool(request.query_params.get("with_count"), "with_count"):
        body["count"] = len(state.client.snapshots.list_snapshots(
            ctx, filters=filters, all_projects=all_projects))
    return body


@router.get("/snapshots", summary="List snapshots")
def list_snapshots(request: Request, ctx: deps.Context, state: deps.State, page: deps.Page,
                   all_tenants: str | None = Query(None, max_length=8),
                   name: str | None = Query(None),
                   status: states.SnapshotStatus | None = None,
                   volume_id: str | None = Query(None, max_length=36)):
    """Filters: ``name``, ``status``, ``volume_id``; an admin with ``all_tenants=1`` sees
    every project's (and may filter by ``project_id``)."""
    return _list(request, ctx, state, page, False, all_tenants)


@router.get("/snapshots/detail", summary="List snapshots with details")
def list_snapshots_detail(request: Request, ctx: deps.Context, state: deps.State,
                          page: deps.Page, all_tenants: str | None = Query(None, max_length=8),
                          name: str | None = Query(None),
                          status: states.SnapshotStatus | None = None,
                          volume_id: str | None = Query(None, max_length=36)):
    return _list(request, ctx, state, page, True, all_tenants)


@router.get("/snapshots/{snapshot_id}", summary="Show a snapshot")
def show_snapshot(request: Request, ctx: deps.Context, state: deps.State, snapshot_id: str):
    row = state.client.snapshots.get_snapshot(ctx, snapshot_id_of(snapshot_id))
    return {"snapshot": views.snapshot_view(request, ctx, row)}


@router.post("/snapshots", status_code=202, summary="Create a snapshot")
def create_snapshot(request: Request, ctx: deps.Context, state: deps.State,
                    body: SnapshotCreateRequest):
    """Of an ``available`` volume (``in-use`` with ``force``). ``202``: the snapshot is
    ``creating``."""
    spec = body.snapshot
    force = bool(spec.force)
    if request.state.api_version >= IN_USE_WITHOUT_FORCE_VERSION:
        if spec.force is False:
            raise exception.InvalidInput(reason="force may not be false from microversion "
                                                "3.66 on: an in-use volume is snapshotted "
                                                "without it; omit force")
        force = True
    row = state.client.snapshots.create_snapshot(
        ctx, spec.volume_id, name=spec.name, description=spec.description, force=force)
    return {"snapshot": views.snapshot_view(request, ctx, row)}


@router.put("/snapshots/{snapshot_id}", summary="Rename or re-describe a snapshot")
def update_snapshot(request: Request, ctx: deps.Context, state: deps.State, snapshot_id: str,
                    body: SnapshotUpdateRequest):
    spec = body.snapshot.model_dump(exclude_unset=True)
    spec = fields.labels(spec)
    row = state.client.snapshots.update_snapshot(ctx, snapshot_id_of(snapshot_id), **spec)
    return {"snapshot": views.snapshot_view(request, ctx, row)}


@router.delete("/snapshots/{snapshot_id}", status_code=202, response_class=Response,
               summary="Delete a snapshot")
def delete_snapshot(ctx: deps.Context, state: deps.State, snapshot_id: str):
    state.client.snapshots.delete_snapshot(ctx, snapshot_id_of(snapshot_id))
    return Response(status_code=202)


@router.post("/snapshots/{snapshot_id}/action", status_code=202, response_class=Response,
             summary="Act on a snapshot (os-unmanage)")
def snapshot_action(ctx: deps.Context, state: deps.State, snapshot_id: str,
                    body: SnapshotAction):
    snapshot_id = snapshot_id_of(snapshot_id)
    if not ctx.is_admin:
        raise errors.Forbidden(action="%s for a non-admin caller (role %r needed)"
                                      % ("os-" + next(iter(body.model_fields_set)),
                                         deps.ADMIN_ROLE))
    if body.reset_status is not None:
        state.client.admin.reset_status(ctx, "snapshot", snapshot_id,
                                        body.reset_status.status)
    elif "force_delete" in body.model_fields_set:
        state.client.snapshots.force_delete_snapshot(ctx, snapshot_id)
    else:
        state.client.snapshots.unmanage_snapshot(ctx, snapshot_id)
    return Response(status_code=202)
