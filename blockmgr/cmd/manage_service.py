"""``blockmgr-manage service list``: the services and whether each is up.

A service is up while its last heartbeat is at most ``[DEFAULT] service_down_time`` seconds
old (see :mod:`blockmgr.services`); ``REASON`` says why a service that registered is not
serving (e.g. its driver failed to set up).
"""

from __future__ import annotations

import json
import sys

from blockmgr import services
from blockmgr.cmd import manage


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("service", help="list services and their state")
    sub = parser.add_subparsers(dest="service_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="services, up/down from their heartbeats")
    listing.add_argument("--binary", help="only this binary (e.g. blockmgr-volume)")
    listing.add_argument("--host", help="only this host (a node or host@backend)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=list_services, needs_backends=True)
    parser.set_defaults(needs_backends=True)


def list_services(conf, args, out=None) -> int:
    out = out or sys.stdout
    with manage.open_database(conf) as db, db.reader() as session:
        rows = services.list_services(session, conf.service_down_time, binary=args.binary,
                                      host=args.host)
    if args.format == "json":
        out.write(json.dumps([{
            "host": r.host, "binary": r.binary, "topic": r.topic,
            "state": "up" if r.up else "down", "disabled": r.disabled,
            "reason": r.disabled_reason, "report_count": r.report_count,
            "heartbeat_at": r.heartbeat_at.isoformat() if r.heartbeat_at else None,
            "version": r.version} for r in rows], indent=2) + "\n")
        return 0
    header = ("BINARY", "HOST", "STATE", "STATUS", "LAST HEARTBEAT (UTC)", "REASON")
    table = [(r.binary, r.host, "up" if r.up else "down",
              "disabled" if r.disabled else "enabled",
              r.heartbeat_at.isoformat(sep=" ", timespec="seconds") if r.heartbeat_at else "-",
              r.disabled_reason or "") for r in rows]
    out.write(format_table(header, table))
    return 0


def format_table(header, rows) -> str:
    """Left-aligned columns as wide as their widest cell; a line per row."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines) + "\n"
