"""``GET /os-availability-zone``: the availability zones of the volume services, and the
check that refuses a request naming a zone none of them is in.

A zone is what a volume service registered (``services.availability_zone``); a zone is
*available* while at least one enabled volume service in it is up. Disabled services'
zones are not listed, as in Cinder. The answer is Cinder's
``{"availabilityZoneInfo": [{"zoneName", "zoneState": {"available"}}]}``.
"""

from __future__ import annotations

from fastapi import APIRouter

from blockmgr import exception
from blockmgr import services as bm_services
from blockmgr.api.rest import deps

router = APIRouter(tags=["availability zones"])


def zones(state: deps.RestState) -> dict[str, bool]:
    """Zone name -> whether a volume service in it is up, over the enabled services."""
    with state.db.reader() as session:
        found = bm_services.list_services(session, state.conf.service_down_time,
                                          binary=bm_services.VOLUME_BINARY)
    out: dict[str, bool] = {}
    for service in found:
        if service.disabled:
            continue
        out[service.availability_zone] = out.get(service.availability_zone, False) or \
            service.up
    return out


def check_zone(state: deps.RestState, zone: str | None) -> None:
    """Refuse (``400``) a zone no enabled volume service is in; None passes."""
    if zone is None:
        return
    known = zones(state)
    if zone not in known:
        raise exception.InvalidInput(
            reason="availability zone %r is unknown; the zones are: %s"
                   % (zone[:64], ", ".join(sorted(known)) or "none (no volume service "
                                                               "is enabled)"))


@router.get("/os-availability-zone", summary="List availability zones")
def list_availability_zones(ctx: deps.Context, state: deps.State):
    return {"availabilityZoneInfo": [{"zoneName": name, "zoneState": {"available": up}}
                                     for name, up in sorted(zones(state).items())]}
