"""``blockmgr-manage volume|snapshot|group list``, ``volume|snapshot reset-state`` and
``flow list|show``: what exists, what is in flight, and the operator's way back.

``volume|snapshot reset-state --state S [--attach-status A] ID`` writes the status an
operator names (as ``os-reset_status`` does: statuses no flow owns, from any status), ends
the resource's open requests as failed and rolls back what they reserved, and logs it
(:mod:`blockmgr.api.admin_actions`). Exit status 0, or 2 with the reason.

``flow list`` shows unfinished flows (``--all``: retained finished ones too) with the task
each is in: a task ``RUNNING`` or ``REVERTING`` in the logbook is the one a crash
interrupted or that is running now, and the one recovery resumes or reverts first.
``flow show FLOW_ID`` prints every task of one flow with its state and, for failures, the
error. Exit status 0; ``flow show`` of an unknown id exits 2.
"""

from __future__ import annotations

import contextlib
import json
import sys

from taskflow import exceptions as tf_exc
from taskflow import states as tf_states

from blockmgr import exception
from blockmgr import states
from blockmgr.cmd import manage
from blockmgr.cmd.manage_service import format_table
from blockmgr.db import models
from blockmgr.db import repository

_ACTIVE_TASK_STATES = (tf_states.RUNNING, tf_states.REVERTING)

_RESOURCES = {
    "volume": (models.Volume, ("ID", "STATUS", "SIZE", "HOST", "PROJECT", "NAME"),
               lambda r: (r.id, r.status, r.size, r.host or "-", r.project_id or "-",
                          r.display_name or "")),
    "snapshot": (models.Snapshot, ("ID", "STATUS", "SIZE", "VOLUME", "PROJECT", "NAME"),
                 lambda r: (r.id, r.status, r.volume_size, r.volume_id, r.project_id or "-",
                            r.display_name or "")),
    "group": (models.Group, ("ID", "STATUS", "HOST", "PROJECT", "NAME"),
              lambda r: (r.id, r.status, r.host or "-", r.project_id or "-", r.name or "")),
}


