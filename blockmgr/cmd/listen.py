"""The listening address of a long-running command: checked first, errors a person can act on.

``blockmgr serve`` and ``blockmgr-api`` check that their address can be bound *before*
anything else starts (:func:`check_address`), so that a taken port ends the command at once
with a message saying what to do, instead of after the database was migrated and the workers
started. The HTTP server itself is :class:`blockmgr.api.rest.server.ApiServer`, started by
:func:`start_http` once the service behind it is ready; it binds again then (a port taken in
the milliseconds between the two is reported the same way).
"""

from __future__ import annotations

import errno
import socket

from blockmgr import exception

#: Seconds requests still running at stop get to finish before they are cancelled.
HTTP_SHUTDOWN_GRACE = 10.0

_BIND_ADVICE = {
    errno.EADDRINUSE: "another process already listens on that port (another blockmgr "
                      "serve or blockmgr-api?). Stop it, or pick another port with --port "
                      "or [api] bind_port",
    errno.EACCES: "ports below 1024 need root; pick a port of 1024 or more with --port or "
                  "[api] bind_port",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's; use 127.0.0.1, 0.0.0.0 "
                         "(all addresses) or one of this machine's addresses",
}


def check_address(host: str, port: int, service: str) -> None:
    """Bind ``host``:``port`` once and let it go again.

    :raises ServiceStartError: the address cannot be used; the message says why and what
        to do (port taken, privileged port, address not local, unknown host name).
    """
    bind_socket(host, port, service).close()


def bind_socket(host: str, port: int, service: str) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port); see :func:`check_address`
    for the errors."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise exception.ServiceStartError(
            service=service, reason="cannot listen on %r: the address does not resolve "
                                    "(%s)" % (host, exc.strerror)) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # SO_REUSEADDR lets a restart bind while the last run's connections are in
        # TIME_WAIT; it does not allow two listeners on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, host, port, service) from None
    return sock


def bind_error(exc: OSError, host: str, port: int, service: str) -> exception.ServiceStartError:
    advice = _BIND_ADVICE.get(exc.errno, "the operating system refused it")
    return exception.ServiceStartError(
        service=service, reason="cannot listen on %s: %s: %s" % (
            _hostport(host, port), exc.strerror or exc, advice))


def _hostport(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return "http://%s" % _hostport(host, port)


def start_http(app, host: str, port: int, service: str, *, access_log: bool = False):
    """Serve ``app`` on ``host``:``port`` in a background thread; returns the started
    :class:`~blockmgr.api.rest.server.ApiServer` (``.port`` is the real port when 0 was
    asked for). uvicorn's own messages go through the logging set up by the command.

    :raises ServiceStartError: the address cannot be bound, or the server did not start.
    """
    from blockmgr.api.rest import server

    http = server.ApiServer(app, host, port, log_level="info" if access_log else "warning",
                            access_log=access_log)
    try:
        return http.start()
    except OSError as exc:
        raise bind_error(exc, host, port, service) from None
    except server.ApiServerError as exc:
        raise exception.ServiceStartError(service=service, reason=str(exc)) from None
