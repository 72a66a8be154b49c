"""``blockmgr type ...``: list, show, create and delete volume types.

Anyone lists and shows the types its project may use; creating and deleting types is for
admins (the API answers ``403`` otherwise). A type is named by its name or its id. The type
a volume gets is chosen with ``blockmgr volume create --type``.
"""

from __future__ import annotations

from blockmgr.cli import common
from blockmgr.cli import errors


def _specs(item: dict) -> str:
    return ", ".join("%s=%s" % kv for kv in sorted((item.get("extra_specs") or {}).items()))


LIST_COLUMNS = (("ID", "id"), ("Name", "name"), ("Description", "description"),
                ("Public", "is_public"), ("Extra specs", _specs))


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("type", help="volume types",
                                   description="Volume types: named kinds of volumes whose "
                                               "extra specs choose the backend.")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="list volume types",
                       description="List the volume types the project may use (an admin "
                                   "with --all sees private types of every project too).")
    p.add_argument("--all", dest="all_types", action="store_true",
                   help="every type, private ones included (admin)")
    p.set_defaults(handler=list_types)

    p = sub.add_parser("show", help="show one volume type",
                       description="Show every field of a volume type.")
    p.add_argument("type_ref", metavar="TYPE", help="name or id")
    p.set_defaults(handler=show)

    p = sub.add_parser("create", help="create a volume type (admin)",
                       description="Create a volume type, public unless --private.")
    p.add_argument("name", help="the type's name (unique)")
    p.add_argument("--description", help="free text")
    p.add_argument("--private", action="store_true",
                   help="only projects given access may use it")
    p.add_argument("--property", action="append", type=common.key_value, default=[],
                   metavar="KEY=VALUE", dest="properties",
                   help="an extra spec, e.g. volume_backend_name=lvm (may be repeated)")
    p.set_defaults(handler=create)

    p = sub.add_parser("delete", help="delete volume types (admin)",
                       description="Delete volume types no volume or snapshot uses; the "
                                   "default type cannot be deleted.")
    p.add_argument("type_refs", metavar="TYPE", nargs="+", help="name or id")
    p.set_defaults(handler=delete)


def _find(client, ref: str) -> dict:
    if not ref or not ref.strip():
        raise errors.CliUsageError(reason="an empty volume type name or id")
    return client.get("types/" + ref)["volume_type"]


def list_types(client, out, args) -> int:
    params = {"is_public": "none"} if args.all_types else None
    out.listing(client.get("types", params)["volume_types"], LIST_COLUMNS)
    return 0


def show(client, out, args) -> int:
    out.record(_find(client, args.type_ref))
    return 0


def create(client, out, args) -> int:
    body = common.drop_none({"name": args.name, "description": args.description,
                             "os-volume-type-access:is_public": not args.private})
    if args.properties:
        body["extra_specs"] = dict(args.properties)
    out.record(client.post("types", {"volume_type": body})["volume_type"])
    return 0


def delete(client, out, args) -> int:
    ids = list(dict.fromkeys(_find(client, ref)["id"] for ref in args.type_refs))
    for type_id in ids:
        client.delete("types/" + type_id)
        out.note("Volume type %s deleted." % type_id)
    return 0
