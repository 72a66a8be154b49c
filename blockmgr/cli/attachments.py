"""``blockmgr attachment create|list|show|complete|delete``: the attachments API (microversion
3.44, sent with each of these calls).

``create VOLUME [--instance UUID] [--connector JSON] [--mode rw|ro]`` reserves the volume
for a consumer; with ``--connector`` (os-brick connector properties as JSON, e.g.
``{"host": "node1"}``) the volume is exported and connected at once and the answer carries
the ``connection_info`` to hand to os-brick. ``complete`` marks the attachment attached (the
volume becomes ``in-use``); ``delete`` detaches it.
"""

from __future__ import annotations

import json

from blockmgr.cli import common
from blockmgr.cli import errors
from blockmgr.cli import wait as cli_wait

VERSION = "3.44"
LIST_COLUMNS = (("ID", "id"), ("Volume", "volume_id"), ("Status", "status"),
                ("Instance", "instance"), ("Mode", "attach_mode"))


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("attachment", help="attach volumes to consumers",
                                   description="Attachments of the project's volumes "
                                               "(the attachments API, microversion 3.44).")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="reserve a volume for a consumer (and connect it)",
                       description="Reserve a volume; with --connector also export and "
                                   "connect it and print its connection info.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.add_argument("--instance", metavar="UUID", help="the consuming instance's UUID")
    p.add_argument("--connector", type=_json_object, metavar="JSON",
                   help="os-brick connector properties as a JSON object")
    p.add_argument("--mode", choices=("rw", "ro"), help="access mode (default rw)")
    p.set_defaults(handler=create)

    p = sub.add_parser("list", help="list attachments")
    p.add_argument("--volume", metavar="VOLUME", help="only this volume's (name or id)")
    p.set_defaults(handler=list_attachments)

    p = sub.add_parser("show", help="show one attachment")
    p.add_argument("attachment_id", metavar="ATTACHMENT_ID")
    p.set_defaults(handler=show)

    p = sub.add_parser("complete", help="mark a connected attachment attached (in-use)")
    p.add_argument("attachment_id", metavar="ATTACHMENT_ID")
    p.set_defaults(handler=complete)

    p = sub.add_parser("delete", help="detach",
                       description="Detach: the connection and the export end, and the "
                                   "volume is available again once no attachment is left.")
    p.add_argument("attachment_id", metavar="ATTACHMENT_ID")
    common.add_wait(p, "the volume is detached")
    p.set_defaults(handler=delete)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise errors.CliUsageError(reason="--connector must be JSON: %s" % exc) from None
    if not isinstance(value, dict):
        raise errors.CliUsageError(reason="--connector must be a JSON object")
    return value


def create(client, out, args) -> int:
    volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    body = common.drop_none({"volume_uuid": volume_id, "instance_uuid": args.instance,
                             "connector": args.connector, "mode": args.mode})
    out.record(client.request("POST", "attachments", body={"attachment": body},
                              version=VERSION)["attachment"])
    return 0


def list_attachments(client, out, args) -> int:
    params = {"volume_id": common.find_id(client, common.VOLUME, args.volume)}
    body = client.request("GET", "attachments/detail", params=params, version=VERSION)
    out.listing(body["attachments"], LIST_COLUMNS)
    return 0


def show(client, out, args) -> int:
    out.record(client.request("GET", "attachments/" + args.attachment_id,
                              version=VERSION)["attachment"])
    return 0


def complete(client, out, args) -> int:
    client.request("POST", "attachments/%s/action" % args.attachment_id,
                   body={"os-complete": None}, version=VERSION)
    return show(client, out, args)


def delete(client, out, args) -> int:
    attachment = client.request("GET", "attachments/" + args.attachment_id,
                                version=VERSION)["attachment"]
    client.request("DELETE", "attachments/" + args.attachment_id, version=VERSION)
    volume_id = attachment["volume_id"]
    if args.wait:
        target = cli_wait.Target(kind="volume", resource_id=volume_id,
                                 path="volumes/" + volume_id, key="volume", command="volume",
                                 success=frozenset({"available", "in-use", "reserved",
                                                    "attaching"}),
                                 pending=frozenset({"detaching"}))
        out.record(common.wait(client, out, args, target))
    else:
        out.note("Detach of attachment %s accepted." % args.attachment_id)
    return 0
