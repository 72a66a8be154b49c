"""Who is calling: the ``[api] auth_strategy`` in front of the REST application.

``noauth`` (the default) needs nothing here: :mod:`blockmgr.api.rest.deps` trusts the
``X-User-Id`` / ``X-Project-Id`` / ``X-Roles`` headers, which is right on one machine or a
trusted network only.

``keystone`` puts keystonemiddleware's ``auth_token`` in front of every request: it validates
the ``X-Auth-Token`` with Keystone (options in ``[keystone_authtoken]`` of the same config
file), strips any identity header the caller sent, and sets ``X-Identity-Status``,
``X-User-Id``, ``X-Project-Id`` and ``X-Roles`` from the token. ``auth_token`` is a WSGI
middleware and our application is ASGI; it only reads and rewrites request *headers*, so
:class:`KeystoneAuthMiddleware` hands it a header-only WSGI environ in a worker thread (it
may call Keystone or memcached, which block) and forwards the request with the headers it
left, body untouched, to the application. A request it rejects gets its status (``401``
with ``WWW-Authenticate``, or ``503`` when Keystone is unreachable) as a Cinder fault body.
Version discovery, the OpenAPI document and ``/healthcheck`` stay public, as in Cinder.

keystonemiddleware is an optional dependency (``pip install keystonemiddleware``); choosing
``keystone`` without it stops the service at start with a
:class:`~blockmgr.exception.ConfigurationError` saying so.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Callable

from starlette.concurrency import run_in_threadpool

from blockmgr import exception
from blockmgr.api.rest import errors

LOG = logging.getLogger(__name__)

#: Paths served without a token (version discovery, API description, health check).
PUBLIC_PATHS = frozenset({"/", "/v3", "/v3/", "/openapi.json", "/docs",
                          "/docs/oauth2-redirect", "/healthcheck"})
_MARK = "blockmgr.auth.result"


def install(app, conf, *, protocol_factory: Callable | None = None) -> None:
    """Put the configured auth strategy in front of ``app`` (a FastAPI application).

    :param protocol_factory: ``factory(wsgi_app, conf) -> wsgi_app``; default
        keystonemiddleware's ``AuthProtocol`` reading ``[keystone_authtoken]`` of ``conf``.
        Tests pass a subclass whose token lookup needs no Keystone.
    :raises ConfigurationError: ``keystone`` without keystonemiddleware, or a
        ``[keystone_authtoken]`` section it cannot start with.
    """
    if conf.api.auth_strategy != "keystone":
        return
    factory = protocol_factory or _auth_protocol_factory()
    try:
        protocol = factory(_reached_app, conf)
    except Exception as exc:
        raise exception.ConfigurationError(
            section="keystone_authtoken", option="*",
            reason="keystonemiddleware's auth_token could not start: %s: %s"
                   % (type(exc).__name__, exc)) from exc
    app.add_middleware(KeystoneAuthMiddleware, protocol=protocol)


def _auth_protocol_factory() -> Callable:
    try:
        from keystonemiddleware import auth_token
    except ImportError as exc:
        raise exception.ConfigurationError(
            section="api", option="auth_strategy",
            reason="'keystone' needs the keystonemiddleware package, which is not "
                   "installed (%s); install it with 'pip install keystonemiddleware' or "
                   "use auth_strategy = noauth on a trusted network" % exc) from exc
    return lambda wsgi_app, conf: auth_token.AuthProtocol(
        wsgi_app, {"oslo_config_config": conf})


def _reached_app(environ, start_response):
    """The WSGI 'application' behind auth_token: records that the request got through."""
    environ[_MARK]["environ"] = environ
    start_response("204 No Content", [])
    return []


class KeystoneAuthMiddleware:
    """ASGI middleware running a WSGI auth_token ``protocol`` on the request headers.

    :param protocol: a WSGI middleware built around :func:`_reached_app` (see
        :func:`install`).
    """

    def __init__(self, app, protocol):
        self.app = app
        self.protocol = protocol

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        environ = _environ(scope)
        before = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        try:
            outcome = await run_in_threadpool(self._authenticate, environ)
        except Exception:
            LOG.exception("Token validation failed unexpectedly")
            response = errors.fault(503, "The identity service could not check the token; "
                                         "try again later.")
            await response(scope, receive, send)
            return
        if isinstance(outcome, dict):
            scope = dict(scope, headers=_rewritten(scope["headers"], before, outcome))
            await self.app(scope, receive, send)
            return
        await outcome(scope, receive, send)

    def _authenticate(self, environ: dict):
        """Run auth_token; the environ it passed on (dict), or the fault response it
        answered with instead."""
        environ[_MARK] = {}
        captured: dict = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.protocol(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        passed = environ[_MARK].get("environ")
        if passed is not None:
            return passed
        return _fault(captured.get("status", "401 Unauthorized"),
                      captured.get("headers") or [], body)


def _fault(status_line: str, headers: list, body: bytes):
    try:
        status = int(status_line.split()[0])
    except (ValueError, IndexError):
        status = 401
    message = "The request you have made requires authentication."
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        pass
    if status == 401:
        message = "Authentication required: %s" % message
    keep = {k: v for k, v in headers if k.lower() == "www-authenticate"}
    return errors.fault(status, message, headers=keep or None)


def _environ(scope) -> dict:
    """A WSGI environ with the request line and headers of an ASGI ``scope``; no body
    (auth_token never reads one)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": "HTTP/%s" % scope.get("http_version", "1.1"),
        "REMOTE_ADDR": str(client[0]), "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ


def _rewritten(headers: list, before: dict, after: dict) -> list:
    """The ASGI headers once auth_token is done: the ones it removed are gone, the ones it
    changed or added carry its value, the rest are the caller's, untouched."""
    out, replaced = [], set()
    for raw_name, raw_value in headers:
        key = "HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            out.append((raw_name, raw_value))
        elif key not in after:
            continue
        elif after[key] == before.get(key):
            out.append((raw_name, raw_value))
        elif key not in replaced:
            replaced.add(key)
            out.append((raw_name, _latin1(after[key])))
    for key, value in after.items():
        if key.startswith("HTTP_") and key not in before and isinstance(value, str):
            name = key[5:].replace("_", "-").lower()
            out.append((name.encode("latin-1"), _latin1(value)))
    return out


def _latin1(value: str) -> bytes:
    """Header bytes of a WSGI value (latin-1 by the WSGI rule; UTF-8 for a value that
    is not, e.g. a user name auth_token set as a Unicode string)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")
