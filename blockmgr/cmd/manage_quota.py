"""``blockmgr-manage quota show|check|sync|reconcile|set|reset``: inspect and repair quotas.

Every command handles the per-volume-type resources (``volumes_<type>``, ...) like the others:
``show`` lists them for every existing type, ``check``/``sync``/``reconcile`` recount them,
``set``/``reset`` take them as ``--resource``.

``check`` exits 1 when any usage drifts from what the real tables and live reservations say
(unlike Cinder's ``quota check``, which reports drift but never exits 1), 0 when clean.
``sync`` writes the expected values and prints what it fixed. ``reconcile`` is what the
scheduler runs periodically (:mod:`blockmgr.quota_reconciler`): release the reservations of
finished or vanished flows, then sync, and print per project and resource what changed;
``--dry-run`` only reports (exit 1 when something would change). See ``docs/quota.md``.
"""

from __future__ import annotations

import contextlib

from blockmgr.db.session import Database
from blockmgr.quota import QuotaEngine


#: The resources are partly named after the volume types that exist, so the engine checks
#: the name (UnknownQuotaResource: exit 2), not argparse.
_RESOURCE_HELP = ("%s, or volumes_<type>, snapshots_<type>, gigabytes_<type> of an existing "
                  "volume type" % ", ".join(QuotaEngine.RESOURCES + QuotaEngine.LIMIT_ONLY))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("quota", help="show, check and repair project quotas")
    commands = parser.add_subparsers(dest="quota_command", required=True,
                                     metavar="QUOTA_COMMAND")

    show = commands.add_parser("show", help="limits, usage and reservations of a project")
    show.add_argument("--project-id", required=True)
    show.set_defaults(handler=show_quota)

    check = commands.add_parser(
        "check", help="compare usage with the database; exit 1 when it drifts")
    check.add_argument("--project-id", help="only this project (default: every project)")
    check.set_defaults(handler=check_quota)

    sync = commands.add_parser("sync", help="recompute usage from the database and fix it")
    sync.add_argument("--project-id", help="only this project (default: every project)")
    sync.add_argument("--release-expired", action="store_true",
                      help="first roll back reservations past their expiry time")
    sync.set_defaults(handler=sync_quota)

    reconcile = commands.add_parser(
        "reconcile", help="release reservations of finished flows, fix usage, report")
    reconcile.add_argument("--project-id",
                           help="recompute only this project's usage (orphaned "
                                "reservations are released in every project)")
    reconcile.add_argument("--dry-run", action="store_true",
                           help="report what would be released and fixed; change nothing "
                                "(exit 1 when something would change)")
    reconcile.set_defaults(handler=reconcile_quota)

    set_ = commands.add_parser("set", help="override one limit of a project")
    set_.add_argument("--project-id", required=True)
    set_.add_argument("--resource", required=True, help=_RESOURCE_HELP)
    set_.add_argument("--limit", type=int, required=True, help="-1 means unlimited")
    set_.set_defaults(handler=set_limit)

    reset = commands.add_parser("reset", help="drop a project's override (use the default)")
    reset.add_argument("--project-id", required=True)
    reset.add_argument("--resource", required=True, help=_RESOURCE_HELP)
    reset.set_defaults(handler=reset_limit)

    for sub in (show, check, sync, reconcile, set_, reset):
        sub.set_defaults(needs_backends=False)


@contextlib.contextmanager
def _engine(conf):
    db = Database.from_config(conf)
    try:
        yield QuotaEngine(db, conf)
    finally:
        db.dispose()


def _limit_text(limit: int) -> str:
    return "unlimited" if limit < 0 else str(limit)


