"""Arguments and steps shared by several commands: paging, ``--wait``, ``--ref``, the
"show the next page" hint, running a wait with the invocation's settings, finding a resource
by name or id, and deleting several resources in one command.

A command handler has the signature ``handler(client, out, args) -> int``: ``client`` is a
:class:`~blockmgr.cli.http.RestClient`, ``out`` an :class:`~blockmgr.cli.output.Output`,
``args`` the parsed namespace (global options included).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Callable

from blockmgr.cli import errors
from blockmgr.cli import wait as cli_wait

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
#: How many resources of one name a lookup lists when the name is ambiguous.
AMBIGUOUS_SHOWN = 10


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of resource as the API names it: ``label`` for messages (``group snapshot``),
    ``collection`` in URLs (``group_snapshots``), ``key`` of a body (``group_snapshot``)."""
    label: str
    collection: str
    key: str

    @property
    def plural(self) -> str:
        return self.label + "s"


VOLUME = Kind("volume", "volumes", "volume")
SNAPSHOT = Kind("snapshot", "snapshots", "snapshot")
GROUP = Kind("group", "groups", "group")
GROUP_SNAPSHOT = Kind("group snapshot", "group_snapshots", "group_snapshot")


def find(client, kind: Kind, ref: str) -> dict:
    """The resource of the project that ``ref`` names: by id first (a UUID), else by name
    (openstackclient's rule). Returns its full view.

    :raises ApiRequestFailed: (404, exit 1) neither an id nor a name of this project.
    :raises CliUsageError: (exit 2) several resources have that name; the message lists
        their ids, one of which must be given instead.
    """
    if not ref or not ref.strip():
        raise errors.CliUsageError(reason="an empty %s name or id" % kind.label)
    not_found = None
    if _UUID.match(ref):
        try:
            return client.get("%s/%s" % (kind.collection, ref))[kind.key]
        except errors.ApiRequestFailed as exc:
            if exc.status != 404:
                raise
            not_found = exc          # a name may look like a UUID too
    body = client.get(kind.collection + "/detail",
                      {"name": ref, "limit": AMBIGUOUS_SHOWN})
    matches = body.get(kind.collection) or []
    if len(matches) == 1:
        return client.get("%s/%s" % (kind.collection, matches[0]["id"]))[kind.key]
    if matches:
        more = " (and maybe more)" if len(matches) >= AMBIGUOUS_SHOWN else ""
        raise errors.CliUsageError(
            reason="%d %s are named %r%s: %s; give the id of the one you mean"
                   % (len(matches), kind.plural, ref, more,
                      ", ".join(m["id"] for m in matches)))
    raise errors.ApiRequestFailed(
        message="no %s has the id or the name %r in project %s"
                % (kind.label, ref, getattr(client, "project", "?")),
        status=404, fault="itemNotFound",
        request_id=not_found.request_id if not_found is not None else None)


def find_id(client, kind: Kind, ref: str | None) -> str | None:
    """The id of the resource ``ref`` names (see :func:`find`); None for None."""
    return None if ref is None else find(client, kind, ref)["id"]


def delete_each(client, out, args, kind: Kind, refs: list[str],
                send: Callable[[str], None], target: Callable[..., cli_wait.Target]) -> int:
    """Delete every resource ``refs`` names (names or ids), like openstackclient.

    Every name is resolved first: one that matches nothing (or several resources) stops the
    command before anything is deleted. Then each deletion is sent; one the API refuses is
    reported and the others go on. With ``--wait`` each accepted deletion is then followed
    until the resource is gone. A single resource fails as any command does (its error,
    its exit code); with several, each failure is reported on stderr and the exit code is
    the first failure's.
    """
    ids = list(dict.fromkeys(find_id(client, kind, ref) for ref in refs))
    if len(ids) == 1:
        send(ids[0])
        if args.wait:
            wait(client, out, args, target(ids[0], gone=True))
        else:
            out.note("Deletion of %s %s accepted." % (kind.label, ids[0]))
        return 0
    failures: list[errors.CliError] = []
    accepted = []
    for resource_id in ids:
        try:
            send(resource_id)
        except errors.ApiRequestFailed as exc:
            out.note("blockmgr: error: %s %s: %s" % (kind.label, resource_id, exc.describe()))
            failures.append(exc)
        else:
            accepted.append(resource_id)
    for resource_id in accepted:
        if not args.wait:
            out.note("Deletion of %s %s accepted." % (kind.label, resource_id))
            continue
        try:
            wait(client, out, args, target(resource_id, gone=True))
        except (errors.ResourceFailed, errors.WaitTimedOut, errors.ApiRequestFailed) as exc:
            out.note("blockmgr: error: %s" % (exc.describe() if isinstance(
                exc, errors.ApiRequestFailed) else exc.msg))
            failures.append(exc)
    if failures:
        out.note("blockmgr: %d of %d %s not deleted" % (len(failures), len(ids), kind.plural))
        return failures[0].exit_code
    return 0


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
