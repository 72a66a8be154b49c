"""``blockmgr-manage db sync`` / ``db version`` as an operator runs them: a separate process."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa

from blockmgr.db import migration
from blockmgr.db import models
from blockmgr.flows import logbook_schema

pytestmark = pytest.mark.functional

MANAGE = str(pathlib.Path(sys.executable).with_name("blockmgr-manage"))


def _manage(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([MANAGE, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _write_config(tmp_path, database_section: str) -> str:
    path = tmp_path / "blockmgr.conf"
    path.write_text("[DEFAULT]\nstate_path = %s\n\n[database]\n%s\n"
                    % (tmp_path / "state", database_section))
    return str(path)


def test_sync_then_version(db_url, tmp_path):
    config = _write_config(tmp_path, "connection = %s" % db_url)
    head = migration.head_revision()

    before = _manage("--config-file", config, "db", "version")
    assert before.returncode == 0, before.stderr
    assert "current: none" in before.stdout
    assert "head: %s" % head in before.stdout

    sync = _manage("--config-file", config, "db", "sync")
    assert sync.returncode == 0, sync.stderr
    assert head in sync.stdout
    # a first sync is quiet on every database (no traceback of a missing version table)
    assert "Traceback" not in sync.stderr and "Traceback" not in sync.stdout, sync.stderr

    after = _manage("--config-file", config, "db", "version")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == ["current: %s" % head, "head: %s" % head]

    engine = sa.create_engine(db_url)
    try:
        assert set(models.Base.metadata.tables) <= set(sa.inspect(engine).get_table_names())
        # a worker starting on this database checks TaskFlow's schema without alembic
        assert logbook_schema.is_current(engine) == (not db_url.startswith("sqlite"))
    finally:
        engine.dispose()

    again = _manage("--config-file", config, "db", "sync")
    assert again.returncode == 0, again.stderr


def test_sync_on_embedded_default_creates_sqlite_under_state_path(tmp_path):
    """No [database] section: the default SQLite file under state_path (made if missing)."""
    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\n" % (tmp_path / "nested" / "state"))

    sync = _manage("--config-file", str(config), "db", "sync")

    assert sync.returncode == 0, sync.stderr
    assert (tmp_path / "nested" / "state" / "blockmgr.sqlite").is_file()


def test_sync_to_unknown_revision_fails_and_names_it(tmp_path):
    config = _write_config(tmp_path, "connection = sqlite:///%s" % (tmp_path / "x.sqlite"))
    result = _manage("--config-file", config, "db", "sync", "--revision", "nope")
    assert result.returncode == 2
    assert "unknown schema revision 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_reported_without_traceback(tmp_path):
    # Port 9 (discard) is closed here; no retries so the failure is immediate.
    config = _write_config(tmp_path, "connection = mysql+pymysql://root@127.0.0.1:9/nope\n"
                                     "max_retries = 0")
    result = _manage("--config-file", config, "db", "version")
    assert result.returncode == 2
    assert "ERROR: database (check [database] connection)" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_in_config_fails_before_touching_the_database(tmp_path):
    config = _write_config(tmp_path, "connection = sqlite:///%s\nconection_typo = 1"
                           % (tmp_path / "x.sqlite"))
    result = _manage("--config-file", config, "db", "sync")
    assert result.returncode == 2
    assert "[database] conection_typo" in result.stderr
    assert not (tmp_path / "x.sqlite").exists()
