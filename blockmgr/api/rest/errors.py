"""Errors as Cinder's fault bodies, with the HTTP status each error family carries.

Existing block storage clients (python-cinderclient, openstacksdk, gophercloud) read an error
as a one-key object whose key names the fault and whose value holds ``message`` and ``code``::

    {"itemNotFound": {"message": "Volume 42 could not be found.", "code": 404}}

Every :class:`~blockmgr.exception.BlockmgrError` carries its HTTP status in ``code``; body
validation failures become ``400 badRequest`` (FastAPI's default is 422, which Cinder clients
do not expect); an unexpected exception is logged with its traceback and answered with a
generic ``500 computeFault`` that leaks no internals.

Transient failures -- the database unreachable, a deadlock that outlived its retries, a
volume worker that did not answer a call in time -- are ``503 serviceUnavailable`` with
``Retry-After``: the request can simply be sent again. No exception ever leaves the
application (:class:`CatchAll`), so the HTTP server never has to drop a keep-alive
connection after an error.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import oslo_messaging
from oslo_db import exception as db_exc

from blockmgr import exception

LOG = logging.getLogger(__name__)

#: Cinder's fault names by HTTP status.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    406: "notAcceptable",
    415: "badMediaType",
    500: "computeFault",
    501: "notImplemented",
    503: "serviceUnavailable",
}


class Forbidden(exception.BlockmgrError):
    """The caller may not do this (another project's URL, an admin-only call)."""
    msg_fmt = "Policy does not allow %(action)s."
    code = 403


class NotAuthenticated(exception.BlockmgrError):
    msg_fmt = "Authentication required: %(reason)s"
    code = 401


#: Seconds a client should wait before retrying after a transient database failure.
RETRY_AFTER_S = 5
#: Database errors that go away by themselves: the request may be retried as it is.
TRANSIENT_DB_ERRORS = (db_exc.DBConnectionError, db_exc.DBDeadlock)
#: A worker that did not answer a call in time, or a broker that could not deliver it.
TRANSIENT_RPC_ERRORS = (oslo_messaging.MessagingTimeout,
                        oslo_messaging.MessageDeliveryFailure)


def fault(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """A response with Cinder's fault body for ``status``."""
    name = FAULT_NAMES.get(status, "computeFault" if status >= 500 else "badRequest")
    return JSONResponse(status_code=status, headers=headers,
                        content={name: {"message": message, "code": status}})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = err.get("msg", "is invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not accepted here)"
        parts.append("%s: %s" % (where or "body", msg))
    return "Invalid input: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a fault body."""

    @app.exception_handler(exception.BlockmgrError)
    async def _blockmgr_error(request: Request, exc: exception.BlockmgrError):
        status = exc.code if 400 <= exc.code < 600 else 500
        if status >= 500 and status != 503:
            LOG.error("%s %s failed: %s", request.method, request.url.path, exc)
        return fault(status, exc.msg)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError):
        return fault(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "No such resource: %s" % request.url.path
        return fault(exc.status_code, message, getattr(exc, "headers", None))

    for transient in TRANSIENT_DB_ERRORS:
        app.add_exception_handler(transient, _database_unavailable)
    for transient in TRANSIENT_RPC_ERRORS:
        app.add_exception_handler(transient, _backend_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return unexpected_fault(request.method, request.url.path, exc)

    app.add_middleware(CatchAll)


async def _database_unavailable(request: Request, exc: Exception):
    return database_fault(request.method, request.url.path, exc)


async def _backend_unavailable(request: Request, exc: Exception):
    return backend_fault(request.method, request.url.path, exc)


def backend_fault(method: str, path: str, exc: Exception) -> JSONResponse:
    """``503`` + ``Retry-After``: the worker behind the call did not answer in time."""
    LOG.warning("%s %s: no answer from the backend's worker: %s: %s", method, path,
                type(exc).__name__, exc)
    return fault(503, "The volume service did not answer in time (%s); retry in %d seconds, "
                      "and check the service list if it persists."
                      % (type(exc).__name__, RETRY_AFTER_S),
                 headers={"Retry-After": str(RETRY_AFTER_S)})


def database_fault(method: str, path: str, exc: Exception) -> JSONResponse:
    """``503`` + ``Retry-After`` for a transient database failure."""
    LOG.warning("%s %s: the database is unavailable: %s: %s", method, path,
                type(exc).__name__, exc)
    return fault(503, "The database is temporarily unavailable (%s); retry in %d seconds."
                      % (type(exc).__name__, RETRY_AFTER_S),
                 headers={"Retry-After": str(RETRY_AFTER_S)})


def unexpected_fault(method: str, path: str, exc: Exception) -> JSONResponse:
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return database_fault(method, path, exc)
    if isinstance(exc, TRANSIENT_RPC_ERRORS):
        return backend_fault(method, path, exc)
    LOG.error("Unexpected error in %s %s", method, path, exc_info=exc)
    return fault(500, "The server could not complete the request (%s); the request id "
                      "is in the server's log." % type(exc).__name__)


class CatchAll:
    """ASGI middleware answering any exception a route raised with a fault body.

    Starlette's own last-resort handler sends the ``500`` and then re-raises, and the HTTP
    server closes the connection under a client that was told nothing (no ``Connection:
    close``), so the client's next request on it fails. Here the exception ends with the
    response. An exception after the response started cannot be answered any more: the
    connection is then closed, and the client sees a truncated response.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = unexpected_fault(scope.get("method", "?"), scope.get("path", "?"), exc)
            await response(scope, receive, send)
