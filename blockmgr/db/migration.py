"""Schema migrations: run blockmgr's alembic scripts against one database.

The scripts live in the top-level ``migrations/`` directory of the source tree, installed as
the ``blockmgr.migrations`` package; they are found through :mod:`importlib.resources`, never
through the current directory, so an installed wheel migrates exactly like a checkout.

TaskFlow's SQLAlchemy persistence backend keeps its tables (``logbooks``, ``flowdetails``,
``atomdetails``) in the same database and its alembic history in alembic's default
``alembic_version`` table. blockmgr therefore keeps its history in :data:`VERSION_TABLE` and
ignores TaskFlow's tables when comparing the models with the database
(:func:`include_object`). The two histories never see each other.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from typing import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from blockmgr import exception

SCRIPTS_PACKAGE = "blockmgr.migrations"

#: Alembic history table of blockmgr's schema (alembic's default name belongs to TaskFlow).
VERSION_TABLE = "blockmgr_alembic_version"

#: Tables in the same database that blockmgr's migrations do not own.
FOREIGN_TABLES = frozenset({"logbooks", "flowdetails", "atomdetails", "alembic_version"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic filter: compare and migrate only blockmgr's own tables."""
    if type_ == "table":
        return name not in FOREIGN_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name not in FOREIGN_TABLES


@contextlib.contextmanager
def _script_location() -> Iterator[str]:
    with importlib.resources.as_file(importlib.resources.files(SCRIPTS_PACKAGE)) as path:
        yield str(path)


@contextlib.contextmanager
def _alembic_config(connection: sa.Connection | None = None) -> Iterator[Config]:
    with _script_location() as location:
        config = Config()
        config.set_main_option("script_location", location)
        if connection is not None:
            config.attributes["connection"] = connection
        yield config


def head_revision() -> str:
    """The newest revision the installed scripts know."""
    with _alembic_config() as config:
        head = ScriptDirectory.from_config(config).get_current_head()
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at; None when blockmgr's schema was never created."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent: nothing to do at that revision).

    On PostgreSQL the whole upgrade is one transaction; MariaDB commits each DDL statement.
    """
    _check_revision(revision)
    with engine.begin() as connection, _alembic_config(connection) as config:
        command.upgrade(config, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` drops every blockmgr table)."""
    _check_revision(revision)
    with engine.begin() as connection, _alembic_config(connection) as config:
        command.downgrade(config, revision)


def compare_models(engine: sa.Engine) -> list:
    """Differences between the models and the database, as alembic autogenerate sees them.

    Empty when the migrations at the database's revision create exactly what
    :mod:`blockmgr.db.models` declares.
    """
    from blockmgr.db import models

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "version_table": VERSION_TABLE,
            "include_object": include_object,
            "compare_type": True,
            "target_metadata": models.Base.metadata,
        })
        return compare_metadata(context, models.Base.metadata)


def _check_revision(revision: str) -> None:
    """Reject an unknown revision with a typed error before touching the database."""
    if revision in ("head", "heads", "base"):
        return
    with _alembic_config() as config:
        scripts = ScriptDirectory.from_config(config)
        try:
            found = scripts.get_revision(revision)
        except Exception as exc:  # alembic raises several types for one meaning
            raise exception.InvalidInput(
                reason="unknown schema revision %r: %s" % (revision, exc)) from None
        if found is None:
            raise exception.InvalidInput(reason="unknown schema revision %r" % revision)
