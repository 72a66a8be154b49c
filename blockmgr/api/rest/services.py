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

from fastapi import APIRouter
from fastapi import Query

from blockmgr import services as bm_services
from blockmgr.api.rest import deps
from blockmgr.api.rest import group_views

router = APIRouter(tags=["services"])

_HOST = r"^[^\s@#]{1,255}(@[^\s@#]{1,255})?$"


def _view(service: bm_services.ServiceState) -> dict:
    return {"binary": service.binary, "host": service.host,
            "zone": service.availability_zone,
            "status": "disabled" if service.disabled else "enabled",
            "state": "up" if service.up else "down",
            "updated_at": group_views.timestamp(
                service.heartbeat_at.isoformat() if service.heartbeat_at else None),
            "disabled_reason": service.disabled_reason}


@router.get("/os-services", summary="List services (admin)")
def list_services(ctx: deps.AdminContext, state: deps.State,
                  host: Annotated[str | None, Query(pattern=_HOST, max_length=511)] = None,
                  binary: Annotated[str | None, Query(max_length=255)] = None):
    """Every live service, optionally of one ``host`` (``host`` or ``host@backend``) and
    one ``binary``; ordered by binary then host."""
    with state.db.reader() as session:
        found = bm_services.list_services(session, state.conf.service_down_time,
                                          binary=binary, host=host)
    if host:  # SQL LIKE treats "_" and "%" as wildcards; keep exact matches only
        found = [s for s in found if s.host == host or s.host.startswith(host + "@")]
    return {"services": [_view(s) for s in found]}
