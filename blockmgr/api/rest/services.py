"""``/os-services``: which scheduler and volume services run where, and are they up (admin).

Cinder's shape: ``{"services": [{"binary", "host", "zone", "status", "state",
"updated_at", "disabled_reason"}]}``. ``state`` is ``up`` while the service heartbeat within
``[DEFAULT] service_down_time`` seconds; ``updated_at`` is that last heartbeat. Binaries are
blockmgr's: ``blockmgr-volume`` (host ``host@backend``, one per backend) and
``blockmgr-scheduler``. A volume service whose driver could not be set up is ``down`` with
the reason in ``disabled_reason``.

``PUT /os-services/disable`` (``/disable-log-reason`` with a ``disabled_reason``) and
``PUT /os-services/enable`` with ``{"host", "binary"}`` switch one service (admin). The
scheduler's liveness counts a disabled volume service as unavailable, so a disabled backend
gets no new volumes; what it already serves keeps working.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from pydantic import Field
from pydantic import StrictStr

from blockmgr import exception
from blockmgr import services as bm_services
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
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
        # The backend answers while its worker heartbeats with a started driver; the
        # reason of an operator's disable is not a driver failure.
        failed = service.disabled_reason and not service.disabled
        view["backend_state"] = "up" if service.up and not failed else "down"
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


class ServiceSwitch(fields.Body):
    host: Annotated[StrictStr, Field(min_length=1, max_length=511, pattern=_HOST)]
    binary: Annotated[StrictStr, Field(min_length=1, max_length=255)]


class ServiceDisableWithReason(ServiceSwitch):
    disabled_reason: Annotated[StrictStr, Field(min_length=1, max_length=255)]


def _switch(state: deps.RestState, host: str, binary: str, disabled: bool,
            reason: str | None) -> dict:
    """Set ``disabled`` of the live service ``binary`` on ``host``, with ``reason`` when
    one is given. Enabling a disabled service clears the operator's reason; a reason the
    worker recorded on an enabled service (a driver that failed) is left alone."""
    def work(session):
        rows = session.scalars(sa.select(models.Service).where(
            models.Service.host == host, models.Service.binary == binary,
            models.Service.deleted.is_(False)).with_for_update()).all()
        if not rows:
            raise exception.ServiceNotFound(
                service="%s on host %s (GET /os-services lists the services)"
                        % (binary[:64], host[:64]))
        for row in rows:
            if reason is not None:
                row.disabled_reason = reason
            elif not disabled and row.disabled:
                row.disabled_reason = None
            row.disabled = disabled
        session.flush()

    state.quota.run_in_transaction(work)
    body = {"host": host, "binary": binary, "service": binary,
            "status": "disabled" if disabled else "enabled", "disabled": disabled}
    if reason is not None:
        body["disabled_reason"] = reason
    return body


@router.put("/os-services/disable", summary="Disable a service (admin)")
def disable_service(ctx: deps.AdminContext, state: deps.State, body: ServiceSwitch):
    """A disabled volume service's backend is given no new volumes."""
    return _switch(state, body.host, body.binary, True, None)


@router.put("/os-services/disable-log-reason",
            summary="Disable a service, saying why (admin)")
def disable_service_with_reason(ctx: deps.AdminContext, state: deps.State,
                                body: ServiceDisableWithReason):
    return _switch(state, body.host, body.binary, True, body.disabled_reason)


@router.put("/os-services/enable", summary="Enable a service (admin)")
def enable_service(ctx: deps.AdminContext, state: deps.State, body: ServiceSwitch):
    return _switch(state, body.host, body.binary, False, None)
