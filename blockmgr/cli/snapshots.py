"""``blockmgr snapshot ...``: create, list, show, delete, manage, unmanage. Volumes and
snapshots given on the command line may be named by id or by name."""

from __future__ import annotations

from blockmgr.cli import common
from blockmgr.cli import wait as cli_wait

LIST_COLUMNS = (("ID", "id"), ("Name", "name"), ("Status", "status"), ("Size", "size"),
                ("Volume", "volume_id"), ("Created", "created_at"))
PROJECT_COLUMN = ("Project", "os-extended-snapshot-attributes:project_id")


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("snapshot", help="create and manage snapshots",
                                   description="Snapshots of the project's volumes.")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="snapshot a volume",
                       description="Take a point-in-time snapshot of an available volume.")
    p.add_argument("volume_id", metavar="VOLUME", help="the volume (name or id)")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    common.add_wait(p, "the snapshot is available")
    p.set_defaults(handler=create)

    p = sub.add_parser("list", help="list snapshots", description="List snapshots.")
    common.add_paging(p)
    p.set_defaults(handler=list_snapshots)

    p = sub.add_parser("show", help="show one snapshot",
                       description="Show every field of a snapshot.")
    p.add_argument("snapshot_id", metavar="SNAPSHOT", help="name or id")
    p.set_defaults(handler=show)

    p = sub.add_parser("delete", help="delete snapshots",
                       description="Delete snapshots. Every name is looked up before anything "
                                   "is deleted; a deletion the API refuses is reported and "
                                   "the others go on.")
    p.add_argument("snapshot_ids", metavar="SNAPSHOT", nargs="+", help="name or id")
    common.add_wait(p, "the snapshot is gone")
    p.set_defaults(handler=delete)

    p = sub.add_parser("manage", help="import an existing backend snapshot",
                       description="Bring a snapshot that already exists on the backend of "
                                   "VOLUME_ID under blockmgr's management (`blockmgr "
                                   "manageable list snapshots --host H` lists candidates).")
    p.add_argument("volume_id", metavar="VOLUME",
                   help="the volume it is a snapshot of (name or id)")
    p.add_argument("--ref", action="append", type=common.key_value, required=True,
                   metavar="KEY=VALUE",
                   help="the snapshot's reference, e.g. source-name=snap1 (may be repeated)")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    common.add_wait(p, "the snapshot is available")
    p.set_defaults(handler=manage)

    p = sub.add_parser("unmanage", help="stop managing a snapshot, keeping its data",
                       description="Remove a snapshot from blockmgr; the backend object "
                                   "stays.")
    p.add_argument("snapshot_id", metavar="SNAPSHOT", help="name or id")
    common.add_wait(p, "the snapshot is no longer managed")
    p.set_defaults(handler=unmanage)

    p = sub.add_parser("reset-state", help="reset a snapshot's status (admin)",
                       description="Write the status of a snapshot in an error or stuck "
                                   "status (os-reset_status, admin only): its open requests "
                                   "are ended and what they reserved is released. Statuses "
                                   "an operation owns (creating, deleting, ...) are refused.")
    p.add_argument("snapshot_id", metavar="SNAPSHOT", help="name or id")
    p.add_argument("--state", required=True, help="the status to write, e.g. available")
    p.set_defaults(handler=reset_state)

    p = sub.add_parser("force-delete", help="delete a snapshot whatever its status (admin)",
                       description="Delete a snapshot in any status (os-force_delete, admin "
                                   "only).")
    p.add_argument("snapshot_id", metavar="SNAPSHOT", help="name or id")
    common.add_wait(p, "the snapshot is gone")
    p.set_defaults(handler=force_delete)


def _target(snapshot_id: str, **kwargs) -> cli_wait.Target:
    return cli_wait.Target(kind="snapshot", resource_id=snapshot_id,
                           path="snapshots/" + snapshot_id, key="snapshot",
                           command="snapshot", **kwargs)


AVAILABLE = frozenset({"available"})


def create(client, out, args) -> int:
    body = common.drop_none({"volume_id": common.find_id(client, common.VOLUME, args.volume_id),
                             "name": args.name,
                             "description": args.description})
    snapshot = client.post("snapshots", {"snapshot": body})["snapshot"]
    if args.wait:
        snapshot = common.wait(client, out, args, _target(snapshot["id"], success=AVAILABLE))
    out.record(snapshot)
    return 0


def list_snapshots(client, out, args) -> int:
    body = client.get("snapshots/detail", common.paging_params(args))
    columns = LIST_COLUMNS + ((PROJECT_COLUMN,) if args.all_projects else ())
    out.listing(body["snapshots"], columns)
    common.note_next_page(out, body, "snapshots")
    return 0


def show(client, out, args) -> int:
    out.record(common.find(client, common.SNAPSHOT, args.snapshot_id))
    return 0


def delete(client, out, args) -> int:
    return common.delete_each(client, out, args, common.SNAPSHOT, args.snapshot_ids,
                              lambda snapshot_id: client.delete("snapshots/" + snapshot_id),
                              _target)


def manage(client, out, args) -> int:
    ref = common.ref_dict(args.ref)
    body = common.drop_none({"volume_id": common.find_id(client, common.VOLUME, args.volume_id),
                             "ref": ref,
                             "name": args.name, "description": args.description})
    snapshot = client.post("os-snapshot-manage", {"snapshot": body})["snapshot"]
    if args.wait:
        snapshot = common.wait(client, out, args, _target(snapshot["id"], success=AVAILABLE))
    out.record(snapshot)
    return 0


def unmanage(client, out, args) -> int:
    args.snapshot_id = common.find_id(client, common.SNAPSHOT, args.snapshot_id)
    client.post("snapshots/%s/action" % args.snapshot_id, {"os-unmanage": None})
    if args.wait:
        common.wait(client, out, args, _target(args.snapshot_id, gone=True))
        out.note("Snapshot %s is no longer managed; its data stays on the backend."
                 % args.snapshot_id)
    else:
        out.note("Unmanage of snapshot %s accepted." % args.snapshot_id)
    return 0


def reset_state(client, out, args) -> int:
    args.snapshot_id = common.find_id(client, common.SNAPSHOT, args.snapshot_id)
    body = common.drop_none({"status": args.state,
                             "attach_status": getattr(args, "attach_status", None)})
    client.post("snapshots/%s/action" % args.snapshot_id, {"os-reset_status": body})
    out.record(client.get("snapshots/" + args.snapshot_id)["snapshot"])
    return 0


def force_delete(client, out, args) -> int:
    args.snapshot_id = common.find_id(client, common.SNAPSHOT, args.snapshot_id)
    client.post("snapshots/%s/action" % args.snapshot_id, {"os-force_delete": None})
    if args.wait:
        common.wait(client, out, args, _target(args.snapshot_id, gone=True))
        out.note("Snapshot %s deleted." % args.snapshot_id)
    else:
        out.note("Forced delete of snapshot %s accepted." % args.snapshot_id)
    return 0
