"""``blockmgr manageable list volumes|snapshots --host H``: what a backend holds that
blockmgr does not manage yet (candidates for ``volume manage`` / ``snapshot manage``)."""

from __future__ import annotations

from blockmgr.cli import common

KINDS = {"volumes": "manageable_volumes", "snapshots": "manageable_snapshots"}


def _reference(item: dict):
    ref = item.get("reference") or {}
    if isinstance(ref, dict):
        return ", ".join("%s=%s" % kv for kv in sorted(ref.items()))
    return ref


def _source(item: dict):
    ref = item.get("source_reference") or {}
    if isinstance(ref, dict):
        return ", ".join("%s=%s" % kv for kv in sorted(ref.items()))
    return ref


VOLUME_COLUMNS = (("Reference", _reference), ("Size", "size"),
                  ("Safe to manage", "safe_to_manage"),
                  ("Reason not safe", "reason_not_safe"), ("Managed as", "cinder_id"),
                  ("Extra info", "extra_info"))
SNAPSHOT_COLUMNS = (("Reference", _reference), ("Size", "size"),
                    ("Safe to manage", "safe_to_manage"),
                    ("Reason not safe", "reason_not_safe"), ("Managed as", "cinder_id"),
                    ("Source", _source), ("Extra info", "extra_info"))


def add_parser(subparsers) -> None:
    family = subparsers.add_parser("manageable",
                                   help="objects a backend holds that could be managed",
                                   description="Inspect what a backend holds outside "
                                               "blockmgr.")
    sub = family.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="list manageable volumes or snapshots of a backend",
                       description="List the volumes or snapshots on a backend that "
                                   "blockmgr could import with `volume manage` / `snapshot "
                                   "manage`, and why an object is not safe to import.")
    p.add_argument("kind", choices=sorted(KINDS), help="what to list")
    p.add_argument("--host", required=True, metavar="HOST@BACKEND[#POOL]",
                   help="the backend to ask (see `blockmgr-manage service list`)")
    common.add_paging(p, all_projects=False)
    p.set_defaults(handler=list_manageable)


def list_manageable(client, out, args) -> int:
    params = dict(common.paging_params(args), host=args.host)
    collection = KINDS[args.kind]
    body = client.get(collection + "/detail", params)
    key = collection.replace("_", "-")
    out.listing(body[key], VOLUME_COLUMNS if args.kind == "volumes" else SNAPSHOT_COLUMNS)
    return 0
