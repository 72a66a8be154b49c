"""The request ledger (blockmgr.ledger, blockmgr.db.requests): one winner per claim, claims
that expire, settling every outcome, and the volume backend's view of a request taken over
after a crash (blockmgr.volume.ledger_hooks)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from oslo_db import exception as db_exc

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger
from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.notifications import MemoryNotifier
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import ledger_hooks
from blockmgr.volume import recovery
from blockmgr.volume.manager import VolumeManager

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")
HOST = "node1@fake"


@pytest.fixture
def db(conf, sqlite_database):
    conf.set_override("retry_delay", 0.0, group="requests")
    conf.set_override("max_attempts", 2, group="requests")
    return sqlite_database


def _volume(db, status="creating", size=1):
    with db.writer() as session:
        return repository.create(session, models.Volume, status=status, size=size,
                                 host=HOST + "#fake", project_id="p1").id


def _add(db, resource_id, target=HOST, action="create_volume"):
    with db.writer() as session:
        return db_requests.add(session, kind="volume", resource_id=resource_id,
                               action=action, arguments={"volume_id": resource_id},
                               context=CTX.to_dict(), target=target)


def _row(db, request_id):
    with db.reader() as session:
        return db_requests.get(session, request_id)


def _ledger(conf, db, hooks=None, prefix=HOST):
    return ledger.Ledger(db, conf, owner_prefix=prefix, targets=[HOST], hooks=hooks)


# --- claims ---------------------------------------------------------------------------------

def test_exactly_one_claimant_wins(db):
    rid = _add(db, _volume(db))
    with db.writer() as session:
        first = db_requests.claim(session, rid, "a/1", 30)
        second = db_requests.claim(session, rid, "b/1", 30)
    assert first is not None and first.attempts == 1 and first.arguments["volume_id"]
    assert second is None
    assert _row(db, rid).claimed_by == "a/1"


def test_an_expired_claim_is_taken_over_and_counted(db):
    rid = _add(db, _volume(db))
    with db.writer() as session:
        assert db_requests.claim(session, rid, "a/1", 30)
        session.execute(models.Request.__table__.update().values(
            claim_expires_at=models.utcnow() - dt.timedelta(seconds=1)))
        taken = db_requests.claim(session, rid, "b/1", 30)
    assert taken is not None and taken.attempts == 2


def test_a_claim_is_only_for_the_targets_given(db):
    rid = _add(db, _volume(db), target="other@lvm")
    with db.writer() as session:
        assert db_requests.claim(session, rid, "a/1", 30, targets=[HOST]) is None
        assert db_requests.claimable(session, [HOST], 10) == []


def test_finished_requests_are_never_claimed_again(db):
    rid = _add(db, _volume(db))
    with db.writer() as session:
        assert db_requests.claim(session, rid, "a/1", 30)
        assert db_requests.finish(session, rid, "a/1")
        assert db_requests.claim(session, rid, "a/1", 30) is None


def test_a_restart_takes_back_only_its_own_predecessors_claims(db):
    mine, theirs = _add(db, _volume(db)), _add(db, _volume(db))
    with db.writer() as session:
        db_requests.claim(session, mine, HOST + "/old", 3600)
        db_requests.claim(session, theirs, "node2@fake/live", 3600)
        assert db_requests.release_previous_claims(session, [HOST], HOST + "/",
                                                   HOST + "/new") == 1
    assert _row(db, mine).state == "pending" and _row(db, theirs).state == "claimed"


def test_a_prefix_with_like_wildcards_matches_only_itself(db):
    rid = _add(db, _volume(db))
    with db.writer() as session:
        db_requests.claim(session, rid, "nodeX1@fake/old", 3600)
        assert db_requests.release_previous_claims(session, [HOST], "node_1@fake/",
                                                   "node_1@fake/new") == 0


# --- running and settling -------------------------------------------------------------------

def test_a_run_marks_the_request_done_and_a_second_run_does_nothing(conf, db):
    rid = _add(db, _volume(db))
    book = _ledger(conf, db)
    calls = []
    assert book.run(rid, lambda: calls.append(ledger.current_id()) or "ok") == "ok"
    assert book.run(rid, lambda: calls.append("again")) is None
    assert calls == [rid]
    row = _row(db, rid)
    assert row.state == "done" and row.finished_at is not None


def test_a_clean_failure_is_done_with_its_reason(conf, db):
    rid = _add(db, _volume(db))

    class Settled(ledger.RequestHooks):
        def unsettled(self, row, error):
            return False

    def fail():
        raise exception.InvalidVolume(reason="no longer creating")

    with pytest.raises(exception.InvalidVolume):
        _ledger(conf, db, Settled()).run(rid, fail)
    row = _row(db, rid)
    assert row.state == "done" and "no longer creating" in row.result


def test_an_unsettled_run_is_tried_again_then_settled_as_failed(conf, db):
    """A lost database connection ends the run without settling anything: the request
    goes back to pending (claimable after retry_delay); once out of attempts the resource
    gets its error status with the cause and the request is failed."""
    vid = _volume(db, status="extending")
    rid = _add(db, vid, action="extend_volume")
    settled = []

    class Hooks(ledger.RequestHooks):
        def settle_failed(self, row, reason):
            settled.append((row.id, reason))

    def lose_connection():
        raise db_exc.DBConnectionError("server has gone away")

    book = _ledger(conf, db, Hooks())
    with pytest.raises(db_exc.DBConnectionError):
        book.run(rid, lose_connection)
    row = _row(db, rid)
    assert (row.state, row.attempts) == ("pending", 1) and "gone away" in row.result
    with pytest.raises(db_exc.DBConnectionError):
        book.run(rid, lose_connection)
    row = _row(db, rid)
    assert row.state == "failed" and settled == [(rid, row.result)]


def test_stop_refuses_new_claims_and_release_gives_back_what_is_not_running(conf, db):
    a, b = _add(db, _volume(db)), _add(db, _volume(db))
    book = _ledger(conf, db)
    with db.writer() as session:
        db_requests.claim(session, b, book.owner, 3600)   # claimed, never started
    book.stop()
    assert book.run(a, lambda: "ran") is None
    assert book.release() == 1
    assert _row(db, a).state == "pending" and _row(db, b).state == "pending"


def test_hand_off_passes_the_request_to_its_backend_in_the_callers_transaction(conf, db):
    vid = _volume(db)
    rid = _add(db, vid, target="scheduler")
    book = ledger.Ledger(db, conf, owner_prefix="scheduler:s1", targets=["scheduler"])

    def place():
        with db.writer() as session:
            assert ledger.hand_off(session, HOST, "create_volume", {"volume_id": vid}) == rid

    book.run(rid, place)
    row = _row(db, rid)
    assert (row.state, row.target, row.claimed_by, row.attempts) == ("pending", HOST, None, 0)


def test_hand_off_outside_a_request_records_nothing(db):
    with db.writer() as session:
        assert ledger.hand_off(session, HOST, "create_volume", {}) is None


def test_a_follow_up_request_is_recorded_once(conf, db):
    vid = _volume(db)
    rid = _add(db, vid)
    ids = []

    def reschedule_twice():
        for _ in range(2):
            ids.append(ledger.follow_up(db, CTX, target="scheduler", action="create_volume",
                                        arguments={"volume_id": vid}))

    _ledger(conf, db).run(rid, reschedule_twice)
    assert ids[0] == ids[1] and ids[0] != rid
    assert _row(db, ids[0]).target == "scheduler" and _row(db, ids[0]).state == "pending"


def test_sweep_rings_what_may_be_claimed_and_prunes_old_finished_requests(conf, db):
    conf.set_override("finished_retention", 60, group="requests")
    pending, old = _add(db, _volume(db)), _add(db, _volume(db))
    with db.writer() as session:
        db_requests.claim(session, old, "x/1", 30)
        db_requests.finish(session, old, "x/1")
        session.execute(models.Request.__table__.update().where(
            models.Request.id == old).values(
            finished_at=models.utcnow() - dt.timedelta(seconds=120)))
    rung = []
    book = _ledger(conf, db)
    assert book.sweep(rung.append) == 1
    assert [r.id for r in rung] == [pending]
    assert _row(db, old) is None
    assert book.sweep(rung.append, idle=lambda: False) == 0   # a busy process rings nothing


def test_a_periodic_sweep_leaves_a_fresh_request_to_its_message(conf, db):
    """A request recorded moments ago has its cast on the way: a periodic sweep (quiet for
    an interval) does not ring it; once it stayed unchanged that long, or when it was given
    back by a process that stopped or failed an attempt, it is rung."""
    fresh, quiet, given_back, retried = (_add(db, _volume(db)) for _ in range(4))
    table = models.Request.__table__
    with db.writer() as session:
        session.execute(table.update().where(models.Request.id == quiet).values(
            updated_at=models.utcnow() - dt.timedelta(seconds=11)))
        db_requests.claim(session, given_back, "w/1", 30)
        db_requests.release_all(session, "w/1")
        db_requests.claim(session, retried, "w/1", 30)
        db_requests.release(session, retried, "w/1", models.utcnow(), "lost connection")
    rung = []
    assert _ledger(conf, db).sweep(rung.append, quiet_for=10.0) == 3
    assert {r.id for r in rung} == {quiet, given_back, retried}
    rung.clear()
    assert _ledger(conf, db).sweep(rung.append) == 4   # at start: everything claimable
    assert fresh in {r.id for r in rung}


# --- a volume backend's requests taken over after a crash -----------------------------------

@pytest.fixture
def manager(conf, db):
    conf.set_override("persistence_connection", "memory", group="flows")
    conf.set_override("finished_flow_retention", -1, group="flows")   # keep finished flows
    return VolumeManager(conf, "fake", db=db, driver=FakeDriver(None, "fake", host=HOST),
                         quota=bm_quota.QuotaEngine(db, conf), notifier=MemoryNotifier(),
                         host=HOST)


def _claimed(db, request_id, owner="w/2"):
    with db.writer() as session:
        session.execute(models.Request.__table__.update().where(
            models.Request.id == request_id).values(
            attempts=1, state="pending", claimed_by=None, claim_expires_at=None))
        return db_requests.claim(session, request_id, owner, 30)


def test_precheck_runs_a_request_whose_flow_never_started(manager, db):
    rid = _add(db, _volume(db))
    hooks = ledger_hooks.BackendRequestHooks(manager)
    assert hooks.precheck(_claimed(db, rid)) == ledger.RUN


def test_precheck_finds_a_request_whose_flow_finished_done(manager, db):
    vid = _volume(db)
    rid = _add(db, vid)
    book = ledger.Ledger(db, manager.conf, owner_prefix=HOST, targets=[HOST],
                         hooks=ledger_hooks.BackendRequestHooks(manager))
    with db.writer() as session:
        db_requests.claim(session, rid, book.owner, 30)
    token = ledger._current.set(ledger.Served(_row_view(db, rid), book))
    try:
        manager.create_volume(CTX, vid)          # the flow, keyed by the request id
    finally:
        ledger._current.reset(token)
    hooks = ledger_hooks.BackendRequestHooks(manager)
    assert hooks._flow_state(rid) == "SUCCESS"
    assert hooks.precheck(_claimed(db, rid)) == ledger.DONE


def _row_view(db, request_id):
    with db.reader() as session:
        return db_requests.RequestRow.from_row(db_requests.get(session, request_id))


def test_precheck_finds_a_request_superseded_by_a_newer_one_done(manager, db):
    vid = _volume(db)
    old = _add(db, vid)
    with db.writer() as session:
        session.execute(models.Request.__table__.update().values(
            created_at=models.utcnow() - dt.timedelta(seconds=5)))
    _add(db, vid, action="delete_volume")
    hooks = ledger_hooks.BackendRequestHooks(manager)
    assert hooks.precheck(_claimed(db, old)) == ledger.DONE


def test_settling_a_failed_extend_releases_every_reservation_it_held(manager, db):
    """What stranded volumes in ``extending``: the request's flow-owned reservation and the
    API's request-owned one are both released with the error status."""
    vid = _volume(db, status="extending", size=1)
    rid = _add(db, vid, action="extend_volume")
    manager.quota.reserve("p1", gigabytes=2, owner=rid)
    api_owner = bm_quota.request_owner("volume", vid, "extending")
    manager.quota.reserve("p1", gigabytes=2, owner=api_owner)
    assert recovery.settle_failed(db, manager.quota, "volume", vid, rid,
                                  "OperationalError: lost connection") == "error_extending"
    assert manager.quota.reservations_of(rid) == []
    assert manager.quota.reservations_of(api_owner) == []
    with db.reader() as session:
        row = repository.get(session, models.Volume, vid)
        assert row.status == "error_extending" and "lost connection" in row.status_reason


