"""``blockmgr``: the user command line (and ``blockmgr serve``, the all-in-one server).

Every command except ``serve`` is a client of the REST API (:mod:`blockmgr.cli`); ``serve``
is handed to :mod:`blockmgr.cmd.serve` untouched, so ``blockmgr serve --help`` is the
server's own help. Global options may be given before or after the command
(``blockmgr --format json volume list`` and ``blockmgr volume list --format json`` are the
same); each has an environment variable so a shell can set it once.

:func:`main` returns the exit code (it does not call ``sys.exit``): 0 ok, 1 API error, 2 usage
error, 3 server unreachable, 4 ``--wait`` timed out (:mod:`blockmgr.cli.errors`), 130
interrupted, 141 the reader of stdout went away (``blockmgr ... | head``: the rest of the
output is dropped quietly, as the shell reports a tool killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from blockmgr.cli import errors
from blockmgr.cli import output

DEFAULT_URL = "http://127.0.0.1:8776"
DEFAULT_PROJECT = "default"
DEFAULT_TIMEOUT = 30.0
DEFAULT_WAIT_TIMEOUT = 600.0
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141      # 128 + SIGPIPE, what a shell reports for `cat big | head`

FAMILY_MODULES = ("volumes", "snapshots", "attachments", "groups", "manageable", "types")

EPILOG = """\
exit codes: 0 ok, 1 the API refused the request, a name or id matches nothing, or a --wait
ended in an error, 2 usage error (also: a name that several resources have), 3 the server
could not be reached, 4 --wait timed out, 130 interrupted, 141 stdout was closed early.
Run `blockmgr COMMAND ACTION --help` for the options of one command; docs/cli.md has more."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise errors.CliUsageError(reason="%s must be a number of seconds, not %r"
                                          % (name, raw)) from None


def _default_user() -> str | None:
    try:
        return os.environ.get("BLOCKMGR_USER") or getpass.getuser()
    except (KeyError, OSError):     # no passwd entry (some containers)
        return None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds, not %s" % text)
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes. On the sub-commands (``suppress``) they default to
    "not given", so a value given before the command is not overwritten."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument("--url", default=default(os.environ.get("BLOCKMGR_URL", DEFAULT_URL)),
                       help="the API's root URL (env BLOCKMGR_URL; default %s)" % DEFAULT_URL)
    group.add_argument("--project",
                       default=default(os.environ.get("BLOCKMGR_PROJECT", DEFAULT_PROJECT)),
                       help="project whose resources to use (env BLOCKMGR_PROJECT; default "
                            "%r)" % DEFAULT_PROJECT)
    group.add_argument("--user", default=default(_default_user()),
                       help="user id sent to the API (env BLOCKMGR_USER; default: your login "
                            "name)")
    group.add_argument("--admin", action="store_true", default=default(False),
                       help="act with the admin role (other projects, --all-projects)")
    group.add_argument("-f", "--format", choices=output.FORMATS, default=default("table"),
                       help="output: a table for people (default), json or yaml (full "
                            "objects), value (bare values) or csv, for scripts")
    group.add_argument("-c", "--column", action="append", dest="columns", metavar="COLUMN",
                       default=default([]),
                       help="show only this column (a table header or a field name); may "
                            "be repeated")
    group.add_argument("--timeout", type=_seconds,
                       default=default(_env_float("BLOCKMGR_TIMEOUT", DEFAULT_TIMEOUT)),
                       metavar="SECONDS",
                       help="give up on one HTTP request after this long (env "
                            "BLOCKMGR_TIMEOUT; default %g)" % DEFAULT_TIMEOUT)
    group.add_argument("--wait-timeout", type=_seconds,
                       default=default(_env_float("BLOCKMGR_WAIT_TIMEOUT",
                                                  DEFAULT_WAIT_TIMEOUT)),
                       metavar="SECONDS",
                       help="how long --wait waits before exiting with code 4 (env "
                            "BLOCKMGR_WAIT_TIMEOUT; default %g)" % DEFAULT_WAIT_TIMEOUT)


def _leaves(parser: argparse.ArgumentParser):
    """Every parser that runs a command (has a handler), depth first."""
    for action in parser._actions:        # argparse offers no public walk of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _leaves(child)
    if parser.get_default("handler") is not None:
        yield parser


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from blockmgr import cmd
    from blockmgr.cli import groups

    parser = argparse.ArgumentParser(
        prog="blockmgr", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Manage block storage volumes through the blockmgr REST API; "
                    "`blockmgr serve` runs the all-in-one server.")
    _add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=cmd.version_string("blockmgr"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", add_help=False,
                           help="run the all-in-one server (see `blockmgr serve --help`)")
    serve.add_argument("serve_args", nargs=argparse.REMAINDER)
    for name in FAMILY_MODULES:
        importlib.import_module("blockmgr.cli." + name).add_parser(sub)
    groups.add_group_snapshot_parser(sub)
    for leaf in _leaves(parser):
        _add_global_options(leaf, suppress=True)
    return parser


def run_serve(argv: list[str]) -> int:
    """``blockmgr serve ...``: the server's own command line."""
    try:
        from blockmgr.cmd import serve
    except ModuleNotFoundError as exc:
        if exc.name != "blockmgr.cmd.serve":
            raise
        print("blockmgr: error: `blockmgr serve` is not part of this installation",
              file=sys.stderr)
        return errors.EXIT_USAGE
    try:
        return serve.main(argv) or 0
    except SystemExit as exc:           # its argparse: --help or a usage error
        return exc.code if isinstance(exc.code, int) else errors.EXIT_USAGE


def main(argv: list[str] | None = None, *, stdout=None, stderr=None) -> int:
    """Run one ``blockmgr`` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return run_serve(argv[1:])
    stderr = stderr or sys.stderr
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except errors.CliUsageError as exc:
        print("blockmgr: error: %s" % exc.msg, file=stderr)
        return exc.exit_code
    except SystemExit as exc:           # --help (0) or a usage error (2) from argparse
        return exc.code if isinstance(exc.code, int) else errors.EXIT_USAGE
    if args.command == "serve":
        return run_serve(args.serve_args)
    out = output.Output(args.format, stdout=stdout, stderr=stderr, columns=args.columns)
    try:
        return _run(args, out)
    except BrokenPipeError:
        # The reader of stdout went away (`blockmgr ... | head`): nothing more to say.
        _drop_stdout(out.stdout)
        return EXIT_BROKEN_PIPE


def _drop_stdout(stream) -> None:
    """Point the process's stdout at /dev/null when ``stream`` is it, so the interpreter's
    final flush does not raise BrokenPipeError again (and print a traceback)."""
    if stream is not sys.stdout:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _run(args, out: output.Output) -> int:
    from blockmgr.cli import http

    try:
        with http.RestClient(args.url, args.project, user=args.user, admin=args.admin,
                             timeout=args.timeout) as client:
            return args.handler(client, out, args)
    except errors.ApiRequestFailed as exc:
        out.note("blockmgr: error: %s" % exc.describe())
        return exc.exit_code
    except errors.CliError as exc:
        out.note("blockmgr: error: %s" % exc.msg)
        return exc.exit_code
    except KeyboardInterrupt:
        out.note("blockmgr: interrupted; an operation already accepted goes on on the server")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
