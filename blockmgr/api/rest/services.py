"""``/os-services``: which scheduler and volume services run where, and are they up (admin).

Cinder's shape: ``{"services": [{"binary", "host", "zone", "status", "state",
"updated_at", "disabled_reason"}]}``. ``state`` is ``up`` while the service heartbeat within
``[DEFAULT] service_down_time`` seconds; ``updated_at`` is that last heartbeat. Binaries are
blockmgr's: ``blockmgr-volume`` (host ``host@backend``, one per backend) and
``blockmgr-scheduler``. A volume service whose driver could not be set up is ``down`` with
the reason in ``disabled_reason``.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi import Query
from fastapi import Request

from blockmgr import services as bm_services
from blockmgr.api.rest import deps
from blockmgr.api.rest import group_views
from blockmgr.db import models

router = APIRouter(tags=["services"])

#: ``cluster`` (the cluster a volume service belongs to, or null).
CLUSTER_VERSION = (3, 7)
#: ``backend_state`` of volume services (``up`` / ``down``).
BACKEND_STATE_VERSION = (3, 49)

_HOST = r"^[^\s@#]{1,255}(@[^\s@#]{1,255})?$"


def _view(service: bm_services.ServiceState, version: tuple[int, int],
          clusters: dict[int, str | None]) -> dict:
    view = {"binary": service.binary, "host": service.host,
            "zone": service.availability_zone,
            "status": "disabled" if service.disabled else "enabled",
            "state": "up" if service.up else "down",
            "updated_at": group_views.timestamp(
                service.heartbeat_at.isoformat() if service.heartbeat_at else None),
            "disabled_reason": service.disabled_reason}
    if version >= CLUSTER_VERSION:
        view["cluster"] = clusters.get(service.id)
    if version >= BACKEND_STATE_VERSION and service.binary == bm_services.VOLUME_BINARY:
        # The backend answers while its worker heartbeats with a started driver.
        view["backend_state"] = "up" if service.up and not service.disabled_reason \
            else "down"
    return view


@router.get("/os-services", summary="List services (admin)")
def list_services(request: Request, ctx: deps.AdminContext, state: deps.State,
                  host: Annotated[str | None, Query(pattern=_HOST, max_length=511)] = None,
                  binary: Annotated[str | None, Query(max_length=255)] = None):
    """Every live service, optionally of one ``host`` (``host`` or ``host@backend``) and
    one ``binary``; ordered by binary then host."""
    with state.db.reader() as session:
        found = bm_services.list_services(session, state.conf.service_down_time,
                                          binary=binary, host=host)
        clusters = dict(session.execute(sa.select(models.Service.id,
                                                  models.Service.cluster_name)).all())
    if host:  # SQL LIKE treats "_" and "%" as wildcards; keep exact matches only
        found = [s for s in found if s.host == host or s.host.startswith(host + "@")]
    version = request.state.api_version
    return {"services": [_view(s, version, clusters) for s in found]}
