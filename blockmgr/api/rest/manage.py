"""Adopting backend objects: the manageable listings and the manage calls.

* ``GET /manageable_volumes[/detail]?host=host@backend[#pool]`` and
  ``GET /manageable_snapshots[/detail]?host=...``: what the backend holds that blockmgr
  does not manage (a call to that backend's worker). Paging: ``limit``, ``offset``,
  ``marker`` (the ``source-name`` of the last entry of the previous page), ``sort`` by
  ``reference`` or ``size``. The pre-3.8 paths ``/os-volume-manage[/detail]`` and
  ``/os-snapshot-manage[/detail]`` list the same.
* ``POST /os-volume-manage`` ``{"volume": {"host", "ref", ...}}`` and
  ``POST /os-snapshot-manage`` ``{"snapshot": {"volume_id", "ref", ...}}`` -> ``202``
  with the new resource (``managing`` / ``creating``).

All of it is for admins, as in Cinder: listing reveals every project's backend objects and
managing hands one of them to a project.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from pydantic import Field
from pydantic import StrictStr

from blockmgr import exception
from blockmgr import services as bm_services
from blockmgr.api import common
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.api.rest import group_views
from blockmgr.api.rest import views
from blockmgr.api.rest import zones

router = APIRouter(tags=["manage existing"])

#: A backend reference: {"source-name": ...} or {"source-id": ...}.
Reference = Annotated[dict[str, StrictStr], Field(min_length=1, max_length=4)]
Host = Annotated[StrictStr, Field(min_length=3, max_length=255,
                                  description="host@backend or host@backend#pool")]
_HOST_QUERY = Query(None, min_length=3, max_length=255,
                    description="the backend to list: host@backend[#pool]")


class ManageVolume(fields.Body):
    host: Host
    ref: Reference
    name: fields.Text | None = None
    description: fields.Text | None = None
    availability_zone: fields.Text | None = None
    bootable: fields.Flag = False
    volume_type: Any = Field(None, description="not supported: must be null")
    metadata: Any = Field(None, description="not supported: must be empty or null")

    refuse_volume_type = fields.refuse_unless_empty(
        "volume_type", "volume types are not supported by blockmgr yet", "omit volume_type")
    refuse_metadata = fields.refuse_unless_empty(
        "metadata", "volume metadata is not supported by blockmgr", "omit metadata")


class ManageVolumeRequest(fields.Body):
    volume: ManageVolume


class ManageSnapshot(fields.Body):
    volume_id: fields.Uuid
    ref: Reference
    name: fields.Text | None = None
    description: fields.Text | None = None
    metadata: Any = Field(None, description="not supported: must be empty or null")

    refuse_metadata = fields.refuse_unless_empty(
        "metadata", "snapshot metadata is not supported by blockmgr", "omit metadata")


class ManageSnapshotRequest(fields.Body):
    snapshot: ManageSnapshot


def _serving_backend(state, host: str) -> None:
    """Refuse at once a listing no worker would answer (instead of a call that waits for
    its timeout): ``404`` when no volume service serves ``host``'s backend, ``503`` when it
    is down."""
    backend = common.check_host(host).partition("#")[0]
    with state.db.reader() as session:
        known = [s for s in bm_services.list_services(
                    session, state.conf.service_down_time, binary=bm_services.VOLUME_BINARY)
                 if s.host == backend]
    if not known:
        raise exception.ServiceNotFound(service="volume service of %s" % backend)
    if not any(s.up for s in known):
        raise exception.BackendUnavailable(backend=backend,
                                           reason="its volume service is down")


#: Where Cinder introduced ``/manageable_volumes`` and ``/manageable_snapshots`` (the
#: ``/os-volume-manage`` and ``/os-snapshot-manage`` listings serve every version).
MANAGEABLE_VERSION = (3, 8)
#: ``cluster=NAME@backend`` instead of ``host``: a cluster of volume workers serves its
#: backend under the cluster's name, so it is that backend's host.
CLUSTER_VERSION = (3, 17)


def _listing(request: Request, ctx, state, page, host: str | None, detail: bool,
             snapshots: bool) -> dict:
    if "/manageable_" in request.scope.get("path", ""):
        group_views.require_version(MANAGEABLE_VERSION, "Manageable listings")(request)
    accepted = {"host": "host"}
    if request.state.api_version >= CLUSTER_VERSION:
        accepted["cluster"] = "cluster"
    given = fields.query_filters(request, accepted, "manageable objects")
    if "cluster" in given:
        if host is not None:
            raise exception.InvalidInput(reason="give host or cluster, not both")
        host = given["cluster"]
    if host is None:
        raise exception.InvalidInput(
            reason="host is required: the backend to list, host@backend[#pool]%s"
                   % (" (or cluster=NAME@backend)" if "cluster" in accepted else ""))
    _serving_backend(state, host)
    service = state.client.snapshots if snapshots else state.client.volumes
    method = (service.get_manageable_snapshots if snapshots
              else service.get_manageable_volumes)
    entries = method(ctx, host, marker=page.marker, limit=page.limit, offset=page.offset,
                     sort_keys=page.sort_keys or None, sort_dirs=page.sort_dirs or None)
    key = "manageable-snapshots" if snapshots else "manageable-volumes"
    items = [views.manageable_entry(e, detail, snapshots) for e in entries]
    markers = [{"id": _identifier(e)} for e in entries]
    return {key: items, **deps.next_link(request, state, markers, page, key)}


def _identifier(entry: dict) -> str:
    ref = entry.get("reference") or {}
    return str(ref.get("source-name") or ref.get("source-id") or "")


@router.get("/manageable_volumes", summary="List volumes a backend could hand over")
@router.get("/os-volume-manage", include_in_schema=False)
def list_manageable_volumes(request: Request, ctx: deps.AdminContext, state: deps.State,
                            page: deps.Page, host: str | None = _HOST_QUERY):
    return _listing(request, ctx, state, page, host, False, False)


@router.get("/manageable_volumes/detail", summary="List manageable volumes with details")
@router.get("/os-volume-manage/detail", include_in_schema=False)
def list_manageable_volumes_detail(request: Request, ctx: deps.AdminContext,
                                   state: deps.State, page: deps.Page,
                                   host: str | None = _HOST_QUERY):
    return _listing(request, ctx, state, page, host, True, False)


@router.get("/manageable_snapshots", summary="List snapshots a backend could hand over")
@router.get("/os-snapshot-manage", include_in_schema=False)
def list_manageable_snapshots(request: Request, ctx: deps.AdminContext, state: deps.State,
                              page: deps.Page, host: str | None = _HOST_QUERY):
    return _listing(request, ctx, state, page, host, False, True)


@router.get("/manageable_snapshots/detail", summary="List manageable snapshots with details")
@router.get("/os-snapshot-manage/detail", include_in_schema=False)
def list_manageable_snapshots_detail(request: Request, ctx: deps.AdminContext,
                                     state: deps.State, page: deps.Page,
                                     host: str | None = _HOST_QUERY):
    return _listing(request, ctx, state, page, host, True, True)


def _require_manageable_path_version(request: Request) -> None:
    """``POST /manageable_volumes`` and ``/manageable_snapshots`` are Cinder's 3.8 paths of
    ``/os-volume-manage`` and ``/os-snapshot-manage`` (openstacksdk uses them)."""
    if "/manageable_" in request.scope.get("path", ""):
        group_views.require_version(MANAGEABLE_VERSION, "Managing at this path")(request)


@router.post("/os-volume-manage", status_code=202, summary="Manage an existing volume")
@router.post("/manageable_volumes", status_code=202, include_in_schema=False)
def manage_volume(request: Request, ctx: deps.AdminContext, state: deps.State,
                  body: ManageVolumeRequest):
    """The new volume belongs to the URL's project and is ``managing`` until its worker
    has adopted the object (then ``available``, or ``error_managing`` with the reason)."""
    _require_manageable_path_version(request)
    spec = body.volume
    zones.check_zone(state, spec.availability_zone)
    row = state.client.volumes.manage_existing(
        ctx, spec.host, dict(spec.ref), name=spec.name, description=spec.description,
        availability_zone=spec.availability_zone, bootable=spec.bootable)
    return {"volume": views.volume_detail(request, ctx, row)}


@router.post("/os-snapshot-manage", status_code=202, summary="Manage an existing snapshot")
@router.post("/manageable_snapshots", status_code=202, include_in_schema=False)
def manage_snapshot(request: Request, ctx: deps.AdminContext, state: deps.State,
                    body: ManageSnapshotRequest):
    _require_manageable_path_version(request)
    spec = body.snapshot
    row = state.client.snapshots.manage_existing_snapshot(
        ctx, spec.volume_id, dict(spec.ref), name=spec.name, description=spec.description)
    return {"snapshot": views.snapshot_view(request, ctx, row)}
