"""``session.trim_pool_round_trips``: no rollback after a commit that succeeded, a rollback
on every other return, a ping only for a connection that sat idle.

The pool is driven through SQLAlchemy as the services drive it, over SQLite connections
wrapped to count what the pool asks of them (a server behaves the same here: these are
the pool's own calls)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from blockmgr.db import session as db_session


class CountingConnection:
    """A sqlite3 connection that counts rollbacks and pings, and can fail its commits."""

    def __init__(self, path):
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self.rollbacks = 0
        self.pings = 0
        self.fail_commit = False

    def rollback(self):
        self.rollbacks += 1
        self._conn.rollback()

    def commit(self):
        if self.fail_commit:
            self.fail_commit = False
            raise sqlite3.OperationalError("disk I/O error")
        self._conn.commit()

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    connections = []

    def connect():
        connection = CountingConnection(str(tmp_path / "pool.sqlite"))
        connections.append(connection)
        return connection

    engine = sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.QueuePool,
                              pool_size=1, max_overflow=0, pool_pre_ping=True)

    def ping(dbapi_con):
        dbapi_con.pings += 1
        dbapi_con.execute("SELECT 1")
        return True

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    db_session.trim_pool_round_trips(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    engine.connections = connections
    yield engine
    engine.dispose()


def _rows(engine) -> list:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT v FROM t ORDER BY v")]


def test_a_committed_transaction_is_not_rolled_back_on_return(engine):
    dbapi = engine.connections[0]
    before = dbapi.rollbacks
    for value in range(5):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (%d)" % value)
    assert dbapi.rollbacks == before
    assert _rows(engine) == [0, 1, 2, 3, 4]


def test_a_read_and_a_failed_transaction_are_rolled_back(engine):
    dbapi = engine.connections[0]
    before = dbapi.rollbacks
    _rows(engine)
    assert dbapi.rollbacks == before + 1
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (7)")
            raise RuntimeError("refused")
    assert dbapi.rollbacks >= before + 2
    assert _rows(engine) == []


def test_a_raw_connection_returned_mid_transaction_is_rolled_back(engine):
    raw = engine.raw_connection()
    raw.cursor().execute("INSERT INTO t (v) VALUES (1)")
    raw.close()   # no commit: the pool must undo it
    assert _rows(engine) == []


def test_a_commit_that_failed_is_rolled_back_on_return(engine):
    dbapi = engine.connections[0]
    dbapi.fail_commit = True
    before = dbapi.rollbacks
    with pytest.raises(sa.exc.OperationalError):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t (v) VALUES (9)")
    assert dbapi.rollbacks > before
    assert _rows(engine) == []
    # A commit after that is skipped again.
    after = dbapi.rollbacks
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (v) VALUES (10)")
    assert dbapi.rollbacks == after


def test_only_an_idle_connection_is_pinged(engine, monkeypatch):
    dbapi = engine.connections[0]
    for _ in range(5):
        _rows(engine)
    assert dbapi.pings == 0
    monkeypatch.setattr(db_session, "PING_IDLE_AFTER_S", 0.0)
    _rows(engine)
    assert dbapi.pings == 1


def test_an_idle_connection_that_fails_its_ping_is_replaced(engine, monkeypatch):
    monkeypatch.setattr(db_session, "PING_IDLE_AFTER_S", 0.0)
    engine.connections[0]._conn.close()   # the server dropped it
    assert _rows(engine) == []
    assert len(engine.connections) == 2