def add_parser(subparsers) -> None:
    for kind, (_model, _header, _row) in _RESOURCES.items():
        parser = subparsers.add_parser(kind, help="list %ss" % kind)
        sub = parser.add_subparsers(dest="%s_command" % kind, required=True,
                                    metavar="SUBCOMMAND")
        listing = sub.add_parser("list", help="live %ss, ordered by id" % kind)
        listing.add_argument("--project-id", help="only this project")
        listing.add_argument("--status", help="only this status")
        if kind != "snapshot":
            listing.add_argument("--host", help="only this host@backend (any pool)")
        listing.add_argument("--format", choices=("table", "json"), default="table")
        listing.set_defaults(handler=list_resources, kind=kind, needs_backends=True)
        if kind in ("volume", "snapshot"):
            reset = sub.add_parser(
                "reset-state", help="reset a %s's status (clears its open requests and "
                                    "their reservations)" % kind)
            reset.add_argument("--state", required=True,
                               help="the status to write (%s)"
                               % ", ".join(sorted(states.RESETTABLE[kind])))
            if kind == "volume":
                reset.add_argument("--attach-status", dest="attach_status",
                                   choices=sorted(states.VOLUME_ATTACH_STATUSES),
                                   help="also the volume's attach status; 'detached' "
                                        "removes its attachment rows")
            reset.add_argument("id", help="the %s id" % kind)
            reset.set_defaults(handler=reset_state, kind=kind, needs_backends=True)
        parser.set_defaults(needs_backends=True)

    parser = subparsers.add_parser("flow", help="inspect persisted flows")
    sub = parser.add_subparsers(dest="flow_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="unfinished flows and the task each is in")
    listing.add_argument("--host", help="only flows of this host@backend")
    listing.add_argument("--all", action="store_true",
                         help="also finished flows still kept (finished_flow_retention)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=list_flows, needs_backends=True)
    show = sub.add_parser("show", help="every task of one flow")
    show.add_argument("flow_id")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(handler=show_flow, needs_backends=True)
    parser.set_defaults(needs_backends=True)


def list_resources(conf, args, out=None) -> int:
    out = out or sys.stdout
    model, header, to_row = _RESOURCES[args.kind]
    filters = {"status": args.status} if args.status else {}
    with manage.open_database(conf) as db, db.reader() as session:
        rows = repository.list_for_project(session, model, args.project_id, filters=filters)
        host = getattr(args, "host", None)
        if host:
            rows = [r for r in rows if (r.host or "").partition("#")[0] == host
                    or r.host == host]
        table = [to_row(r) for r in rows]
    if args.format == "json":
        keys = [h.lower() for h in header]
        out.write(json.dumps([dict(zip(keys, row)) for row in table], indent=2) + "\n")
    else:
        out.write(format_table(header, table))
    return 0


def reset_state(conf, args, out=None) -> int:
    from blockmgr import quota as bm_quota
    from blockmgr.api import admin_actions

    out = out or sys.stdout
    attach_status = getattr(args, "attach_status", None)
    with manage.open_database(conf) as db:
        quota = bm_quota.QuotaEngine(db, conf)
        try:
            result = quota.run_in_transaction(lambda session: admin_actions.reset_in(
                session, quota, args.kind, args.id, args.state, attach_status=attach_status,
                actor="blockmgr-manage"))
        except (exception.NotFound, exception.Invalid) as exc:
            sys.stderr.write("%s\n" % exc.msg)
            return 2
    out.write("%s %s: %s -> %s%s; requests failed: %s; reservations rolled back: %d%s\n" % (
        args.kind, args.id, result["previous"], result["status"],
        " (attach status %s)" % attach_status if attach_status else "",
        ", ".join(result["requests"]) or "none", result["reservations"],
        "; attachments removed: %s" % ", ".join(result["attachments_removed"])
        if result["attachments_removed"] else ""))
    return 0


# --- flows ------------------------------------------------------------------------------

@contextlib.contextmanager
def _persistence(conf):
    from blockmgr.flows import engine

    with manage.open_database(conf) as db:
        backend = engine.open_persistence(conf, db)
        try:
            yield backend
        finally:
            backend.close()


def _flow_summary(fd) -> dict:
    meta = fd.meta or {}
    active = [ad for ad in fd if ad.state in _ACTIVE_TASK_STATES]
    done = [ad.name for ad in fd if ad.state == tf_states.SUCCESS]
    if active:
        task = ", ".join("%s (%s)" % (ad.name, ad.state) for ad in active)
    elif fd.state in (tf_states.SUCCESS, tf_states.REVERTED, tf_states.FAILURE):
        task = "-"
    else:
        task = "between tasks (%d done)" % len(done)
    return {"id": fd.uuid, "host": meta.get("host"), "action": meta.get("action") or fd.name,
            "kind": meta.get("kind"), "resource_id": meta.get("resource_id"),
            "state": fd.state or "PENDING", "task": task}


def _all_flows(backend, include_finished: bool):
    unfinished = backend.unfinished_flow_uuids()
    with contextlib.closing(backend.get_connection()) as conn:
        for book in conn.get_logbooks(lazy=True):
            for fd in conn.get_flows_for_book(book.uuid, lazy=True):
                if include_finished or fd.uuid in unfinished:
                    yield conn.get_flow_details(fd.uuid)


def list_flows(conf, args, out=None) -> int:
    out = out or sys.stdout
    with _persistence(conf) as backend:
        flows = [_flow_summary(fd) for fd in _all_flows(backend, args.all)
                 if not args.host or (fd.meta or {}).get("host") == args.host]
    if args.format == "json":
        out.write(json.dumps(flows, indent=2) + "\n")
        return 0
    header = ("FLOW", "HOST", "ACTION", "RESOURCE", "STATE", "TASK")
    out.write(format_table(header, [
        (f["id"], f["host"] or "-", f["action"],
         "%s %s" % (f["kind"] or "", f["resource_id"] or "-"), f["state"], f["task"])
        for f in flows]))
    if not flows:
        out.write("No %sflows.\n" % ("" if args.all else "unfinished "))
    return 0


def show_flow(conf, args, out=None) -> int:
    out = out or sys.stdout
    with _persistence(conf) as backend, contextlib.closing(backend.get_connection()) as conn:
        try:
            fd = conn.get_flow_details(args.flow_id)
        except tf_exc.NotFound:
            raise exception.FlowNotFound(flow_id=args.flow_id) from None
        summary = _flow_summary(fd)
        tasks = [{"task": ad.name, "state": ad.state or "PENDING", "intention": ad.intention,
                  "error": _failure_text(ad)} for ad in fd]
    if args.format == "json":
        out.write(json.dumps(dict(summary, tasks=tasks), indent=2) + "\n")
        return 0
    for key in ("id", "host", "action", "kind", "resource_id", "state", "task"):
        out.write("%-12s %s\n" % (key + ":", summary[key] if summary[key] is not None else "-"))
    out.write("\n" + format_table(("TASK", "STATE", "INTENTION", "ERROR"), [
        (t["task"], t["state"], t["intention"] or "-", t["error"] or "") for t in tasks]))
    return 0


def _failure_text(atom_detail) -> str | None:
    failure = getattr(atom_detail, "failure", None)
    if failure is None:
        return None
    kind = failure.exc_type_names[0] if failure.exc_type_names else "Error"
    return "%s: %s" % (kind, failure.exception_str)
