"""Build the REST application from its collaborators.

``create_app`` is the one constructor: ``blockmgr-api`` calls it with a client on the
RabbitMQ transport, ``blockmgr serve`` with one on the in-process transport, tests with
whatever they need. Nothing here reads global state.
"""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI
from fastapi import Request

from blockmgr.api.rest import auth
from blockmgr.api.rest import deps
from blockmgr.api.rest import errors
from blockmgr.api.rest import versions

LOG = logging.getLogger(__name__)

#: Router modules mounted under ``/v3/{project_id}`` (each exposes ``router``), in order.
#: A module listed here that is not importable is a packaging error, not optional.
RESOURCE_ROUTERS = (
    "blockmgr.api.rest.volumes",
    "blockmgr.api.rest.volume_actions",
    "blockmgr.api.rest.snapshots",
    "blockmgr.api.rest.manage",
    "blockmgr.api.rest.groups",
    "blockmgr.api.rest.group_snapshots",
    "blockmgr.api.rest.quotas",
    "blockmgr.api.rest.limits",
    "blockmgr.api.rest.services",
)


def _available_routers():
    for name in RESOURCE_ROUTERS:
        try:
            yield importlib.import_module(name).router
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            LOG.debug("REST router %s not present", name)


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

        app.mount("/metrics", metrics.asgi_app())
    app.include_router(versions.router)
    for router in _available_routers():
        app.include_router(router, prefix="/v3/{project_id}")
    return app
