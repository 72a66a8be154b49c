"""``blockmgr group ...`` (consistency groups) and ``blockmgr group snapshot ...`` (also
spelled ``blockmgr group-snapshot ...``).

Cinder's group calls: ``POST /groups`` (create), ``POST /groups/action`` with
``create-from-src`` (a copy of a group or of a group snapshot), ``PUT /groups/{id}`` (name,
description, add / remove volumes as comma-separated ids), ``POST /groups/{id}/action`` with
``delete`` (there is no DELETE on a group), and ``/group_snapshots``.
"""

from __future__ import annotations

from blockmgr.cli import common
from blockmgr.cli import errors
from blockmgr.cli import wait as cli_wait

LIST_COLUMNS = (("ID", "id"), ("Name", "name"), ("Status", "status"),
                ("Created", "created_at"))
SNAPSHOT_COLUMNS = (("ID", "id"), ("Name", "name"), ("Status", "status"),
                    ("Group", "group_id"), ("Created", "created_at"))
AVAILABLE = frozenset({"available"})


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("group", help="consistency groups and their snapshots",
                                   description="Consistency groups: volumes snapshotted "
                                               "together.")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="create a group (empty, or a copy of a source)",
                       description="Create an empty group, or a new group with a copy of "
                                   "every volume of a group snapshot (--group-snapshot) or "
                                   "of another group (--source-group).")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    p.add_argument("--group-type", metavar="GROUP_TYPE", help="group type (name or id)")
    p.add_argument("--volume-type", action="append", dest="volume_types",
                   metavar="VOLUME_TYPE",
                   help="a volume type the group's volumes may have (may be repeated)")
    p.add_argument("--availability-zone", metavar="ZONE", help="availability zone")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--group-snapshot", metavar="GROUP_SNAPSHOT",
                        help="copy the volumes of this group snapshot (name or id)")
    source.add_argument("--source-group", metavar="GROUP",
                        help="copy the volumes of this group (name or id)")
    common.add_wait(p, "the group is available")
    p.set_defaults(handler=create)

    p = sub.add_parser("list", help="list groups", description="List groups.")
    common.add_paging(p)
    p.set_defaults(handler=list_groups)

    p = sub.add_parser("show", help="show one group", description="Show every field of a "
                                                                  "group.")
    p.add_argument("group_id", metavar="GROUP", help="name or id")
    p.set_defaults(handler=show)

    p = sub.add_parser("delete", help="delete groups",
                       description="Delete groups; a group with volumes needs "
                                   "--delete-volumes. Every name is looked up before anything "
                                   "is deleted; a deletion the API refuses is reported and "
                                   "the others go on.")
    p.add_argument("group_ids", metavar="GROUP", nargs="+", help="name or id")
    p.add_argument("--delete-volumes", action="store_true",
                   help="delete the group's volumes as well")
    common.add_wait(p, "the group is gone")
    p.set_defaults(handler=delete)

    p = sub.add_parser("update", help="rename a group or change its volumes",
                       description="Change a group's name or description, or add / remove "
                                   "volumes.")
    p.add_argument("group_id", metavar="GROUP", help="name or id")
    p.add_argument("--name", help="new display name")
    p.add_argument("--description", help="new description")
    p.add_argument("--add-volume", action="append", dest="add_volumes", metavar="VOLUME",
                   help="add this volume, name or id (may be repeated)")
    p.add_argument("--remove-volume", action="append", dest="remove_volumes",
                   metavar="VOLUME", help="remove this volume, name or id (may be repeated)")
    common.add_wait(p, "the group is available again")
    p.set_defaults(handler=update)

    add_snapshot_actions(sub.add_parser(
        "snapshot", help="snapshots of whole groups",
        description="Group snapshots: one snapshot of every volume of a group, taken "
                    "together."))


def add_group_snapshot_parser(subparsers) -> None:
    """``blockmgr group-snapshot ...``, the same commands as ``group snapshot``."""
    add_snapshot_actions(subparsers.add_parser(
        "group-snapshot", help="snapshots of whole groups (same as `group snapshot`)",
        description="Group snapshots: one snapshot of every volume of a group."))


def add_snapshot_actions(parser) -> None:
    sub = parser.add_subparsers(dest="snapshot_action", required=True, metavar="ACTION")

    p = sub.add_parser("create", help="snapshot every volume of a group",
                       description="Snapshot every volume of a group together.")
    p.add_argument("group_id", metavar="GROUP", help="the group (name or id)")
    p.add_argument("--name", help="display name")
    p.add_argument("--description", help="free text")
    common.add_wait(p, "the group snapshot is available")
    p.set_defaults(handler=snapshot_create)

    p = sub.add_parser("list", help="list group snapshots", description="List group "
                                                                       "snapshots.")
    common.add_paging(p)
    p.set_defaults(handler=snapshot_list)

    p = sub.add_parser("show", help="show one group snapshot",
                       description="Show every field of a group snapshot.")
    p.add_argument("group_snapshot_id", metavar="GROUP_SNAPSHOT", help="name or id")
    p.set_defaults(handler=snapshot_show)

    p = sub.add_parser("delete", help="delete group snapshots",
                       description="Delete group snapshots and their member snapshots. "
                                   "Every name is looked up before anything is deleted.")
    p.add_argument("group_snapshot_ids", metavar="GROUP_SNAPSHOT", nargs="+",
                   help="name or id")
    common.add_wait(p, "the group snapshot is gone")
    p.set_defaults(handler=snapshot_delete)


