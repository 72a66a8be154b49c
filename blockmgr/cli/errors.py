"""Errors of the user CLI, each carrying the exit code the process ends with.

Exit codes are part of the CLI's contract (scripts test them, ``docs/cli.md`` lists them):

====  ==========================================================================
 0    success
 1    the API refused or failed the request, or a ``--wait`` ended in an error
 2    usage error (bad option, bad value); argparse uses 2 as well
 3    the server could not be reached or did not answer
 4    ``--wait`` gave up before the resource settled (it may still settle later)
====  ==========================================================================
"""

from __future__ import annotations

from blockmgr import exception

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_WAIT_TIMEOUT = 4


class CliError(exception.BlockmgrError):
    """Root of the CLI's errors; ``exit_code`` is what ``blockmgr`` exits with."""
    msg_fmt = "%(reason)s"
    exit_code = EXIT_API_ERROR


class CliUsageError(CliError):
    """The command line asks for something impossible (detected after parsing)."""
    msg_fmt = "%(reason)s"
    code = 400
    exit_code = EXIT_USAGE


class ApiRequestFailed(CliError):
    """The API answered with an error. Keyword arguments: ``message`` (the server's own),
    ``status`` (HTTP), ``fault`` (Cinder's fault name, e.g. ``itemNotFound``) and
    ``request_id`` (the server's ``X-OpenStack-Request-Id``, to find the call in its log)."""
    msg_fmt = "%(message)s"
    exit_code = EXIT_API_ERROR

    @property
    def status(self) -> int:
        try:
            return int(self.kwargs.get("status", 500))
        except (TypeError, ValueError):
            return 500

    @property
    def code(self) -> int:          # the HTTP status the server answered
        return self.status

    @property
    def fault(self) -> str:
        return str(self.kwargs.get("fault") or "error")

    @property
    def request_id(self) -> str | None:
        return self.kwargs.get("request_id")

    def describe(self) -> str:
        """The message with the HTTP status and fault name, for the terminal."""
        detail = "HTTP %d %s" % (self.status, self.fault)
        if self.request_id:
            detail += ", request %s" % self.request_id
        return "%s (%s)" % (self.msg, detail)


class ServerUnreachable(CliError):
    """No answer from the API: nothing listens at the URL, or it did not reply in time."""
    msg_fmt = ("cannot reach the blockmgr API at %(url)s: %(reason)s. Is `blockmgr serve` "
               "(or blockmgr-api) running there? Set --url or BLOCKMGR_URL to point "
               "elsewhere.")
    code = 503
    exit_code = EXIT_UNREACHABLE


class ResourceFailed(CliError):
    """A ``--wait`` ended with the resource in an error status (or not where it was going)."""
    msg_fmt = "%(kind)s %(id)s is %(status)s: %(reason)s"
    exit_code = EXIT_API_ERROR


class WaitTimedOut(CliError):
    """A ``--wait`` gave up; the operation may still finish on the server."""
    msg_fmt = ("%(kind)s %(id)s is still %(status)s after %(timeout)s s; it may still settle, "
               "check with `blockmgr %(command)s show %(id)s` (raise --wait-timeout to wait "
               "longer)")
    code = 408
    exit_code = EXIT_WAIT_TIMEOUT
