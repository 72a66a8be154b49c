"""The service's pool on MariaDB and PostgreSQL (``session.trim_pool_round_trips``): a
connection the server dropped while it sat idle is replaced before a transaction uses it,
and a committed transaction costs no ROLLBACK on its way back to the pool."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr.db import session as db_session
from blockmgr.db import transaction
from tests.conftest import _admin_engine
from tests.conftest import create_database


@pytest.fixture(params=["mysql", "postgresql"])
def server_database(request, tmp_path):
    url, drop = create_database(request.param, tmp_path)
    database = db_session.Database(url)
    yield database
    database.dispose()
    drop()


def _server_id(conn) -> int:
    if conn.dialect.name == "mysql":
        return conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
    return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_a_connection_dropped_while_idle_is_replaced(server_database, monkeypatch):
    engine = server_database.engine
    with engine.connect() as conn:
        first = _server_id(conn)
    admin = _admin_engine("mysql" if server_database.dialect == "mysql" else "postgresql")
    with admin.connect() as conn:
        if server_database.dialect == "mysql":
            conn.exec_driver_sql("KILL %d" % first)
        else:
            conn.exec_driver_sql("SELECT pg_terminate_backend(%d)" % first)
    admin.dispose()
    monkeypatch.setattr(db_session, "PING_IDLE_AFTER_S", 0.0)
    with server_database.writer() as session:
        assert session.execute(sa.text("SELECT 1")).scalar() == 1
    with engine.connect() as conn:
        assert _server_id(conn) != first


@pytest.fixture
def mariadb_database(tmp_path):
    url, drop = create_database("mysql", tmp_path)
    database = db_session.Database(url)
    yield database
    database.dispose()
    drop()


def test_a_committed_transaction_is_not_rolled_back_on_mariadb(mariadb_database):
    engine = mariadb_database.engine

    def rollbacks() -> int:
        with engine.connect() as conn:   # closed with its own rollback
            return int(conn.exec_driver_sql(
                "SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])

    before = rollbacks()
    for _ in range(5):
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
    # Only the counting read's own rollback (one pooled connection served every one).
    assert rollbacks() == before + 1


def _isolation(conn, other) -> str:
    """READ COMMITTED or REPEATABLE READ, by what ``conn``'s transaction sees of a row
    another connection commits between two reads."""
    before = conn.exec_driver_sql("SELECT COUNT(*) FROM isolation_probe").scalar()
    with other.begin() as writer:
        writer.exec_driver_sql("INSERT INTO isolation_probe (id) VALUES (1)")
    after = conn.exec_driver_sql("SELECT COUNT(*) FROM isolation_probe").scalar()
    return "READ COMMITTED" if after > before else "REPEATABLE READ"


def test_read_committed_sets_the_transaction_it_starts(mariadb_database):
    """``transaction.read_committed`` (sent on the driver's cursor) makes the transaction
    READ COMMITTED; the next one is back at the server's REPEATABLE READ."""
    engine = mariadb_database.engine
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE isolation_probe (id INTEGER)")
    other = sa.create_engine(engine.url)
    try:
        with engine.begin() as conn:
            transaction.read_committed(conn)
            assert _isolation(conn, other) == "READ COMMITTED"
        with engine.begin() as conn:
            assert _isolation(conn, other) == "REPEATABLE READ"
    finally:
        other.dispose()