def show_quota(conf, args) -> int:
    with _engine(conf) as engine:
        usages = engine.get_usages(args.project_id)
        limits = engine.get_limits(args.project_id)
    width = max([22] + [len(r) for r in usages])
    print("Quota of project %s" % args.project_id)
    print("%-*s %10s %10s %10s" % (width, "resource", "limit", "in_use", "reserved"))
    typed = [r for r in usages if r not in QuotaEngine.RESOURCES]
    for resource in QuotaEngine.RESOURCES + QuotaEngine.LIMIT_ONLY + tuple(typed):
        if resource in QuotaEngine.LIMIT_ONLY:   # never counted
            print("%-*s %10s %10s %10s" % (width, resource, _limit_text(limits[resource]),
                                           "-", "-"))
            continue
        usage = usages[resource]
        print("%-*s %10s %10d %10d" % (width, resource, _limit_text(usage["limit"]),
                                       usage["in_use"], usage["reserved"]))
    return 0


def check_quota(conf, args) -> int:
    with _engine(conf) as engine:
        drifts = engine.check(args.project_id)
    if not drifts:
        print("Quota usage matches the database.")
        return 0
    for drift in drifts:
        print("DRIFT %s" % drift)
    print("%d usage value(s) drift from the database; run 'blockmgr-manage quota sync' to "
          "fix them." % len(drifts))
    return 1


def sync_quota(conf, args) -> int:
    with _engine(conf) as engine:
        if args.release_expired:
            print("Released %d expired reservation(s)." % engine.expire())
        drifts = engine.sync(args.project_id)
    if not drifts:
        print("Nothing to fix: quota usage matches the database.")
    for drift in drifts:
        print("FIXED %s" % drift)
    return 0


def reconcile_quota(conf, args) -> int:
    from blockmgr import quota_reconciler

    db = Database.from_config(conf)
    persistence = None
    try:
        persistence = _flow_persistence(conf, db)
        reconciler = quota_reconciler.QuotaReconciler(QuotaEngine(db, conf), db, persistence)
        report = reconciler.run(args.project_id, dry_run=args.dry_run)
    finally:
        if persistence is not None:
            persistence.close()
        db.dispose()
    if reconciler.persistence is None:
        print("Flow logbooks are in memory ([flows] persistence_connection = memory): every "
              "owned reservation counts as live; only expired ownerless ones are released.")
    verb = "WOULD RELEASE" if args.dry_run else "RELEASED"
    for orphan in report.released:
        print("%s reservation %s: project %s %s %+d (%s)" % (
            verb, orphan.uuid, orphan.project_id, orphan.resource, orphan.delta,
            "owner flow %s is finished or gone" % orphan.owner if orphan.owner
            else "no owner, expired"))
    for drift in report.drifts:
        print("%s %s" % ("DRIFT" if args.dry_run else "FIXED", drift))
    if report.changes:
        width = max([10] + [len(c.resource) for c in report.changes])
        print("%-36s %-*s %21s %21s %9s" % ("project", width, "resource",
                                            "in_use before->after", "reserved before->after",
                                            "released"))
        for c in report.changes:
            print("%-36s %-*s %21s %21s %9d" % (
                c.project_id, width, c.resource,
                "%d -> %d" % (c.in_use_before, c.in_use_after),
                "%d -> %d" % (c.reserved_before, c.reserved_after), c.released))
    print(report.summary() if not report.clean
          else "Nothing to do: no orphaned reservation, usage matches the database.")
    return 1 if args.dry_run and not report.clean else 0


def _flow_persistence(conf, db):
    """The flow logbooks the volume workers write, or None when they are in memory."""
    if (conf.flows.persistence_connection or "") == "memory":
        return None
    from blockmgr.flows import engine as flow_engine

    return flow_engine.open_persistence(conf, db)


def set_limit(conf, args) -> int:
    with _engine(conf) as engine:
        engine.set_limit(args.project_id, args.resource, args.limit)
    print("Limit of %s for project %s set to %s." % (args.resource, args.project_id,
                                                     _limit_text(args.limit)))
    return 0


def reset_limit(conf, args) -> int:
    with _engine(conf) as engine:
        engine.reset_limit(args.project_id, args.resource)
        limit = engine.get_limits(args.project_id)[args.resource]
    print("Limit of %s for project %s reset to the default (%s)." % (
        args.resource, args.project_id, _limit_text(limit)))
    return 0
