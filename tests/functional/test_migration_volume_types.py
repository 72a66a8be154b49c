"""The volume types migration's data step, on SQLite, MariaDB and PostgreSQL: volumes and
snapshots that had no type get the ``__DEFAULT__`` type it creates; downgrade clears it."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from blockmgr.db import migration
from blockmgr.db.session import Database

pytestmark = pytest.mark.functional

BEFORE = "7c3e9a1b2d40"
TYPES = "8d4f0b2c3e51"


def test_untyped_volumes_and_snapshots_get_the_default_type(db_url):
    db = Database(db_url)
    try:
        migration.upgrade(db.engine, BEFORE)
        now = dt.datetime(2026, 12, 1)
        with db.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO volumes (id, use_quota, size, status, attach_status, bootable, "
                "multiattach, created_at, deleted) VALUES ('v1', :t, 1, 'available', "
                "'detached', :f, :f, :now, :f)"), {"t": True, "f": False, "now": now})
            conn.execute(sa.text(
                "INSERT INTO snapshots (id, use_quota, volume_id, status, volume_size, "
                "created_at, deleted) VALUES ('s1', :t, 'v1', 'available', 1, :now, :f)"),
                {"t": True, "f": False, "now": now})
        migration.upgrade(db.engine, TYPES)
        with db.engine.connect() as conn:
            (default_id, name, public), = conn.execute(sa.text(
                "SELECT id, name, is_public FROM volume_types")).all()
            assert name == "__DEFAULT__" and public
            assert conn.execute(sa.text("SELECT volume_type_id FROM volumes")).scalar() \
                == default_id
            assert conn.execute(sa.text("SELECT volume_type_id FROM snapshots")).scalar() \
                == default_id
        migration.downgrade(db.engine, BEFORE)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT volume_type_id FROM volumes")).scalar() is None
            assert "volume_types" not in sa.inspect(conn).get_table_names()
    finally:
        db.dispose()
