"""Running a database transaction again when the server could not complete it.

The one rule for every short transaction blockmgr owns (the quota engine's, the flow
logbook's writes): when the database picks the transaction as a deadlock victim or the
connection is lost before it commits, the transaction is rolled back as a whole, so running
``work`` again from the start is safe -- provided ``work`` is, which callers guarantee (it
reads what it needs inside the transaction and has no effect outside it). A transaction that
*joins* a caller's (a ``session=`` argument) is never retried here: its owner retries the
whole of it.

Retried:

* oslo.db's ``DBDeadlock`` and ``DBConnectionError`` (engines oslo.db wraps: the service
  database), and a raw SQLAlchemy ``OperationalError`` that is a deadlock (MySQL/MariaDB error
  1213, PostgreSQL SQLSTATE 40P01: engines oslo.db does not wrap, such as a separate logbook
  database). ``connection=False`` leaves lost connections to the caller, for work whose
  commit could have happened just before the connection dropped and which must not run twice.
* ``DBDuplicateEntry`` only where the caller asks (``duplicate=True``): work that creates a
  row another transaction may create first, and finds it on the next attempt.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, ContextManager, TypeVar

import sqlalchemy as sa
from oslo_db import exception as db_exc

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: Default number of attempts (the first run included).
ATTEMPTS = 8


def is_deadlock(exc: BaseException) -> bool:
    """True for oslo.db's ``DBDeadlock`` and for an unwrapped SQLAlchemy deadlock error."""
    if isinstance(exc, db_exc.DBDeadlock):
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None) or (None,)
    code = args[0]
    return code == 1213 or getattr(orig, "pgcode", None) == "40P01"


def is_retriable(exc: BaseException, *, duplicate: bool = False,
                 connection: bool = True) -> bool:
    """Whether a transaction that failed with ``exc`` may be run again (module docstring)."""
    if is_deadlock(exc):
        return True
    if connection and isinstance(exc, db_exc.DBConnectionError):
        return True
    return duplicate and isinstance(exc, db_exc.DBDuplicateEntry)


def run(begin: Callable[[], ContextManager], work: Callable[..., T], *,
        attempts: int = ATTEMPTS, duplicate: bool = False, connection: bool = True,
        what: str = "transaction") -> T:
    """``work(tx)`` inside ``with begin() as tx``, run again as a whole while it fails with
    a retriable error (:func:`is_retriable`), at most ``attempts`` times in all.

    ``begin`` opens the transaction: ``Database.writer`` (an ORM session), ``engine.begin``
    (a Core connection). Between attempts a short random pause (up to 5 ms times the attempt
    number) lets the competing transaction finish. The last error is raised unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            with begin() as tx:
                return work(tx)
        except Exception as exc:
            if attempt == attempts or not is_retriable(exc, duplicate=duplicate,
                                                       connection=connection):
                raise
            LOG.debug("%s attempt %d lost a race (%s); retrying", what, attempt,
                      type(exc).__name__)
            time.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")


def run_in_transaction(db, work: Callable[..., T], *, duplicate: bool = False,
                       attempts: int = ATTEMPTS, what: str = "transaction") -> T:
    """``work(session)`` in a new writer transaction of ``db`` (a
    :class:`~blockmgr.db.session.Database`), retried as :func:`run` says."""
    return run(db.writer, work, attempts=attempts, duplicate=duplicate, what=what)


#: Valid before a MySQL/MariaDB transaction starts (it applies to the next one only) and as
#: the first statement of a PostgreSQL one (the driver has just sent BEGIN).
READ_COMMITTED_NEXT = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"


def read_committed(conn) -> None:
    """Make the transaction ``conn`` is about to run (no statement yet) READ COMMITTED on
    MySQL/MariaDB and PostgreSQL (SQLite has one level).

    For short writes that delete by a non-unique key (a flow's logbook rows): at REPEATABLE
    READ InnoDB takes next-key locks there, which deadlock with other flows' inserts. One
    statement; an isolation option on the connection would cost a SET plus a COMMIT when
    it is checked out and again when it is returned.

    It is sent on the driver's own cursor: a statement with no parameters and no result
    does not need SQLAlchemy's execution path, which costs several times its round trip.
    If the driver refuses, the statement is run once more through SQLAlchemy, so what is
    raised is translated like every other database error (oslo.db's ``DBError`` family).
    """
    if conn.dialect.name == "sqlite":
        return
    try:
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(READ_COMMITTED_NEXT)
        finally:
            cursor.close()
    except conn.dialect.loaded_dbapi.Error:
        conn.exec_driver_sql(READ_COMMITTED_NEXT)
