"""Alembic environment of blockmgr.

Two callers run it:

* :mod:`blockmgr.db.migration` (``blockmgr-manage db sync``) passes an open connection in
  ``config.attributes["connection"]``; the caller owns the connection and its transaction.
* A developer running the ``alembic`` CLI with ``migrations/alembic.ini`` passes the database
  URL as ``-x url=...``.

TaskFlow's persistence tables live in the same database with their own alembic history in the
default ``alembic_version`` table, so blockmgr keeps its history in ``blockmgr_alembic_version``
and autogenerate ignores TaskFlow's tables (see :func:`blockmgr.db.migration.include_object`).
"""

from alembic import context
import sqlalchemy as sa

from blockmgr.db import migration
from blockmgr.db import models

config = context.config

CONFIGURE_OPTIONS = dict(
    target_metadata=models.Base.metadata,
    version_table=migration.VERSION_TABLE,
    include_object=migration.include_object,
    compare_type=True,
    render_as_batch=True,  # SQLite can only ALTER through table copies
)


def _cli_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database URL: alembic -c migrations/alembic.ini "
                         "-x url=<sqlalchemy url> ...")
    return url


def run_offline() -> None:
    context.configure(url=_cli_url(), literal_binds=True, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection) -> None:
    context.configure(connection=connection, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif config.attributes.get("connection") is not None:
    run_online(config.attributes["connection"])
else:
    engine = sa.create_engine(_cli_url(), poolclass=sa.pool.NullPool)
    with engine.begin() as cli_connection:
        run_online(cli_connection)
    engine.dispose()
