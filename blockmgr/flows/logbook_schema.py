"""TaskFlow's logbook schema at worker start: check it is current without loading alembic.

TaskFlow's SQL backend imports its migration module, and with it alembic (and mako), when the
backend module is imported: about 0.15 s of a worker's start, for a schema that
``blockmgr-manage db sync`` has already brought to head. :func:`defer_migrations` makes that
module load on first use instead (``importlib.util.LazyLoader``), and :func:`is_current`
answers "is the database at TaskFlow's head revision?" from TaskFlow's own migration scripts
(their ``revision`` / ``down_revision`` lines) and one query, so the worker needs alembic
only when there is something to migrate.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys

import sqlalchemy as sa

MIGRATION_MODULE = "taskflow.persistence.backends.sqlalchemy.migration"
#: Alembic's default history table: TaskFlow's (blockmgr keeps its own elsewhere).
VERSION_TABLE = "alembic_version"

_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*=\s*['\"]?([0-9A-Za-z_]+|None)['\"]?",
                         re.MULTILINE)


def defer_migrations() -> None:
    """Load TaskFlow's migration module (and alembic) on first attribute access.

    Must run before ``taskflow.persistence.backends.impl_sqlalchemy`` is imported to have
    an effect; harmless (a no-op) after.
    """
    if MIGRATION_MODULE in sys.modules:
        return
    spec = importlib.util.find_spec(MIGRATION_MODULE)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[MIGRATION_MODULE] = module
    loader.exec_module(module)
    parent, _, child = MIGRATION_MODULE.rpartition(".")
    setattr(sys.modules[parent], child, module)


@functools.lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    """The head revision(s) of TaskFlow's logbook migrations, read from its scripts."""
    spec = importlib.util.find_spec("taskflow.persistence.backends.sqlalchemy")
    versions = os.path.join(os.path.dirname(spec.origin), "alembic", "versions")
    revisions, parents = set(), set()
    for name in os.listdir(versions):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(versions, name), encoding="utf-8") as script:
            found = dict(_ASSIGNMENT.findall(script.read()))
        if "revision" in found:
            revisions.add(found["revision"])
        if found.get("down_revision") not in (None, "None"):
            parents.add(found["down_revision"])
    return frozenset(revisions - parents)


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
            recorded = {row[0] for row in conn.execute(
                sa.text("SELECT version_num FROM %s" % VERSION_TABLE))}
    except Exception:   # no table yet (SQLAlchemy's or oslo.db's wrapped error): migrate
        return False
    return recorded == set(heads)