def test_an_extend_whose_revert_lost_its_connection_is_settled_with_its_reservations(
        conf, sqlite_database, monkeypatch):
    """What stranded volumes in ``extending``: the driver failed, then the flow's revert
    lost its database connection (the flow ends without settling, nothing in ``flow
    list``). The request is tried again; its flow cannot be finished, so it is settled:
    ``error_extending`` with the cause, the API's and the flow's reservations released."""
    from blockmgr.flows import extend_volume
    from tests.unit.flows.test_delete_volume import build_env, make_volume, set_status

    conf.set_override("retry_delay", 0.0, group="requests")
    env = build_env(sqlite_database, conf)
    vid = make_volume(env, size=2)
    set_status(env, models.Volume, vid, "extending", previous_status="available")
    api_owner = bm_quota.request_owner("volume", vid, "extending")
    uuids = env.quota.reserve(_project_of(env, vid), gigabytes=3,
                              owner=api_owner)
    rid = _add(sqlite_database, vid, target=env.host, action="extend_volume")
    env.driver.inject_failure("extend_volume",
                              exception.VolumeBackendAPIException(reason="array said no"))

    def lost(*args, **kwargs):
        raise db_exc.DBConnectionError("Lost connection to server during query")

    monkeypatch.setattr(extend_volume.ExtractVolumeTask, "revert", lost)
    book = ledger.Ledger(sqlite_database, conf, owner_prefix=env.host, targets=[env.host],
                         hooks=ledger_hooks.BackendRequestHooks(env))
    with pytest.raises(Exception):
        book.run(rid, lambda: env.extend_volume(CTX, vid, 5, reservations=uuids))
    assert _row(sqlite_database, rid).state == "pending"   # not settled: tried again
    with sqlite_database.reader() as session:
        assert repository.get(session, models.Volume, vid).status == "extending"
    monkeypatch.undo()
    assert book.run(rid, lambda: pytest.fail("the flow must not run twice")) is None
    assert _row(sqlite_database, rid).state == "failed"
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Volume, vid)
    assert row.status == "error_extending" and row.size == 2
    assert env.quota.reservations_of(api_owner) == [] and env.quota.reservations_of(rid) == []


