"""``/limits``: the caller's absolute limits and usage, in Cinder's shape.

``{"limits": {"rate": [], "absolute": {"maxTotalVolumes": 10, "totalVolumesUsed": 1, ...}}}``.
blockmgr has no rate limits (``rate`` is always empty) and no backups (no backup keys). The
``maxTotalGroups`` / ``totalGroupsUsed`` pair is blockmgr's addition for the ``groups``
quota; unlimited is ``-1``. An admin may ask for another project's with ``?project_id=``
(python-cinderclient sends ``tenant_id``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Query

from blockmgr import exception
from blockmgr.api.rest import deps

router = APIRouter(tags=["limits"])

#: quota resource -> (limit name, usage name) in the absolute limits.
ABSOLUTE = {
    "volumes": ("maxTotalVolumes", "totalVolumesUsed"),
    "snapshots": ("maxTotalSnapshots", "totalSnapshotsUsed"),
    "gigabytes": ("maxTotalVolumeGigabytes", "totalGigabytesUsed"),
    "groups": ("maxTotalGroups", "totalGroupsUsed"),
}

ProjectQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:@-]{1,255}$")]


@router.get("/limits", summary="Show absolute limits")
def show_limits(ctx: deps.Context, state: deps.State,
                project: Annotated[ProjectQuery, Query(alias="project_id")] = None,
                tenant_id: ProjectQuery = None):
    """The limits and usage of the caller's project (of ``project_id`` / ``tenant_id`` for
    an admin)."""
    project_id = project
    if project_id and tenant_id and project_id != tenant_id:
        raise exception.InvalidInput(reason="project_id and tenant_id name different "
                                            "projects")
    target = project_id or tenant_id or ctx.project_id
    usages = state.client.quotas.show(ctx, target, usage=True)
    absolute = {}
    for resource, (limit_name, used_name) in ABSOLUTE.items():
        absolute[limit_name] = usages[resource]["limit"]
        absolute[used_name] = usages[resource]["in_use"]
    return {"limits": {"rate": [], "absolute": absolute}}
