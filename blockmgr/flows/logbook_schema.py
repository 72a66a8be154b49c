"""TaskFlow's logbook schema at worker start: check it is current without loading alembic.

TaskFlow's SQL backend imports its migration module, and with it alembic (and mako), when the
backend module is imported: about 0.15 s of a worker's start, for a schema that
``blockmgr-manage db sync`` has already brought to head. Importing
:mod:`blockmgr.flows.taskflow_compat` makes that module load on first use instead, and
:func:`is_current` answers "is the database at TaskFlow's head revision?" from TaskFlow's own
migration scripts and one query, so the worker needs alembic only when there is something to
migrate.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

from blockmgr.flows import taskflow_compat

MIGRATION_MODULE = taskflow_compat.MIGRATION_MODULE
#: Alembic's default history table: TaskFlow's (blockmgr keeps its own elsewhere).
VERSION_TABLE = "alembic_version"

defer_migrations = taskflow_compat.defer_migrations


@functools.lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """The head revision(s) of TaskFlow's logbook migrations, read from its scripts."""
    return taskflow_compat.head_revisions()


def is_current(engine: sa.engine.Engine) -> bool:
    """True if ``engine``'s database records exactly TaskFlow's head revision(s).

    False when the version table is missing or behind (or the scripts cannot be read): the
    caller then runs the real migration, which is always correct, only slower.
    """
    try:
        heads = head_revisions()
    except (OSError, AttributeError, TypeError):
        return False
    if not heads:
        return False
    try:
        with engine.connect() as conn:
            # Asked first: a SELECT on a missing table would make oslo.db log a traceback
            # on a first start or a first ``db sync`` (nothing is wrong then).
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return False
            recorded = {row[0] for row in conn.execute(
                sa.text("SELECT version_num FROM %s" % VERSION_TABLE))}
    except Exception:   # unreadable (SQLAlchemy's or oslo.db's wrapped error): migrate
        return False
    return recorded == set(heads)