def _target(group_id: str, **kwargs) -> cli_wait.Target:
    return cli_wait.Target(kind="group", resource_id=group_id, path="groups/" + group_id,
                           key="group", command="group", **kwargs)


def _snapshot_target(gsnap_id: str, **kwargs) -> cli_wait.Target:
    return cli_wait.Target(kind="group_snapshot", resource_id=gsnap_id,
                           path="group_snapshots/" + gsnap_id, key="group_snapshot",
                           command="group snapshot", **kwargs)


# --- groups ---------------------------------------------------------------------------------

def create(client, out, args) -> int:
    if args.group_snapshot or args.source_group:
        if args.group_type or args.volume_types or args.availability_zone:
            raise errors.CliUsageError(
                reason="a copy of a group takes its types and zone from the source; drop "
                       "--group-type, --volume-type and --availability-zone")
        body = common.drop_none({
            "name": args.name, "description": args.description,
            "group_snapshot_id": common.find_id(client, common.GROUP_SNAPSHOT,
                                                args.group_snapshot),
            "source_group_id": common.find_id(client, common.GROUP, args.source_group)})
        group = client.post("groups/action", {"create-from-src": body})["group"]
    else:
        body = common.drop_none({"name": args.name, "description": args.description,
                                 "group_type": args.group_type,
                                 "volume_types": args.volume_types,
                                 "availability_zone": args.availability_zone})
        group = client.post("groups", {"group": body})["group"]
    if args.wait:
        group = common.wait(client, out, args, _target(group["id"], success=AVAILABLE))
    elif "status" not in group:
        group = client.get("groups/" + group["id"])["group"]
    out.record(group)
    return 0


def list_groups(client, out, args) -> int:
    body = client.get("groups/detail", common.paging_params(args))
    out.listing(body["groups"], LIST_COLUMNS)
    common.note_next_page(out, body, "groups")
    return 0


def show(client, out, args) -> int:
    out.record(common.find(client, common.GROUP, args.group_id))
    return 0


def delete(client, out, args) -> int:
    def send(group_id):
        client.post("groups/%s/action" % group_id,
                    {"delete": {"delete-volumes": bool(args.delete_volumes)}})

    return common.delete_each(client, out, args, common.GROUP, args.group_ids, send, _target)


def _volume_ids(client, refs):
    if not refs:
        return None
    return ",".join(common.find_id(client, common.VOLUME, ref) for ref in refs)


def update(client, out, args) -> int:
    if not (args.name is not None or args.description is not None or args.add_volumes
            or args.remove_volumes):
        raise errors.CliUsageError(reason="group update needs at least one of --name, "
                                          "--description, --add-volume, --remove-volume")
    args.group_id = common.find_id(client, common.GROUP, args.group_id)
    body = common.drop_none({
        "name": args.name, "description": args.description,
        "add_volumes": _volume_ids(client, args.add_volumes),
        "remove_volumes": _volume_ids(client, args.remove_volumes)})
    client.put("groups/" + args.group_id, {"group": body})
    if args.wait:
        group = common.wait(client, out, args, _target(args.group_id, success=AVAILABLE))
    else:
        group = client.get("groups/" + args.group_id)["group"]
    out.record(group)
    return 0


# --- group snapshots ------------------------------------------------------------------------

def snapshot_create(client, out, args) -> int:
    body = common.drop_none({"group_id": common.find_id(client, common.GROUP, args.group_id),
                             "name": args.name,
                             "description": args.description})
    gsnap = client.post("group_snapshots", {"group_snapshot": body})["group_snapshot"]
    if args.wait:
        gsnap = common.wait(client, out, args, _snapshot_target(gsnap["id"],
                                                                success=AVAILABLE))
    elif "status" not in gsnap:
        gsnap = client.get("group_snapshots/" + gsnap["id"])["group_snapshot"]
    out.record(gsnap)
    return 0


def snapshot_list(client, out, args) -> int:
    body = client.get("group_snapshots/detail", common.paging_params(args))
    out.listing(body["group_snapshots"], SNAPSHOT_COLUMNS)
    common.note_next_page(out, body, "group_snapshots")
    return 0


def snapshot_show(client, out, args) -> int:
    out.record(common.find(client, common.GROUP_SNAPSHOT, args.group_snapshot_id))
    return 0


def snapshot_delete(client, out, args) -> int:
    return common.delete_each(
        client, out, args, common.GROUP_SNAPSHOT, args.group_snapshot_ids,
        lambda gsnap_id: client.delete("group_snapshots/" + gsnap_id), _snapshot_target)
