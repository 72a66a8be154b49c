"""``blockmgr-manage db sync|version``: create and upgrade blockmgr's schema.

The database is the one ``[database] connection`` names (by default the embedded SQLite file
under ``state_path``). ``sync`` is idempotent: on an up-to-date database it changes nothing.

``sync`` also creates or upgrades TaskFlow's logbook tables where ``[flows]`` keeps them (the
same database unless ``persistence_connection`` says otherwise). Daemons upgrade them at start
too, but several daemons starting at once on a database whose logbook tables are missing or old
would race on TaskFlow's ``alembic_version`` row and all but one would fail to start.
"""

from __future__ import annotations

from blockmgr.db import migration
from blockmgr.db.session import Database


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "db", help="create, upgrade and inspect blockmgr's database schema")
    db_sub = parser.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")

    sync = db_sub.add_parser("sync", help="upgrade the schema to the newest (or a given) "
                                          "revision, creating it in an empty database")
    sync.add_argument("--revision", default="head",
                      help="target revision (default: head, the newest one installed)")
    sync.set_defaults(handler=sync_schema)

    version = db_sub.add_parser("version", help="print the database's schema revision and "
                                                "the newest revision installed")
    version.set_defaults(handler=show_version)


def sync_schema(conf, args) -> int:
    db = Database.from_config(conf)
    try:
        migration.upgrade(db.engine, args.revision)
        print("database schema is at revision %s" % migration.current_revision(db.engine))
        _upgrade_flow_logbooks(conf, db)
    finally:
        db.dispose()
    return 0


def _upgrade_flow_logbooks(conf, db) -> None:
    from blockmgr.flows import engine as flow_engine

    backend = flow_engine.open_persistence(conf, db)   # creates/upgrades TaskFlow's tables
    backend.close()


def show_version(conf, args) -> int:
    db = Database.from_config(conf)
    try:
        current = migration.current_revision(db.engine)
    finally:
        db.dispose()
    head = migration.head_revision()
    print("current: %s" % (current or "none (run `blockmgr-manage db sync`)"))
    print("head: %s" % head)
    return 0