def _project_of(env, volume_id):
    with env.db.reader() as session:
        return repository.get(session, models.Volume, volume_id).project_id


def test_a_detach_settled_as_failed_leaves_its_attachment_error_detaching(manager, db):
    """A detach request out of attempts: the attachment is ``error_detaching`` (still
    connected; a detach may be asked again) and the volume ``in-use``, not ``detaching``
    for ever."""
    vid = _volume(db, status="available")
    with db.writer() as session:
        attachment = repository.create(session, models.Attachment, volume_id=vid,
                                       project_id="p1", attach_status="attached",
                                       instance_uuid=str(uuid.uuid4()))
        aid = attachment.id
        volume = repository.get(session, models.Volume, vid)
        repository.update(session, volume, status="in-use", attach_status="attached")
    with db.writer() as session:
        repository.update(session, repository.get(session, models.Attachment, aid),
                          attach_status="detaching")
        repository.update(session, repository.get(session, models.Volume, vid),
                          status="detaching", attach_status="detaching")
    rid = _add(db, vid, action="detach_volume")
    with db.writer() as session:
        session.execute(models.Request.__table__.update().where(
            models.Request.id == rid).values(
            arguments='{"volume_id": "%s", "attachment_id": "%s", "force": false}'
            % (vid, aid)))
    row = _claimed(db, rid)
    ledger_hooks.BackendRequestHooks(manager).settle_failed(row, "lost connection")
    with db.reader() as session:
        assert repository.get(session, models.Attachment, aid).attach_status == \
            "error_detaching"
        assert repository.get(session, models.Volume, vid).status == "in-use"


def test_duplicate_creates_refused_by_the_flow_do_not_inflate_allocated_capacity(manager, db):
    """Three casts of one create (a message without a request id, as an older client
    sends): the flow refuses the two duplicates; allocated capacity stays 5 GiB, not 15."""
    vid = _volume(db, size=5)
    manager.create_volume(CTX, vid)
    for _ in range(2):
        with pytest.raises(exception.BlockmgrError):
            manager.create_volume(CTX, vid)
    assert sum(manager.capacity.snapshot().values()) == 5
