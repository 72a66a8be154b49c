"""Serve the REST application over HTTP with uvicorn, in a background thread.

``blockmgr serve``, ``blockmgr-api`` and the tests that drive a real HTTP server (for
python-cinderclient) share this one wrapper::

    server = ApiServer(app, "127.0.0.1", 8776)
    server.start()            # returns once the socket accepts connections
    ...                       # server.url == "http://127.0.0.1:8776"
    server.stop()

The listening socket is bound in :meth:`start` before the thread starts, so an address in
use fails there with ``OSError`` (not later in a thread nobody watches), and port ``0``
picks a free port (:attr:`port` tells which). uvicorn installs signal handlers only when
run in the main thread, so the caller keeps its own Ctrl-C handling.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

LOG = logging.getLogger(__name__)


class ApiServerError(RuntimeError):
    """The server did not start listening (the reason is in the message and the log)."""


class ApiServer:
    """:param app: an ASGI application (``create_app(...)``).
    :param host: address to listen on.
    :param port: TCP port; 0 picks a free one.
    :param log_level: uvicorn's own log level (access lines go to ``uvicorn.access``).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning", access_log: bool = False):
        self.app = app
        self.host = host
        self.port = port
        self._config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                      access_log=access_log, lifespan="off",
                                      log_config=None)
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 addresses in brackets), without a trailing slash."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> "ApiServer":
        """Bind, start serving in a daemon thread, return once it accepts connections.

        :raises OSError: the address cannot be bound (in use, not local, no permission).
        :raises ApiServerError: the server stopped or did not start within ``timeout``.
        """
        if self._thread is not None:
            raise ApiServerError("this server was already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(self._config.backlog)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="blockmgr-api-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise ApiServerError("the HTTP server on %s stopped while starting: %s"
                                     % (self.url, self._failure or "see the log"))
            if time.monotonic() > deadline:
                self.stop()
                raise ApiServerError("the HTTP server on %s did not start within %.0f s"
                                     % (self.url, timeout))
            time.sleep(0.01)
        LOG.info("REST API listening on %s", self.url)
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:   # SystemExit from uvicorn's start-up included
            self._failure = exc
            LOG.error("The HTTP server on %s failed: %s", self.url, exc)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop accepting, let requests in progress finish (up to ``timeout`` seconds), and
        close the socket. Idempotent. True when the server thread ended in time."""
        if self._thread is None:
            return True
        self._server.should_exit = True
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if not stopped:
            self._server.force_exit = True
            self._thread.join(1.0)
            stopped = not self._thread.is_alive()
        self._close_socket()
        return stopped

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (another thread called :meth:`stop`); True if it
        did within ``timeout``."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
