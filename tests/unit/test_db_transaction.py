"""The one transaction-with-retry rule (blockmgr.db.transaction)."""

import contextlib

import pytest
import sqlalchemy as sa
from oslo_db import exception as db_exc

from blockmgr.db import transaction


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(transaction.time, "sleep", lambda seconds: None)


class _Flaky:
    """``work`` that fails with ``errors`` (one per attempt) and then returns "done"."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.begun = self.calls = 0

    @contextlib.contextmanager
    def begin(self):
        self.begun += 1
        yield "tx"

    def __call__(self, tx):
        assert tx == "tx"
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _mysql_deadlock():
    return sa.exc.OperationalError("UPDATE", {}, Exception(1213, "Deadlock found"))


def test_deadlocks_and_lost_connections_run_the_whole_transaction_again():
    work = _Flaky(db_exc.DBDeadlock(), db_exc.DBConnectionError(), _mysql_deadlock())
    assert transaction.run(work.begin, work) == "done"
    assert work.calls == work.begun == 4


def test_a_duplicate_is_retried_only_when_the_caller_asks():
    work = _Flaky(db_exc.DBDuplicateEntry())
    with pytest.raises(db_exc.DBDuplicateEntry):
        transaction.run(work.begin, work)
    work = _Flaky(db_exc.DBDuplicateEntry())
    assert transaction.run(work.begin, work, duplicate=True) == "done"


def test_a_lost_connection_is_left_to_callers_that_say_so():
    work = _Flaky(db_exc.DBConnectionError())
    with pytest.raises(db_exc.DBConnectionError):
        transaction.run(work.begin, work, connection=False)
    assert work.calls == 1


def test_other_errors_and_the_last_attempt_raise_unchanged():
    work = _Flaky(ValueError("bug"))
    with pytest.raises(ValueError):
        transaction.run(work.begin, work)
    assert work.calls == 1
    work = _Flaky(*[db_exc.DBDeadlock()] * 3)
    with pytest.raises(db_exc.DBDeadlock):
        transaction.run(work.begin, work, attempts=3)
    assert work.calls == 3


def test_a_postgresql_deadlock_is_recognised_unwrapped():
    class Orig(Exception):
        pgcode = "40P01"

    assert transaction.is_deadlock(sa.exc.OperationalError("UPDATE", {}, Orig()))
    assert not transaction.is_deadlock(sa.exc.OperationalError("UPDATE", {}, Exception(1)))
