"""Build the REST application from its collaborators.

``create_app`` is the one constructor: ``blockmgr-api`` calls it with a client on the
RabbitMQ transport, ``blockmgr serve`` with one on the in-process transport, tests with
whatever they need. Nothing here reads global state.
"""

from __future__ import annotations

import importlib
import logging

from fastapi import Depends
from fastapi import FastAPI
from fastapi import Request

from blockmgr.api.rest import auth
from blockmgr.api.rest import deps
from blockmgr.api.rest import errors
from blockmgr.api.rest import fields
from blockmgr.api.rest import versions

LOG = logging.getLogger(__name__)

#: Router modules mounted under ``/v3/{project_id}`` and, for microversion 3.67's URLs
#: without a project id, under ``/v3`` (each exposes ``router``), in order.
#: A module listed here that is not importable is a packaging error, not optional.
RESOURCE_ROUTERS = (
    "blockmgr.api.rest.volumes",
    "blockmgr.api.rest.volume_actions",
    "blockmgr.api.rest.attachments",
    "blockmgr.api.rest.snapshots",
    "blockmgr.api.rest.manage",
    "blockmgr.api.rest.groups",
    "blockmgr.api.rest.group_snapshots",
    "blockmgr.api.rest.quotas",
    "blockmgr.api.rest.limits",
    "blockmgr.api.rest.services",
    "blockmgr.api.rest.resource_filters",
    "blockmgr.api.rest.zones",
    "blockmgr.api.rest.pools",
    "blockmgr.api.rest.types",
)


def _available_routers():
    for name in RESOURCE_ROUTERS:
        try:
            yield importlib.import_module(name).router
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            LOG.debug("REST router %s not present", name)


#: Methods whose body, when there is one, must be JSON.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json"))


def refused_request(request: Request):
    """The fault for a request no route should see, else None: a control character in
    the path or the query string (``400``), a body that is not declared JSON (``415``)."""
    path = request.scope.get("path", "")
    found = fields.control_character(path, text=False)
    if found:
        return errors.fault(400, "The URL path contains a %s; remove it." % found)
    for key, value in request.query_params.multi_items():
        found = fields.control_character(key, text=False) or fields.control_character(value)
        if found:
            return errors.fault(400, "Query parameter %r contains a %s; remove it."
                                     % (key[:64], found))
    if request.method in _BODY_METHODS:
        length = request.headers.get("content-length")
        has_body = (length is not None and length.strip() not in ("", "0")) or (
            "transfer-encoding" in request.headers)
        content_type = request.headers.get("content-type")
        if has_body and not (content_type and _is_json(content_type)):
            return errors.fault(415, "The request body must be JSON: send 'Content-Type: "
                                     "application/json' (%s)."
                                     % ("got %r" % content_type[:64] if content_type
                                        else "no Content-Type was sent"))
    return None


def create_app(conf, *, client, db, quota, auth_protocol_factory=None) -> FastAPI:
    """The FastAPI application serving Cinder's v3 API subset (``docs/rest-api.md``).

    :param conf: config with the ``[api]`` group registered.
    :param client: :class:`blockmgr.api.Client`.
    :param db: :class:`blockmgr.db.session.Database`.
    :param quota: :class:`blockmgr.quota.QuotaEngine`.
    :param auth_protocol_factory: with ``[api] auth_strategy = keystone``, what builds the
        token-validating WSGI middleware (default keystonemiddleware's ``AuthProtocol``;
        tests pass one that needs no Keystone). See :func:`blockmgr.api.rest.auth.install`.
    :raises ConfigurationError: keystone without keystonemiddleware, or a bad
        ``[keystone_authtoken]`` section -- the API must not start unprotected.
    """
    app = FastAPI(title="blockmgr block storage API",
                  version=versions.fmt(versions.MAX_VERSION),
                  description="Cinder block storage v3 compatible API of blockmgr.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.rest = deps.RestState(conf=conf, client=client, db=db, quota=quota)
    errors.install(app)
    auth.install(app, conf, protocol_factory=auth_protocol_factory)   # noauth: nothing

    @app.middleware("http")
    async def _microversion_and_request_id(request: Request, call_next):
        refused = refused_request(request)
        if refused is not None:
            return refused
        try:
            version = versions.requested(request.headers.get(versions.HEADER))
        except errors.exception.BlockmgrError as exc:
            return errors.fault(exc.code, exc.msg)
        request.state.api_version = version
        response = await call_next(request)
        response.headers[versions.HEADER] = "%s %s" % (versions.SERVICE,
                                                         versions.fmt(version))
        response.headers["Vary"] = versions.HEADER
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            response.headers[deps.REQUEST_ID_HEADER] = request_id
        return response

    if conf.metrics.enabled:
        # Same port as the API: the process's request, flow and reservation metrics.
        from blockmgr import metrics

        app.router.routes.extend(metrics.api_routes())
        app.add_middleware(metrics.RequestMetricsMiddleware)   # outermost: counts every request
    from blockmgr import health

    health.install(app, conf, db)   # GET /healthcheck: database and broker, no auth
    app.include_router(versions.router)
    routers = list(_available_routers())
    # Project-less first: their first segment is a fixed collection name, so a URL such as
    # /v3/volumes/detail is never read as project "volumes". The OpenAPI document describes
    # the /v3/{project_id} form; the project-less one serves the same operations.
    for router in routers:
        app.include_router(router, prefix="/v3", include_in_schema=False)
    for router in routers:
        app.include_router(router, prefix="/v3/{project_id}",
                           dependencies=[Depends(deps.url_project)])
    return app
