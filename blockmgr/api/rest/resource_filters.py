"""``GET /resource_filters`` (microversion 3.33): which list filters each resource takes.

Cinder makes them configurable; blockmgr's are fixed and come from the routers themselves,
so this answer cannot drift from what the listings accept. ``?resource=volume`` narrows it
to one resource.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request

from blockmgr.api.rest import deps
from blockmgr.api.rest import group_snapshots
from blockmgr.api.rest import group_views
from blockmgr.api.rest import groups
from blockmgr.api.rest import snapshots
from blockmgr.api.rest import volumes

router = APIRouter(tags=["resource filters"])

RESOURCE_FILTERS_VERSION = (3, 33)


def _filters() -> dict[str, list[str]]:
    return {"volume": sorted(volumes.FILTERS), "snapshot": sorted(snapshots.FILTERS),
            "group": sorted(groups.FILTERS), "group_snapshot": sorted(group_snapshots.FILTERS)}


@router.get("/resource_filters", summary="List the filters each resource accepts (3.33)")
def list_resource_filters(request: Request, ctx: deps.Context,
                          resource: Annotated[str | None, Query(max_length=64)] = None):
    group_views.require_version(RESOURCE_FILTERS_VERSION, "Resource filters")(request)
    found = _filters()
    if resource is not None:
        found = {k: v for k, v in found.items() if k == resource}
    return {"resource_filters": [{"resource": name, "filters": names}
                                 for name, names in sorted(found.items())]}
