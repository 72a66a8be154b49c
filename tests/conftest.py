"""Shared fixtures: real databases, one fresh database per test, services checked honestly.

A test that needs MariaDB, PostgreSQL, RabbitMQ or Redis asks for it through
:func:`require_service`. When the service does not answer, the test is skipped with the reason,
except under ``CI=true``, where a missing service is a failure, never a skip.

Server URLs can be changed with ``BLOCKMGR_TEST_MYSQL_URL`` / ``BLOCKMGR_TEST_PG_URL``
(admin URLs without a database name).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from blockmgr.db.session import Database, preferred_mysql_driver

MYSQL_ADMIN_URL = os.environ.get(
    "BLOCKMGR_TEST_MYSQL_URL", "mysql+%s://root@127.0.0.1:3306" % preferred_mysql_driver())
PG_ADMIN_URL = os.environ.get("BLOCKMGR_TEST_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432")

SERVICES = {
    "mysql": ("127.0.0.1", 3306),
    "postgresql": ("127.0.0.1", 5432),
    "rabbitmq": ("127.0.0.1", 5672),
    "redis": ("127.0.0.1", 6379),
}

IN_CI = os.environ.get("CI", "").lower() == "true"

DB_BACKENDS = ["sqlite", "mysql", "postgresql"]


def require_service(name: str) -> None:
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = "%s is not reachable at %s:%d (%s)" % (name, host, port, exc)
        if IN_CI:
            pytest.fail("CI=true and a required service is missing: " + reason)
        pytest.skip(reason)


def assert_python_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter (what a daemon imports at start, checked without
    this process's modules) and fail with its stderr unless it exits 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def _admin_engine(backend: str) -> sa.engine.Engine:
    if backend == "mysql":
        return sa.create_engine(MYSQL_ADMIN_URL + "/test", isolation_level="AUTOCOMMIT")
    return sa.create_engine(PG_ADMIN_URL + "/test", isolation_level="AUTOCOMMIT")


def create_database(backend: str, tmp_path) -> tuple[str, callable]:
    """Create an empty database; return its URL and a function that drops it."""
    if backend == "sqlite":
        path = tmp_path / ("bm-%s.sqlite" % uuid.uuid4().hex[:8])
        return "sqlite:///%s" % path, lambda: None
    require_service(backend)
    name = "bm_%s" % uuid.uuid4().hex[:12]
    admin = _admin_engine(backend)
    with admin.connect() as conn:
        if backend == "mysql":
            conn.exec_driver_sql("CREATE DATABASE %s CHARACTER SET utf8mb4" % name)
        else:
            conn.exec_driver_sql("CREATE DATABASE %s" % name)
    base = MYSQL_ADMIN_URL if backend == "mysql" else PG_ADMIN_URL
    url = "%s/%s" % (base, name)
    if backend == "mysql":
        url += "?charset=utf8mb4"

    def drop():
        with admin.connect() as conn:
            if backend == "mysql":
                conn.exec_driver_sql("DROP DATABASE IF EXISTS %s" % name)
            else:
                conn.exec_driver_sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        admin.dispose()

    return url, drop


@pytest.fixture(params=DB_BACKENDS)
def db_backend(request) -> str:
    """Parametrizes a test over SQLite, MariaDB and PostgreSQL."""
    return request.param


@pytest.fixture
def db_url(db_backend, tmp_path):
    """URL of a fresh, empty database on ``db_backend``; dropped after the test."""
    url, drop = create_database(db_backend, tmp_path)
    yield url
    drop()


@pytest.fixture
def database(db_url):
    """A :class:`Database` on a fresh database with the schema created from the models."""
    db = Database(db_url)
    db.create_schema()
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(tmp_path):
    """The fast path for unit tests: a fresh SQLite file with the schema."""
    db = Database("sqlite:///%s" % (tmp_path / "unit.sqlite"))
    db.create_schema()
    yield db
    db.dispose()


@pytest.fixture
def conf(tmp_path):
    """A private, fully registered ConfigOpts with state under ``tmp_path``."""
    from blockmgr import conf as bm_conf

    config = bm_conf.new_config(args=[])
    config.set_override("state_path", str(tmp_path))
    yield config
    config.reset()
