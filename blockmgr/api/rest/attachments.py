"""``/attachments`` (microversion 3.27; ``os-complete`` from 3.44; ``mode`` from 3.54).

Thin: the shape is checked here, every rule lives in
:class:`blockmgr.api.attachments.AttachmentService`. Create, update and delete answer
``200`` with a body, complete ``204``, as in Cinder; below 3.27 every path is a ``404``
naming the version to send.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Depends
from fastapi import Path
from fastapi import Request
from fastapi import Response
from pydantic import Field
from pydantic import model_validator

from blockmgr import exception
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views
from blockmgr.api.rest import versions

ATTACHMENTS_VERSION = (3, 27)
COMPLETE_VERSION = (3, 44)
MODE_VERSION = (3, 54)

router = APIRouter(tags=["attachments"], dependencies=[
    Depends(group_views.require_version(ATTACHMENTS_VERSION, "Attachments"))])

AttachmentId = Annotated[str, Path(max_length=255, description="Attachment id (a UUID)")]
#: Query parameters of the listings (public name -> library filter).
FILTERS = {"volume_id": "volume_id", "instance_id": "instance_id", "status": "status"}
_QUERY = frozenset(FILTERS) | {"all_tenants", "limit", "marker"}


def _attachment_id(value: str) -> str:
    return fields.path_id(value, exception.AttachmentNotFound, "attachment_id")


def summary(row: dict) -> dict:
    return {"id": row["id"], "status": row["attach_status"],
            "instance": row["instance_uuid"], "volume_id": row["volume_id"]}


def detail(row: dict) -> dict:
    return dict(summary(row), attached_at=row["attach_time"],
                detached_at=row["detach_time"], attach_mode=row["attach_mode"],
                connection_info=row["connection_info"])


class AttachmentCreate(fields.Body):
    volume_uuid: fields.Uuid
    instance_uuid: fields.Uuid | None = None
    connector: fields.Connector | None = None
    mode: str | None = None


class AttachmentCreateBody(fields.Body):
    attachment: AttachmentCreate


class AttachmentUpdate(fields.Body):
    connector: fields.Connector


class AttachmentUpdateBody(fields.Body):
    attachment: AttachmentUpdate


class Complete(fields.Body):
    """``os-complete`` takes no arguments: ``null`` or ``{}``."""


class AttachmentAction(fields.Body):
    complete: Complete | None = Field(None, alias="os-complete")

    @model_validator(mode="before")
    @classmethod
    def one_action(cls, data: Any):
        if not isinstance(data, dict) or set(data) != {"os-complete"}:
            raise ValueError("the only attachment action is os-complete, given alone")
        return {"os-complete": data["os-complete"] or {}}


def _listing(request: Request, ctx, state: deps.RestState) -> list[dict]:
    params = request.query_params
    unknown = sorted(set(params) - _QUERY)
    if unknown:
        raise exception.InvalidInput(reason="unknown query parameter(s) %s; accepted: %s"
                                            % (", ".join(unknown), ", ".join(sorted(_QUERY))))
    filters = {FILTERS[k]: params[k] for k in FILTERS if k in params}
    limit = params.get("limit")
    if limit is not None:
        if not limit.isdigit() or int(limit) > deps.MAX_PAGING:
            raise exception.InvalidInput(reason="limit must be an integer >= 0")
        limit = int(limit)
    all_projects = params.get("all_tenants", "").lower() in ("1", "true", "yes")
    return state.client.attachments.list(ctx, filters=filters, all_projects=all_projects,
                                         limit=limit, marker=params.get("marker"))


@router.get("/attachments", summary="List attachments")
def list_attachments(request: Request, ctx: deps.Context, state: deps.State):
    return {"attachments": [summary(r) for r in _listing(request, ctx, state)]}


@router.get("/attachments/detail", summary="List attachments with details")
def list_attachments_detail(request: Request, ctx: deps.Context, state: deps.State):
    return {"attachments": [detail(r) for r in _listing(request, ctx, state)]}


@router.get("/attachments/{attachment_id}", summary="Show an attachment")
def show_attachment(ctx: deps.Context, state: deps.State, attachment_id: AttachmentId):
    return {"attachment": detail(state.client.attachments.get(
        ctx, _attachment_id(attachment_id)))}


@router.post("/attachments", summary="Reserve a volume for a consumer (and connect it)")
def create_attachment(request: Request, ctx: deps.Context, state: deps.State,
                      body: AttachmentCreateBody):
    """``reserved``; with a connector the volume is exported and connected at once
    (``attaching``) and the answer carries ``connection_info``."""
    spec = body.attachment
    if spec.mode is not None and request.state.api_version < MODE_VERSION:
        raise exception.InvalidInput(reason="mode needs microversion 3.54 or later")
    row = state.client.attachments.create(ctx, spec.volume_uuid.lower(),
                                          instance_uuid=spec.instance_uuid,
                                          connector=spec.connector, mode=spec.mode)
    return {"attachment": detail(row)}


@router.put("/attachments/{attachment_id}", summary="Connect an attachment")
def update_attachment(ctx: deps.Context, state: deps.State, attachment_id: AttachmentId,
                      body: AttachmentUpdateBody):
    row = state.client.attachments.update(ctx, _attachment_id(attachment_id),
                                          body.attachment.connector)
    return {"attachment": detail(row)}


@router.delete("/attachments/{attachment_id}", summary="Detach")
def delete_attachment(ctx: deps.Context, state: deps.State, attachment_id: AttachmentId):
    """A reserved attachment goes at once; a connected one is detached by the volume's
    worker (volume ``detaching``, then ``available`` once no attachment is left). The
    answer lists the volume's other attachments."""
    rows = state.client.attachments.delete(ctx, _attachment_id(attachment_id))
    return {"attachments": [summary(r) for r in rows]}


@router.post("/attachments/{attachment_id}/action", status_code=204,
             response_class=Response, summary="Complete an attachment (3.44)")
def attachment_action(request: Request, ctx: deps.Context, state: deps.State,
                      attachment_id: AttachmentId, body: AttachmentAction):
    if request.state.api_version < COMPLETE_VERSION:
        raise group_views.VersionTooLow(what="os-complete", minimum="3.44",
                                        requested=versions.fmt(request.state.api_version))
    state.client.attachments.complete(ctx, _attachment_id(attachment_id))
    return Response(status_code=204)
