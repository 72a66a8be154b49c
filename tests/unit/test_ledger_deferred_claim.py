"""A create's first claim written with its flow's first write (``blockmgr.ledger``,
``Ledger.defer_first_claims``): one commit fewer per request, and still one winner, nothing
written by a run that did not win, and every outcome settled.

On MariaDB and PostgreSQL: the deferral needs the flow logbook in the service database's
own pool (on SQLite the logbook has a pool of its own)."""

from __future__ import annotations

import threading

import oslo_messaging
import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger
from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.db.session import Database
from blockmgr.flows import persistence
from blockmgr.notifications import MemoryNotifier
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import endpoint
from blockmgr.volume import ledger_hooks
from blockmgr.volume.manager import VolumeManager
from tests.conftest import create_database

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")
HOST = "node1@fake"


@pytest.fixture(params=["mysql", "postgresql"])
def env(request, conf, tmp_path):
    url, drop = create_database(request.param, tmp_path)
    db = Database(url)
    db.create_schema()
    conf.set_override("connection", url, group="database")
    conf.set_override("finished_flow_retention", 0, group="flows")
    conf.set_override("retry_delay", 0.0, group="requests")
    driver = FakeDriver(None, "fake", host=HOST)
    manager = VolumeManager(conf, "fake", db=db, driver=driver,
                            quota=bm_quota.QuotaEngine(db, conf), notifier=MemoryNotifier(),
                            host=HOST)
    assert manager.runner.backend.closes_flows
    book = ledger.Ledger(db, conf, owner_prefix=HOST, targets=[HOST],
                         hooks=ledger_hooks.BackendRequestHooks(manager))
    book.defer_first_claims = True
    served = endpoint.VolumeEndpoint(manager, capabilities=dict)
    served.ledger = book
    yield served
    db.dispose()
    drop()


def _volume(db, status="creating", host=HOST + "#fake"):
    with db.writer() as session:
        return repository.create(session, models.Volume, status=status, size=1, host=host,
                                 project_id="p1").id


def _request(db, volume_id):
    with db.writer() as session:
        return db_requests.add(session, kind="volume", resource_id=volume_id,
                               action="create_volume", arguments={"volume_id": volume_id},
                               context=CTX.to_dict(), target=HOST)


def _request_row(db, request_id):
    with db.reader() as session:
        return db_requests.get(session, request_id)


def _status(db, volume_id) -> str:
    with db.reader() as session:
        return repository.get(session, models.Volume, volume_id).status


def _flow_rows(db) -> int:
    """Flow details and atom details left in the logbook."""
    with db.engine.connect() as conn:
        return sum(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                   for table in (persistence.TABLES.flowdetails,
                                 persistence.TABLES.atomdetails))


def _create_counting_commits(env, volume_id, request_id) -> int:
    commits = []

    def count(_conn):
        commits.append(1)

    sa.event.listen(env.db.engine, "commit", count)
    try:
        assert env.create_volume(CTX, volume_id, request_id=request_id) == volume_id
    finally:
        sa.event.remove(env.db.engine, "commit", count)
    return len(commits)


def test_a_create_claims_its_request_in_its_first_write(env):
    db = env.db
    env.ledger.defer_first_claims = False
    first = _volume(db)
    claimed_apart = _create_counting_commits(env, first, _request(db, first))
    env.ledger.defer_first_claims = True
    vid = _volume(db)
    rid = _request(db, vid)
    assert _create_counting_commits(env, vid, rid) == claimed_apart - 1
    row = _request_row(db, rid)
    assert (row.state, row.attempts, row.claimed_by) == ("done", 1, env.ledger.owner)
    assert _status(db, vid) == "available"
    assert _flow_rows(db) == 0


