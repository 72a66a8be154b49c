"""Version discovery and microversion negotiation.

Clients first GET ``/`` (or ``/v3/``) to learn the API's version range, then send
``OpenStack-API-Version: volume 3.N`` on each call. We serve Cinder's v3 shapes from 3.0 up
to :data:`MAX_VERSION` (3.71, what current clients ask for); a request for a version outside
the range gets ``406``, like Cinder. Responses state the version they were served at. What
each microversion changes, and what blockmgr does about it, is the table in
``docs/rest-api.md``; the views and routers compare against named ``*_VERSION`` constants.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi import Request
from fastapi.responses import JSONResponse

from blockmgr.api.rest import errors

MIN_VERSION = (3, 0)
MAX_VERSION = (3, 71)
HEADER = "OpenStack-API-Version"
SERVICE = "volume"
UPDATED = "2026-12-03T00:00:00Z"
_VERSION_RE = re.compile(r"^\s*volume\s+(latest|\d+\.\d+)\s*$", re.IGNORECASE)

router = APIRouter(tags=["versions"])


def fmt(version: tuple[int, int]) -> str:
    return "%d.%d" % version


def _version_doc(request: Request) -> dict:
    state = request.app.state.rest
    base = (state.conf.api.public_endpoint or str(request.base_url)).rstrip("/")
    return {"id": "v3.0", "status": "CURRENT", "version": fmt(MAX_VERSION),
            "min_version": fmt(MIN_VERSION), "updated": UPDATED,
            "links": [{"rel": "self", "href": base + "/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


@router.get("/", summary="List API versions")
def list_versions(request: Request):
    """Every major version this server speaks (only v3), with its microversion range."""
    return JSONResponse(status_code=300, content={"versions": [_version_doc(request)]})


@router.get("/v3/", summary="Show API v3 details")
@router.get("/v3", include_in_schema=False)
def show_v3(request: Request):
    return {"version": _version_doc(request)}


def requested(header_value: str | None) -> tuple[int, int]:
    """The microversion a request asks for (3.0 when it does not say).

    :raises errors: a 400 fault for a malformed header, 406 for one out of range.
    """
    if not header_value:
        return MIN_VERSION
    # The header may name several services; ours is the one that starts with "volume".
    for part in header_value.split(","):
        match = _VERSION_RE.match(part)
        if match:
            if match.group(1).lower() == "latest":
                return MAX_VERSION
            major, minor = (int(x) for x in match.group(1).split("."))
            if not MIN_VERSION <= (major, minor) <= MAX_VERSION:
                raise VersionNotAcceptable(requested="%d.%d" % (major, minor),
                                           minimum=fmt(MIN_VERSION), maximum=fmt(MAX_VERSION))
            return major, minor
    raise errors.exception.InvalidInput(
        reason="%s header must look like 'volume 3.N', not %r" % (HEADER, header_value[:64]))


class VersionNotAcceptable(errors.exception.BlockmgrError):
    msg_fmt = ("API version %(requested)s is not supported; this server speaks "
               "%(minimum)s to %(maximum)s.")
    code = 406
