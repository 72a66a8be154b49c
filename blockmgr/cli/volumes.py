"""``blockmgr volume ...``: create, list, show, delete, extend, revert, manage, unmanage.

Request bodies are Cinder's (what python-cinderclient sends), minus the options the user did
not give, so the server's defaults apply to those. A volume, snapshot or group given on the
command line may be named by its id or by its name (:func:`blockmgr.cli.common.find`).
"""

from __future__ import annotations

from blockmgr.cli import common
from blockmgr.cli import errors
from blockmgr.cli import wait as cli_wait

LIST_COLUMNS = (("ID", "id"), ("Name", "name"), ("Status", "status"), ("Size", "size"),
                ("Type", "volume_type"), ("Created", "created_at"))
PROJECT_COLUMN = ("Project", "os-vol-tenant-attr:tenant_id")


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("volume", help="create and manage volumes",
                                   description="Volumes of the project (--project).")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="create a volume (empty, from a snapshot or a volume)",
                       description="Create a volume: empty (--size), from a snapshot "
                                   "(--snapshot) or as a clone of a volume (--source-volume); "
                                   "a copy is as large as its source unless --size says more.")
    p.add_argument("--size", type=common.positive_int, metavar="GB",
                   help="size in GB (required for an empty volume)")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--snapshot", metavar="SNAPSHOT",
                        help="create from this snapshot (name or id)")
    source.add_argument("--source-volume", metavar="VOLUME",
                        help="clone this volume (name or id)")
    p.add_argument("--type", dest="volume_type", metavar="VOLUME_TYPE",
                   help="volume type (name or id)")
    p.add_argument("--availability-zone", metavar="ZONE", help="availability zone")
    p.add_argument("--group", metavar="GROUP",
                   help="create the volume in this consistency group (name or id)")
    common.add_wait(p, "the volume is available")
    p.set_defaults(handler=create)

    p = sub.add_parser("list", help="list volumes", description="List volumes, newest first "
                                                                "unless --sort says otherwise.")
    common.add_paging(p)
    p.set_defaults(handler=list_volumes)

    p = sub.add_parser("show", help="show one volume", description="Show every field of a "
                                                                   "volume.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.set_defaults(handler=show)

    p = sub.add_parser("delete", help="delete volumes",
                       description="Delete volumes and their data. A volume with snapshots "
                                   "needs --cascade. Every name is looked up before anything "
                                   "is deleted; a deletion the API refuses is reported and "
                                   "the others go on.")
    p.add_argument("volume_ids", metavar="VOLUME", nargs="+", help="name or id")
    p.add_argument("--cascade", action="store_true", help="delete its snapshots too")
    common.add_wait(p, "the volume is gone")
    p.set_defaults(handler=delete)

    p = sub.add_parser("extend", help="grow a volume",
                       description="Grow a volume to a new, larger size.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.add_argument("--size", type=common.positive_int, required=True, metavar="GB",
                   help="the new size in GB (larger than the current one)")
    common.add_wait(p, "the volume has its new size")
    p.set_defaults(handler=extend)

    p = sub.add_parser("revert", help="revert a volume to its latest snapshot",
                       description="Give an available volume the data of its latest snapshot "
                                   "(the snapshot stays). Only the latest snapshot may be "
                                   "used, and only while the volume has the size it had when "
                                   "the snapshot was taken (microversion 3.40).")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.add_argument("snapshot_id", metavar="SNAPSHOT", help="name or id of its latest snapshot")
    common.add_wait(p, "the volume is reverted")
    p.set_defaults(handler=revert)

    p = sub.add_parser("manage", help="import an existing backend object as a volume",
                       description="Bring an object that already exists on a backend under "
                                   "blockmgr's management (`blockmgr manageable list volumes "
                                   "--host H` lists candidates).")
    p.add_argument("--host", required=True, metavar="HOST@BACKEND[#POOL]",
                   help="the backend holding the object")
    p.add_argument("--ref", action="append", type=common.key_value, required=True,
                   metavar="KEY=VALUE",
                   help="the object's reference, e.g. source-name=vol1 (may be repeated)")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    p.add_argument("--type", dest="volume_type", metavar="VOLUME_TYPE", help="volume type")
    p.add_argument("--availability-zone", metavar="ZONE", help="availability zone")
    common.add_wait(p, "the volume is available")
    p.set_defaults(handler=manage)

    p = sub.add_parser("unmanage", help="stop managing a volume, keeping its data",
                       description="Remove a volume from blockmgr; the backend object and "
                                   "its data stay where they are.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    common.add_wait(p, "the volume is no longer managed")
    p.set_defaults(handler=unmanage)

    p = sub.add_parser("reset-state", help="reset a volume's status (admin)",
                       description="Write the status of a volume in an error or stuck "
                                   "status (os-reset_status, admin only): its open requests "
                                   "are ended and what they reserved is released. Statuses "
                                   "an operation owns (creating, deleting, ...) are refused.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.add_argument("--state", required=True, help="the status to write, e.g. available")
    p.add_argument("--attach-status", dest="attach_status",
                   choices=("attached", "detached"),
                   help="also the attach status; detached removes its attachments")
    p.set_defaults(handler=reset_state)

    p = sub.add_parser("force-delete", help="delete a volume whatever its status (admin)",
                       description="Delete a volume in any status (os-force_delete, admin "
                                   "only); an attached volume must be detached first "
                                   "(force-detach).")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    common.add_wait(p, "the volume is gone")
    p.set_defaults(handler=force_delete)

    p = sub.add_parser("force-detach", help="detach a volume whatever its state (admin)",
                       description="End an attachment of a volume (os-force_detach, admin "
                                   "only), even one in an error status; errors of the backend "
                                   "are logged and the detach goes on.")
    p.add_argument("volume_id", metavar="VOLUME", help="name or id")
    p.add_argument("--attachment", metavar="ATTACHMENT_ID",
                   help="which attachment (needed when the volume has several)")
    common.add_wait(p, "the volume is detached")
    p.set_defaults(handler=force_detach)


def _target(volume_id: str, **kwargs) -> cli_wait.Target:
    return cli_wait.Target(kind="volume", resource_id=volume_id, path="volumes/" + volume_id,
                           key="volume", command="volume", **kwargs)


AVAILABLE = frozenset({"available"})


def create(client, out, args) -> int:
    if args.size is None and not (args.snapshot or args.source_volume):
        raise errors.CliUsageError(reason="volume create needs --size (or --snapshot / "
                                          "--source-volume to copy a source)")
    body = common.drop_none({
        "size": args.size, "name": args.name, "description": args.description,
        "snapshot_id": common.find_id(client, common.SNAPSHOT, args.snapshot),
        "source_volid": common.find_id(client, common.VOLUME, args.source_volume),
        "volume_type": args.volume_type, "availability_zone": args.availability_zone,
        "group_id": common.find_id(client, common.GROUP, args.group)})
    volume = client.post("volumes", {"volume": body})["volume"]
    if args.wait:
        volume = common.wait(client, out, args, _target(volume["id"], success=AVAILABLE))
    out.record(volume)
    return 0


def list_volumes(client, out, args) -> int:
    body = client.get("volumes/detail", common.paging_params(args))
    columns = LIST_COLUMNS + ((PROJECT_COLUMN,) if args.all_projects else ())
    out.listing(body["volumes"], columns)
    common.note_next_page(out, body, "volumes")
    return 0


def show(client, out, args) -> int:
    out.record(common.find(client, common.VOLUME, args.volume_id))
    return 0


def delete(client, out, args) -> int:
    def send(volume_id):
        client.delete("volumes/" + volume_id, {"cascade": "true"} if args.cascade else None)

    return common.delete_each(client, out, args, common.VOLUME, args.volume_ids, send, _target)


def extend(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    client.post("volumes/%s/action" % args.volume_id, {"os-extend": {"new_size": args.size}})
    if args.wait:
        def grown(volume):
            if volume.get("size") != args.size:
                return "its size is %s GB, not the %d GB asked" % (volume.get("size"),
                                                                   args.size)
            return None

        volume = common.wait(client, out, args, _target(
            args.volume_id, success=frozenset({"available", "in-use"}), check=grown))
    else:
        volume = client.get("volumes/" + args.volume_id)["volume"]
    out.record(volume)
    return 0


#: The microversion that introduced the ``revert`` volume action.
REVERT_VERSION = "3.40"


def revert(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    snapshot_id = common.find_id(client, common.SNAPSHOT, args.snapshot_id)
    client.request("POST", "volumes/%s/action" % args.volume_id,
                   body={"revert": {"snapshot_id": snapshot_id}}, version=REVERT_VERSION)
    if args.wait:
        volume = common.wait(client, out, args, _target(args.volume_id, success=AVAILABLE))
    else:
        volume = client.get("volumes/" + args.volume_id)["volume"]
    out.record(volume)
    return 0


def manage(client, out, args) -> int:
    body = common.drop_none({"host": args.host, "ref": common.ref_dict(args.ref),
                             "name": args.name, "description": args.description,
                             "volume_type": args.volume_type,
                             "availability_zone": args.availability_zone})
    volume = client.post("os-volume-manage", {"volume": body})["volume"]
    if args.wait:
        volume = common.wait(client, out, args, _target(volume["id"], success=AVAILABLE))
    out.record(volume)
    return 0


def unmanage(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    client.post("volumes/%s/action" % args.volume_id, {"os-unmanage": None})
    if args.wait:
        common.wait(client, out, args, _target(args.volume_id, gone=True))
        out.note("Volume %s is no longer managed; its data stays on the backend."
                 % args.volume_id)
    else:
        out.note("Unmanage of volume %s accepted." % args.volume_id)
    return 0


def reset_state(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    body = common.drop_none({"status": args.state,
                             "attach_status": getattr(args, "attach_status", None)})
    client.post("volumes/%s/action" % args.volume_id, {"os-reset_status": body})
    out.record(client.get("volumes/" + args.volume_id)["volume"])
    return 0


def force_delete(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    client.post("volumes/%s/action" % args.volume_id, {"os-force_delete": None})
    if args.wait:
        common.wait(client, out, args, _target(args.volume_id, gone=True))
        out.note("Volume %s deleted." % args.volume_id)
    else:
        out.note("Forced delete of volume %s accepted." % args.volume_id)
    return 0


def force_detach(client, out, args) -> int:
    args.volume_id = common.find_id(client, common.VOLUME, args.volume_id)
    client.post("volumes/%s/action" % args.volume_id,
                {"os-force_detach": common.drop_none({"attachment_id": args.attachment})})
    if args.wait:
        volume = common.wait(client, out, args, _target(
            args.volume_id, success=frozenset({"available", "in-use", "reserved",
                                              "attaching"}), pending=frozenset({"detaching"})))
    else:
        volume = client.get("volumes/" + args.volume_id)["volume"]
    out.record(volume)
    return 0
