"""Engine and session setup through oslo.db's enginefacade, one facade per :class:`Database`.

No module global: every service, test and tool builds its own ``Database`` from the config it
was given (or from a URL). A transaction is short and owned by the caller::

    with db.writer() as session:   # commits on exit, rolls back on exception
        repository.get_volume(session, volume_id)

SQLite is configured for a multi-threaded service: WAL journal, ``synchronous=NORMAL``,
foreign keys on, a 30 s busy timeout, and every *writer* transaction opened with
``BEGIN IMMEDIATE``. SQLite allows one writer at a time anyway; taking the write lock at BEGIN
turns the read-then-write races that would otherwise fail with "database is locked" into plain
waits, which is what makes quota reservation atomic there. The price is that SQLite writer
transactions run one at a time. Reader transactions (:meth:`Database.reader`) open with a
plain (deferred) ``BEGIN``: under WAL they read one consistent snapshot -- the last commit
before their first read -- without taking or waiting for the write lock, as readers do on
MariaDB and PostgreSQL; nothing a reader changes is ever committed. SQLite is the
embedded/all-in-one and unit-test database, production uses MariaDB or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import types
from typing import Iterator

import sqlalchemy
from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_S = 30
#: Execution option marking a connection used by :meth:`Database.reader` (SQLite: no write
#: lock at BEGIN).
READ_ONLY_OPTION = "blockmgr_read_only"


def _pool_sqlite_file(engine: sqlalchemy.engine.Engine) -> None:
    """Replace the NullPool oslo.db forces on SQLite files with a QueuePool.

    NullPool reconnects, re-runs the pragmas and checkpoints the WAL on every transaction
    (~3.5 ms each here). The new pool keeps the old one's creator, dialect and event
    dispatch (so every connect listener still runs), as ``Pool.recreate`` does.
    """
    old = engine.pool
    if not isinstance(old, sqlalchemy.pool.NullPool):
        return
    engine.pool = sqlalchemy.pool.QueuePool(
        old._creator, pool_size=5, max_overflow=10, timeout=SQLITE_BUSY_TIMEOUT_S,
        recycle=old._recycle, pre_ping=old._pre_ping, reset_on_return=old._reset_on_return,
        dialect=old._dialect, _dispatch=old.dispatch)
    old.dispose()


#: Seconds a pooled server connection may sit idle and still be used without a ping first.
PING_IDLE_AFTER_S = 1.0
_IDLE_SINCE = "blockmgr_idle_since"
_ENDED = "blockmgr_transaction_ended"


def trim_pool_round_trips(engine: sqlalchemy.engine.Engine) -> None:
    """Drop the two round trips SQLAlchemy's pool adds around every short transaction on a
    server database, keeping what each is for.

    * **The ping on checkout** (``pool_pre_ping``, which oslo.db always turns on) finds
      connections the server dropped (a restart, ``wait_timeout``). A busy worker checks a
      connection out four times per request, each within milliseconds of its last use,
      when a drop is as likely as during the transaction itself. The ping is kept for a
      connection idle longer than :data:`PING_IDLE_AFTER_S`; one found dead on any other
      checkout fails its transaction as a connection lost mid-transaction does, and
      SQLAlchemy then invalidates the whole pool, so only that transaction sees it.
    * **The rollback on return**: SQLAlchemy rolls a connection back when it goes back to
      the pool unless the transaction was still open when it was closed, so every
      committed transaction is followed by a ``ROLLBACK`` with nothing to undo. It is
      skipped after a commit that succeeded; any other return (an error, a read, a commit
      that failed) is rolled back as before.
    """
    pool = engine.pool
    # Both are pool settings oslo.db passes no option for; the listeners below do their
    # work on the conditions above.
    pool._pre_ping = False
    pool._reset_on_return = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _began(conn):
        conn.connection.info.pop(_ENDED, None)

    @sqlalchemy.event.listens_for(engine, "commit")
    def _committing(conn):
        conn.connection.info[_ENDED] = True

    @sqlalchemy.event.listens_for(engine, "handle_error")
    def _failed(context):
        conn = context.connection
        if conn is not None and not conn.invalidated and conn._dbapi_connection is not None:
            conn.connection.info.pop(_ENDED, None)

    @sqlalchemy.event.listens_for(pool, "reset")
    def _reset(dbapi_con, record, state):
        ended = record.info.pop(_ENDED, False) if record is not None else False
        if state.terminate_only or state.transaction_was_reset or ended:
            return
        dbapi_con.rollback()

    @sqlalchemy.event.listens_for(pool, "checkin")
    def _idle_from(_dbapi_con, record):
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    dialect = engine.dialect

    @sqlalchemy.event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_con, record, _proxy):
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since <= PING_IDLE_AFTER_S:
            return
        try:
            dialect.do_ping(dbapi_con)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise sqlalchemy.exc.DisconnectionError(
                "pooled connection failed its ping: %s" % exc) from exc


def _prepare_sqlite(engine: sqlalchemy.engine.Engine) -> None:
    if engine.url.database not in (None, "", ":memory:"):
        _pool_sqlite_file(engine)

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(dbapi_con, _record):
        dbapi_con.execute("PRAGMA busy_timeout = %d" % (SQLITE_BUSY_TIMEOUT_S * 1000))
        if engine.url.database not in (None, "", ":memory:"):
            dbapi_con.execute("PRAGMA journal_mode = WAL")
        dbapi_con.execute("PRAGMA synchronous = NORMAL")
        dbapi_con.execute("PRAGMA foreign_keys = ON")

    # Replaces oslo.db's listener, which emits a plain (deferred) BEGIN: ``insert=True`` does
    # not put a listener ahead of it, so it used to run first and BEGIN IMMEDIATE never ran.
    for listener in list(engine.dispatch.begin):
        if getattr(listener, "__name__", "") == "_sqlite_emit_begin":
            sqlalchemy.event.remove(engine, "begin", listener)

    @sqlalchemy.event.listens_for(engine, "begin", insert=True)
    def _begin(conn):
        if "in_transaction" not in conn.info:
            if conn.get_execution_options().get(READ_ONLY_OPTION):
                _emit_begin(conn, "BEGIN")
            else:
                _emit_begin(conn, "BEGIN IMMEDIATE")
            conn.info["in_transaction"] = True


def _emit_begin(conn: sqlalchemy.engine.Connection, statement: str) -> None:
    """Run ``statement`` on the driver connection directly.

    A BEGIN has no parameters and no result, yet through ``exec_driver_sql`` it costs a
    whole SQLAlchemy execution (events, cursor, result set-up: ~0.1 ms, a quarter of a
    short transaction). If the driver refuses (e.g. still locked after the busy timeout),
    the statement is run once more through SQLAlchemy, so what is raised is translated like
    every other database error (oslo.db's ``DBError`` family).
    """
    try:
        conn.connection.driver_connection.execute(statement)
    except sqlite3.Error:
        conn.exec_driver_sql(statement)


def preferred_mysql_driver() -> str:
    """The SQLAlchemy driver name to put in a MariaDB/MySQL URL on this machine.

    ``mysqldb`` (mysqlclient, the ``[mysql]`` extra: a C client) when it is installed,
    else ``pymysql`` (pure Python, always installed). With the C client the volume daemon
    measured up to a fifth less CPU per request and ~13 MiB less memory
    (``docs/benchmarks.md``); PyMySQL needs no compiler or client library. For tools that build server URLs (tests, benchmarks); a
    configured ``[database] connection`` is always used as written.
    """
    import importlib.util
    return "mysqldb" if importlib.util.find_spec("MySQLdb") is not None else "pymysql"


class Database:
    """One database: its engine, and short transactions on it."""

    def __init__(self, connection: str, **facade_options):
        self.url = connection
        self._sqlite = connection.startswith("sqlite")
        self._facade = enginefacade.transaction_context()
        # thread_checkin=False: oslo.db otherwise calls time.sleep(0) on every connection
        # check-in to let eventlet green threads run. blockmgr uses native threads, where that
        # sleep hands the GIL away for up to a switch interval (5 ms) on a busy process.
        options = {"connection": connection, "sqlite_fk": True, "thread_checkin": False}
        if connection.startswith("sqlite"):
            # One pooled connection set per process; the default for files is NullPool,
            # which reconnects (and re-runs the pragmas) on every transaction.
            options.setdefault("connection_recycle_time", 3600)
        options.update(facade_options)
        self._facade.configure(**options)
        if connection.startswith("sqlite"):
            self._facade.append_on_engine_create(_prepare_sqlite)
        else:
            self._facade.append_on_engine_create(trim_pool_round_trips)

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts, **overrides) -> "Database":
        """``overrides``: facade options replacing the ``[database]`` ones (e.g. a daemon's
        ``max_pool_size`` sized to its worker threads)."""
        db = conf.database
        url = db.connection
        if url.startswith("sqlite:///"):  # relative (sqlite:///x) and absolute (sqlite:////x)
            path = url[len("sqlite:///"):].split("?", 1)[0]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        options = dict(max_pool_size=db.max_pool_size, max_overflow=db.max_overflow,
                       pool_timeout=db.pool_timeout, max_retries=db.max_retries,
                       retry_interval=db.retry_interval, connection_debug=db.connection_debug,
                       connection_recycle_time=db.connection_recycle_time,
                       mysql_sql_mode=db.mysql_sql_mode)
        options.update(overrides)
        return cls(url, **options)

    @property
    def engine(self) -> sqlalchemy.engine.Engine:
        return self._facade.writer.get_engine()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def writer(self) -> Iterator[Session]:
        """A read-write transaction: committed on normal exit, rolled back on error."""
        with self._facade.writer.using(types.SimpleNamespace()) as session:
            yield session

    @contextlib.contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only transaction; nothing it changes is committed."""
        with self._facade.reader.using(types.SimpleNamespace()) as session:
            if self._sqlite:
                session.connection(execution_options={READ_ONLY_OPTION: True})
            yield session

    @contextlib.contextmanager
    def read_connection(self) -> Iterator[sqlalchemy.engine.Connection]:
        """A read-only transaction on a Core connection, for reads that build no ORM object
        (``repository.get_columns``): about half the CPU of a :meth:`reader` session, which
        costs as much again as a one-row SELECT. Nothing it changes is committed."""
        with self.engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(**{READ_ONLY_OPTION: True})
            yield conn

    def create_schema(self) -> None:
        """Create every table from the models (unit tests only; services use migrations)."""
        from blockmgr.db import models
        models.Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self._facade.dispose_pool()
