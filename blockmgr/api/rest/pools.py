"""``GET /scheduler-stats/get_pools[?detail=true]`` (admin): the pools of the volume backends
and the capacity each reports.

The figures are the capacity report every volume worker publishes to the schedulers
(driver stats plus the worker's allocated capacity, :mod:`blockmgr.volume.capabilities`),
asked of each enabled backend whose service is up, so the answer is as of now rather than
as of the last periodic report. A backend that is down or does not answer is left out (and
logged), as Cinder leaves out a backend whose report is stale.

Shape (Cinder's): ``{"pools": [{"name": "host@backend#pool"}]}``; with ``detail=true`` each
pool has ``capabilities``: the backend's report merged with the pool's own entries. From
microversion 3.28 other query parameters filter pools: ``name`` matches the pool's name,
any other parameter the capability of that name (compared as text). From 3.35
``volume_type`` (a type's name or id) keeps the pools the scheduler's capabilities filter
would let a volume of that type on (its ``volume_backend_name`` and capability specs).
"""

from __future__ import annotations

import logging
import types

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request

from blockmgr import exception
from blockmgr import services as bm_services
from blockmgr.api.rest import deps
from blockmgr.api.rest import fields
from blockmgr.scheduler import filters as sched_filters

LOG = logging.getLogger(__name__)

router = APIRouter(tags=["pools"])

#: Filters on the pool listing.
FILTERS_VERSION = (3, 28)
#: ``volume_type=NAME|ID``: the pools a volume of that type may be placed on.
VOLUME_TYPE_VERSION = (3, 35)


def _live_backends(state: deps.RestState) -> list[str]:
    with state.db.reader() as session:
        found = bm_services.list_services(session, state.conf.service_down_time,
                                          binary=bm_services.VOLUME_BINARY)
    return sorted(s.host for s in found if s.up and not s.disabled)


def pools_of(ctx, state: deps.RestState) -> list[dict]:
    """``[{"name", "capabilities"}]`` of every pool of every live backend."""
    out = []
    for backend in _live_backends(state):
        try:
            report = state.client.volumes.get_capabilities(ctx, backend)
        except Exception as exc:   # one backend's failure must not hide the others
            LOG.warning("Backend %s did not report its capacity: %s: %s", backend,
                        type(exc).__name__, exc)
            continue
        if not isinstance(report, dict):
            continue
        top = {k: v for k, v in report.items() if k != "pools"}
        for pool in report.get("pools") or []:
            if not isinstance(pool, dict):
                continue
            capabilities = dict(top)
            capabilities.update(pool)
            out.append({"name": "%s#%s" % (backend, pool.get("pool_name")),
                        "capabilities": capabilities})
    return out


def _matches(pool: dict, filters: dict[str, str]) -> bool:
    for key, wanted in filters.items():
        have = pool["name"] if key == "name" else pool["capabilities"].get(key)
        if have is None or str(have) != wanted:
            return False
    return True


def _type_specs(ctx, state: deps.RestState, type_ref: str) -> dict[str, str]:
    """The extra specs of the volume type ``type_ref`` (a name or an id).

    :raises VolumeTypeNotFound: no such type (``404``)."""
    found = fields.control_character(type_ref)
    if found:
        raise exception.InvalidInput(reason="filter volume_type contains a %s" % found)
    return dict(state.client.volume_types.get_type(ctx, type_ref).get("extra_specs") or {})


def _fits(pool: dict, extra_specs: dict[str, str]) -> bool:
    """Whether the scheduler's capabilities filter lets a volume of a type with
    ``extra_specs`` on ``pool`` (``volume_backend_name`` and capability specs)."""
    placement = types.SimpleNamespace(extra_specs=extra_specs)
    return sched_filters.capabilities(
        types.SimpleNamespace(capabilities=pool["capabilities"]), placement) is None


@router.get("/scheduler-stats/get_pools", summary="List backend pools and their capacity "
                                                  "(admin)")
def get_pools(request: Request, ctx: deps.AdminContext, state: deps.State,
              detail: str | None = Query(None, max_length=8)):
    """``detail=true`` adds each pool's ``capabilities`` (capacity in GiB, provisioning,
    backend name, ...)."""
    filters = {}
    for key in request.query_params.keys():
        if key == "detail":
            continue
        values = request.query_params.getlist(key)
        if request.state.api_version < FILTERS_VERSION:
            raise exception.InvalidInput(reason="filtering pools (%r) needs microversion 3.28 "
                                                "or later" % key[:64])
        if len(values) != 1:
            raise exception.InvalidInput(reason="filter %s is given more than once" % key)
        if key == "volume_type" and request.state.api_version < VOLUME_TYPE_VERSION:
            raise exception.InvalidInput(reason="filtering pools by volume_type needs "
                                                "microversion 3.35 or later (send "
                                                "OpenStack-API-Version: volume 3.35)")
        filters[key] = values[0]
    show_details = fields.as_bool(detail, "detail")
    wanted = None
    if "volume_type" in filters:
        wanted = _type_specs(ctx, state, filters.pop("volume_type"))
    found = [p for p in pools_of(ctx, state) if _matches(p, filters)
             and (wanted is None or _fits(p, wanted))]
    if not show_details:
        found = [{"name": p["name"]} for p in found]
    return {"pools": found}