def test_a_request_held_elsewhere_is_not_run_and_nothing_is_written(env):
    db = env.db
    vid = _volume(db)
    rid = _request(db, vid)
    with db.writer() as session:
        assert db_requests.claim(session, rid, "node2@fake/other", 60) is not None
    assert env.create_volume(CTX, vid, request_id=rid) is None
    assert not any(env.manager.capacity.snapshot().values())
    assert not [c for c in env.driver.calls if c.method == "create_volume"]
    assert _status(db, vid) == "creating"
    assert _flow_rows(db) == 0
    row = _request_row(db, rid)
    assert (row.state, row.claimed_by, row.attempts) == ("claimed", "node2@fake/other", 1)
    # The next create of this process starts clean (nothing of the abandoned flow is kept).
    other = _volume(db)
    assert env.create_volume(CTX, other, request_id=_request(db, other)) == other


def test_a_request_run_before_is_claimed_again_the_usual_way(env):
    """A request given back after an unsettled attempt (``attempts`` 1, pending) is no first
    claim: the deferred run stops at its first write, and the usual claim runs it."""
    db = env.db
    vid = _volume(db)
    rid = _request(db, vid)
    with db.writer() as session:
        session.execute(models.Request.__table__.update().where(
            models.Request.id == rid).values(attempts=1))
    assert env.create_volume(CTX, vid, request_id=rid) == vid
    row = _request_row(db, rid)
    assert (row.state, row.attempts) == ("done", 2)
    assert _status(db, vid) == "available"
    assert _flow_rows(db) == 0


def _refused(env, volume_id, request_id) -> Exception:
    with pytest.raises(oslo_messaging.ExpectedException) as raised:
        env.create_volume(CTX, volume_id, request_id=request_id)
    return raised.value.exc_info[1]


def test_a_create_refused_by_its_flow_before_the_first_write_is_settled(env):
    """The flow's first task (a read) refuses a volume no longer ``creating``: the request
    is claimed before the engine reverts anything, and settled."""
    db = env.db
    vid = _volume(db, status="available")
    rid = _request(db, vid)
    assert isinstance(_refused(env, vid, rid), exception.BlockmgrError)
    row = _request_row(db, rid)
    assert row.attempts == 1 and row.claimed_by in (None, env.ledger.owner)
    assert row.state == "done" and row.result
    assert _status(db, vid) == "available"
    assert _flow_rows(db) == 0


def test_a_create_refused_before_its_flow_records_its_attempt(env):
    """Refused before any flow (the volume is another backend's): the request is claimed
    to record the failure, as without the deferral."""
    db = env.db
    vid = _volume(db, host="node9@fake#fake")
    rid = _request(db, vid)
    assert "not on this backend" in str(_refused(env, vid, rid))
    row = _request_row(db, rid)
    assert row.attempts == 1 and "not on this backend" in row.result


def test_a_second_message_during_a_deferred_run_is_dropped(env, monkeypatch):
    """The same request rung again while this process runs it, before its flow's first
    write (nothing claimed in the database yet): the second message does nothing."""
    db = env.db
    vid = _volume(db)
    rid = _request(db, vid)
    seconds = []
    read_volume = env.manager._own_volume

    def read_then_ring_again(volume_id):
        ringer = threading.Thread(target=lambda: seconds.append(
            env.create_volume(CTX, vid, request_id=rid)))
        ringer.start()
        ringer.join(10)
        return read_volume(volume_id)

    monkeypatch.setattr(env.manager, "_own_volume", read_then_ring_again)
    assert env.create_volume(CTX, vid, request_id=rid) == vid
    assert seconds == [None]
    assert len([c for c in env.driver.calls if c.method == "create_volume"]) == 1
    assert _request_row(db, rid).state == "done"


def test_a_claim_this_process_left_behind_is_not_taken_for_a_first_claim(env):
    """A claim of this very process still live (an earlier run could not record its
    outcome): a new message is no first claim, even though the owner matches; the request
    waits for its claim to expire and its precheck, as without the deferral."""
    db = env.db
    vid = _volume(db)
    rid = _request(db, vid)
    with db.writer() as session:
        assert db_requests.claim(session, rid, env.ledger.owner, 60) is not None
    assert env.create_volume(CTX, vid, request_id=rid) is None
    assert not [c for c in env.driver.calls if c.method == "create_volume"]
    assert _status(db, vid) == "creating"
    assert _flow_rows(db) == 0
