"""A small REST client for the blockmgr API (Cinder's block storage v3 shapes).

It speaks as one user of one project in ``noauth`` mode: ``X-User-Id`` / ``X-Project-Id``
headers plus ``X-Roles`` (``admin`` for ``--admin``, else ``member``), and asks for microversion
:data:`API_VERSION`, where groups and group snapshots exist. Every failure surfaces as one of
:mod:`blockmgr.cli.errors`: a Cinder fault body (``{"itemNotFound": {"message", "code"}}``)
becomes :class:`~blockmgr.cli.errors.ApiRequestFailed` with the server's message; a refused
connection, an unknown host or a server that does not answer in time becomes
:class:`~blockmgr.cli.errors.ServerUnreachable`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from blockmgr.cli import errors

API_VERSION = "3.14"
VERSION_HEADER = "OpenStack-API-Version"
#: ``X-Roles`` with and without ``--admin``.
ADMIN_ROLE = "admin"
MEMBER_ROLE = "member"
REQUEST_ID_HEADER = "X-OpenStack-Request-Id"


class RestClient:
    """Calls ``<url>/v3/<project>/<path>``; returns the decoded JSON body (``None`` if empty).

    :param url: the API's root, e.g. ``http://127.0.0.1:8776`` (a trailing ``/v3`` is
        accepted and dropped).
    :param project: the project the resources belong to (the URL's ``{project_id}``).
    :param user: sent as ``X-User-Id``; the server records it as the resources' owner.
    :param admin: send ``X-Roles: admin`` (other projects, admin-only calls); otherwise
        ``X-Roles: member``: a noauth server treats a caller that states no roles as an
        admin, and the CLI acts as one only when asked to.
    :param timeout: seconds to wait for each request (connect and read).
    :param transport: an ``httpx`` transport, for callers that serve the app in-process.
    """

    def __init__(self, url: str, project: str, *, user: str | None = None,
                 admin: bool = False, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        root = url.rstrip("/")
        if root.endswith("/v3"):
            root = root[:-3]
        if not root.startswith(("http://", "https://")):
            raise errors.CliUsageError(reason="--url must start with http:// or https://, "
                                              "not %r" % url)
        self.url = root
        self.project = project
        headers = {"X-Project-Id": project, VERSION_HEADER: "volume " + API_VERSION,
                   "Accept": "application/json"}
        if user:
            headers["X-User-Id"] = user
        headers["X-Roles"] = ADMIN_ROLE if admin else MEMBER_ROLE
        # Certificates are loaded only for https: loading the CA bundle costs ~50 ms of CPU
        # per command, and a plain-http client never uses it (redirects are not followed,
        # so it cannot end up on an https URL).
        self._http = httpx.Client(base_url="%s/v3/%s/" % (root, quote(project, safe="")),
                                  headers=headers, timeout=timeout, transport=transport,
                                  verify=root.startswith("https://"))
        self._timeout = timeout

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- verbs ------------------------------------------------------------------------------

    def get(self, path: str, params: dict | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, params: dict | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict | None = None, version: str | None = None) -> Any:
        """One call; ``path`` is relative to ``/v3/<project>/``; ``version``: another
        microversion than :data:`API_VERSION` for this call (attachments need 3.27+).

        :raises ApiRequestFailed: the server answered 4xx/5xx.
        :raises ServerUnreachable: no connection, or no answer within the timeout.
        """
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path.lstrip("/"), params=params or None, json=body,
                headers={VERSION_HEADER: "volume " + version} if version else None)
        except httpx.TimeoutException:
            raise errors.ServerUnreachable(
                url=self.url, reason="no answer within %g s (--timeout)" % self._timeout
            ) from None
        except httpx.TransportError as exc:
            raise errors.ServerUnreachable(url=self.url, reason=_transport_reason(exc)) \
                from None
        if response.status_code >= 400:
            raise fault_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.ApiRequestFailed(
                status=response.status_code, fault="badResponse",
                message="the server at %s answered %s %s with something that is not JSON; is "
                        "it a blockmgr API?" % (self.url, method, response.request.url.path),
                request_id=response.headers.get(REQUEST_ID_HEADER)) from None


def fault_error(response: httpx.Response) -> errors.ApiRequestFailed:
    """The error a 4xx/5xx response stands for, with the server's own message.

    Cinder's fault body is one key (the fault's name) holding ``message`` and ``code``; a body
    of any other shape still yields an error naming the status and the start of the body.
    """
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and len(body) == 1:
        (fault, detail), = body.items()
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            return errors.ApiRequestFailed(status=status, fault=fault,
                                           message=detail["message"], request_id=request_id)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
    elif body is not None:
        message = json.dumps(body)[:300]
    else:
        message = response.text.strip()[:300] or response.reason_phrase or "no message"
    return errors.ApiRequestFailed(status=status, fault=response.reason_phrase or "error",
                                   message=message, request_id=request_id)


def _transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        if "refused" in text.lower():
            return "connection refused"
        if "name or service not known" in text.lower() or "nodename" in text.lower():
            return "unknown host (%s)" % text
        return "cannot connect (%s)" % text
    return "%s (%s)" % (type(exc).__name__, text)
