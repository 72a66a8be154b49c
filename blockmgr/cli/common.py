"""Arguments and steps shared by several commands: paging, ``--wait``, ``--ref``, the
"show the next page" hint, and running a wait with the invocation's settings.

A command handler has the signature ``handler(client, out, args) -> int``: ``client`` is a
:class:`~blockmgr.cli.http.RestClient`, ``out`` an :class:`~blockmgr.cli.output.Output`,
``args`` the parsed namespace (global options included).
"""

from __future__ import annotations

import argparse

from blockmgr.cli import errors
from blockmgr.cli import wait as cli_wait


def add_paging(parser: argparse.ArgumentParser, *, all_projects: bool = True) -> None:
    if all_projects:
        parser.add_argument("--all-projects", action="store_true",
                            help="list every project's resources (needs --admin)")
    parser.add_argument("--limit", type=non_negative_int, metavar="N",
                        help="at most N items (the server caps it at its [api] max_limit)")
    parser.add_argument("--marker", metavar="ID",
                        help="start after the item with this id (from the previous page)")
    parser.add_argument("--sort", metavar="KEY[:asc|desc][,...]",
                        help="sort keys and directions, e.g. created_at:desc,name:asc")


def paging_params(args) -> dict:
    params = {"limit": args.limit, "marker": args.marker, "sort": args.sort}
    if getattr(args, "all_projects", False):
        params["all_tenants"] = 1
    return params


def note_next_page(out, body: dict, collection: str) -> None:
    """Tell the user how to get the next page when the server says there is one."""
    for link in body.get("%s_links" % collection) or []:
        if link.get("rel") == "next":
            items = body.get(collection) or []
            if items:
                out.note("More %s: repeat with --marker %s" % (collection.replace("_", " "),
                                                                items[-1]["id"]))


def add_wait(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="wait until %s, showing progress on stderr; exit 1 if it ends in "
                             "an error status, 4 after --wait-timeout seconds" % what)


def wait(client, out, args, target: cli_wait.Target) -> dict | None:
    """Run a ``--wait`` with the invocation's ``--wait-timeout``."""
    return cli_wait.wait_for(client, target, timeout=args.wait_timeout, note=out.note)


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1, not %s" % text)
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be a whole number of at least 0, not %s" % text)
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may contain ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE (e.g. source-name=vol1), not %r"
                                         % text)
    return key.strip(), value


def ref_dict(pairs: list[tuple[str, str]] | None) -> dict:
    """The backend reference of a manage call from repeated ``--ref KEY=VALUE``."""
    ref = {}
    for key, value in pairs or []:
        if key in ref:
            raise errors.CliUsageError(reason="--ref %s given twice" % key)
        ref[key] = value
    return ref


def drop_none(values: dict) -> dict:
    """A request body without the options the user did not give (the server's defaults
    apply to them)."""
    return {k: v for k, v in values.items() if v is not None}
