"""Migrations are tested code: they must build exactly the schema the models declare.

Each test gets a fresh, empty database on SQLite, MariaDB and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import sys
import zipfile

import pytest
import sqlalchemy as sa
from taskflow.persistence import backends as taskflow_backends

from blockmgr import exception
from blockmgr.db import migration
from blockmgr.db import models
from blockmgr.db.session import Database

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.functional


@pytest.fixture
def engine(db_url):
    db = Database(db_url)
    yield db.engine
    db.dispose()


def _tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_empty_database_to_head_matches_models(engine):
    assert migration.current_revision(engine) is None

    migration.upgrade(engine)

    assert migration.current_revision(engine) == migration.head_revision()
    assert _tables(engine) == set(models.Base.metadata.tables) | {migration.VERSION_TABLE}
    diff = migration.compare_models(engine)
    assert diff == [], "models and migrations disagree; add a revision:\n%s" % "\n".join(
        map(repr, diff))


def test_upgrade_twice_changes_nothing(engine):
    migration.upgrade(engine)
    migration.upgrade(engine)
    assert migration.current_revision(engine) == migration.head_revision()
    assert migration.compare_models(engine) == []


def test_downgrade_to_base_removes_every_blockmgr_table(engine):
    migration.upgrade(engine)
    migration.downgrade(engine, "base")

    assert migration.current_revision(engine) is None
    assert _tables(engine) <= {migration.VERSION_TABLE}

    migration.upgrade(engine)  # and the way back up still works
    assert migration.compare_models(engine) == []


def test_comparison_sees_a_schema_that_differs_from_the_models(engine):
    """The agreement test would be worthless if the comparison could not fail."""
    migration.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    diff = migration.compare_models(engine)
    assert [entry[0] for entry in diff] == ["remove_table"]
    assert diff[0][1].name == "stray"


def _taskflow_revision(engine) -> str | None:
    """TaskFlow's alembic revision (TaskFlow creates its SQLite schema without alembic)."""
    if "alembic_version" not in _tables(engine):
        assert engine.dialect.name == "sqlite"
        return None
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def test_taskflow_tables_share_the_database_without_interference(db_url, engine):
    """TaskFlow keeps its own tables and its own ``alembic_version`` in the same database."""
    backend = taskflow_backends.fetch({"connection": db_url})
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        taskflow_tables = _tables(engine)
        assert {"logbooks", "flowdetails", "atomdetails"} <= taskflow_tables
        taskflow_revision = _taskflow_revision(engine)

        migration.upgrade(engine)

        assert migration.compare_models(engine) == []
        assert taskflow_tables <= _tables(engine)
        assert _taskflow_revision(engine) == taskflow_revision

        migration.downgrade(engine, "base")
        assert _tables(engine) == taskflow_tables | {migration.VERSION_TABLE}
        assert _taskflow_revision(engine) == taskflow_revision
    finally:
        backend.close()


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_unknown_revision_is_rejected_before_touching_the_database(engine):
    with pytest.raises(exception.InvalidInput, match="unknown schema revision 'nope'"):
        migration.upgrade(engine, "nope")
    assert _tables(engine) == set()


@pytest.mark.slow
def test_wheel_ships_the_migration_scripts(tmp_path):
    """``db sync`` must work from an installed wheel, not only from a checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input", "-q",
                    "-w", str(tmp_path), str(REPO_ROOT)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("blockmgr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    expected = {"blockmgr/migrations/" + path.relative_to(REPO_ROOT / "migrations").as_posix()
                for path in (REPO_ROOT / "migrations").rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert "blockmgr/migrations/env.py" in expected
    assert "blockmgr/migrations/script.py.mako" in expected
    assert any(name.startswith("blockmgr/migrations/versions/") and name.endswith(".py")
               and not name.endswith("__init__.py") for name in expected)
    assert expected <= names, "missing from the wheel: %s" % sorted(expected - names)
    assert not any(name.startswith("migrations/") for name in names)
