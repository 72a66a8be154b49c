"""Unit tests of the quota engine on SQLite: every behaviour and every error path.

The same engine runs on MariaDB and PostgreSQL in ``tests/functional/test_quota_concurrency.py``.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from blockmgr import exception
from blockmgr.cmd import manage
from blockmgr.db import models
from blockmgr.db.session import Database
from blockmgr.quota import MAX_QUOTA_VALUE, Drift, QuotaEngine

P = "project-a"


@pytest.fixture
def engine(sqlite_database, conf):
    return QuotaEngine(sqlite_database, conf)


def usage(engine, resource, project=P):
    return engine.get_usages(project)[resource]


def live_reservations(db, project=P):
    with db.reader() as s:
        return s.scalars(sa.select(models.Reservation).where(
            models.Reservation.project_id == project,
            models.Reservation.deleted.is_(False))).all()


def add_volume(session, size, project=P, **values):
    row = models.Volume(project_id=project, size=size, status="available", **values)
    session.add(row)
    session.flush()
    return row


def add_snapshot(session, volume, project=P, **values):
    row = models.Snapshot(project_id=project, volume_id=volume.id, volume_size=volume.size,
                          status="available", **values)
    session.add(row)
    session.flush()
    return row


# --- limits ---------------------------------------------------------------------------------

def test_limits_default_to_config(engine, conf):
    conf.set_override("volumes", 7, group="quota")
    limits = engine.get_limits(P)
    assert limits == {"volumes": 7, "snapshots": 10, "gigabytes": 1000, "groups": 10,
                      "per_volume_gigabytes": -1}


def test_set_limit_overrides_one_project_only_and_reset_restores_default(engine):
    engine.set_limit(P, "volumes", 3)
    engine.set_limit(P, "volumes", 4)  # update, not a second row
    engine.set_limit(P, "per_volume_gigabytes", 50)
    assert engine.get_limits(P)["volumes"] == 4
    assert engine.get_limits(P)["per_volume_gigabytes"] == 50
    assert engine.get_limits("other")["volumes"] == 10
    engine.reset_limit(P, "volumes")
    engine.reset_limit(P, "volumes")  # nothing to reset: fine
    assert engine.get_limits(P)["volumes"] == 10


@pytest.mark.parametrize("value", [-2, True, 1.0, "5", None, MAX_QUOTA_VALUE + 1])
def test_set_limit_rejects_bad_values(engine, value):
    with pytest.raises(exception.InvalidQuotaValue) as err:
        engine.set_limit(P, "volumes", value)
    assert "volumes" in str(err.value)
    assert engine.get_limits(P)["volumes"] == 10


def test_set_limit_accepts_unlimited_and_zero(engine):
    engine.set_limit(P, "gigabytes", -1)
    engine.set_limit(P, "volumes", 0)
    assert engine.get_limits(P)["gigabytes"] == -1
    with pytest.raises(exception.OverQuota):
        engine.reserve(P, volumes=1)
    engine.reserve(P, gigabytes=MAX_QUOTA_VALUE)


def test_limit_calls_reject_unknown_resources(engine):
    with pytest.raises(exception.UnknownQuotaResource) as err:
        engine.set_limit(P, "backups", 1)
    assert "backups" in str(err.value) and "volumes" in str(err.value)
    with pytest.raises(exception.UnknownQuotaResource):
        engine.reset_limit(P, "backups")


@pytest.mark.parametrize("project", ["", None, 5, "x" * 256])
def test_bad_project_ids_are_invalid_input(engine, project):
    with pytest.raises(exception.InvalidInput):
        engine.get_limits(project)
    with pytest.raises(exception.InvalidInput):
        engine.reserve(project, volumes=1)


# --- limit_check ------------------------------------------------------------------------------

def test_limit_check_per_volume_gigabytes(engine):
    engine.limit_check(P, per_volume_gigabytes=10**6)  # unlimited by default
    engine.set_limit(P, "per_volume_gigabytes", 100)
    engine.limit_check(P, per_volume_gigabytes=100)
    engine.limit_check(P)
    with pytest.raises(exception.VolumeSizeExceedsLimit) as err:
        engine.limit_check(P, per_volume_gigabytes=101)
    assert "101" in str(err.value) and "100" in str(err.value)
    assert err.value.kwargs == {"size": 101, "limit": 100}


@pytest.mark.parametrize("kwargs, error", [
    ({"volumes": 1}, exception.UnknownQuotaResource),
    ({"per_volume_gigabytes": -1}, exception.InvalidQuotaValue),
    ({"per_volume_gigabytes": True}, exception.InvalidQuotaValue),
    ({"per_volume_gigabytes": 1.5}, exception.InvalidQuotaValue),
])
def test_limit_check_bad_input(engine, kwargs, error):
    with pytest.raises(error):
        engine.limit_check(P, **kwargs)


# --- reserve ----------------------------------------------------------------------------------

def test_reserve_adds_positive_deltas_to_reserved(engine, sqlite_database):
    uuids = engine.reserve(P, volumes=1, gigabytes=10, owner="flow-1")
    assert len(uuids) == 2 and len(set(uuids)) == 2
    assert usage(engine, "volumes") == {"in_use": 0, "reserved": 1, "limit": 10}
    assert usage(engine, "gigabytes") == {"in_use": 0, "reserved": 10, "limit": 1000}
    rows = live_reservations(sqlite_database)
    assert {(r.resource, r.delta, r.owner) for r in rows} == {
        ("volumes", 1, "flow-1"), ("gigabytes", 10, "flow-1")}


def test_reserve_skips_zero_deltas_and_empty_requests(engine, sqlite_database):
    assert engine.reserve(P) == []
    assert engine.reserve(P, gigabytes=0) == []
    assert len(engine.reserve(P, volumes=1, gigabytes=0)) == 1
    assert [r.resource for r in live_reservations(sqlite_database)] == ["volumes"]


def test_reserve_default_expiry_comes_from_config(engine, conf, sqlite_database):
    conf.set_override("reservation_expire", 120, group="quota")
    before = models.utcnow()
    engine.reserve(P, volumes=1)
    (row,) = live_reservations(sqlite_database)
    assert before + dt.timedelta(seconds=119) <= row.expire <= models.utcnow() + \
        dt.timedelta(seconds=121)


def test_reserve_accepts_expire_as_seconds_timedelta_or_datetime(engine, sqlite_database):
    at = dt.datetime(2030, 1, 2, 3, 4, 5)
    engine.reserve(P, volumes=1, expire=at)
    engine.reserve(P, snapshots=1, expire=at.replace(tzinfo=dt.timezone.utc))
    engine.reserve(P, groups=1, expire=dt.timedelta(hours=1))
    engine.reserve(P, gigabytes=1, expire=30)
    expires = {r.resource: r.expire for r in live_reservations(sqlite_database)}
    assert expires["volumes"] == at and expires["snapshots"] == at
    assert expires["groups"] > models.utcnow() + dt.timedelta(minutes=59)


@pytest.mark.parametrize("expire", [0, -5, True, "soon", dt.timedelta(seconds=-1)])
def test_reserve_rejects_bad_expire(engine, expire):
    with pytest.raises(exception.InvalidInput):
        engine.reserve(P, volumes=1, expire=expire)
    assert usage(engine, "volumes")["reserved"] == 0


@pytest.mark.parametrize("owner", ["", 5, "x" * 37])
def test_reserve_rejects_bad_owner(engine, owner):
    with pytest.raises(exception.InvalidInput):
        engine.reserve(P, volumes=1, owner=owner)


def test_over_quota_raises_with_details_and_reserves_nothing(engine, sqlite_database):
    engine.set_limit(P, "volumes", 2)
    engine.set_limit(P, "gigabytes", 10)
    engine.commit(engine.reserve(P, volumes=1, gigabytes=4))
    engine.reserve(P, gigabytes=5)
    with pytest.raises(exception.OverQuota) as err:
        engine.reserve(P, volumes=1, gigabytes=2)
    exc = err.value
    assert exc.overs == ["gigabytes"]
    assert exc.kwargs["project_id"] == P
    assert exc.kwargs["requested"] == {"volumes": 1, "gigabytes": 2}
    assert exc.kwargs["limits"] == {"volumes": 2, "gigabytes": 10}
    assert exc.kwargs["in_use"] == {"volumes": 1, "gigabytes": 4}
    assert exc.kwargs["reserved"] == {"volumes": 0, "gigabytes": 5}
    message = str(exc)
    assert "project-a" in message and "gigabytes: requested 2 GiB, only 1 GiB" in message
    assert "limit of 10 GiB" in message and "raise the limit" in message
    assert usage(engine, "volumes")["reserved"] == 0  # the fitting volumes delta too
    assert usage(engine, "gigabytes")["reserved"] == 5
    assert len(live_reservations(sqlite_database)) == 1


def test_over_quota_error_survives_rpc_round_trip(engine):
    engine.set_limit(P, "volumes", 0)
    with pytest.raises(exception.OverQuota) as err:
        engine.reserve(P, volumes=1)
    rebuilt = exception.BlockmgrError.from_dict(err.value.to_dict())
    assert isinstance(rebuilt, exception.OverQuota)
    assert rebuilt.overs == ["volumes"] and str(rebuilt) == str(err.value)


def test_reserve_fills_exactly_up_to_the_limit(engine):
    engine.set_limit(P, "volumes", 3)
    for _ in range(3):
        engine.reserve(P, volumes=1)
    with pytest.raises(exception.OverQuota):
        engine.reserve(P, volumes=1)
    assert usage(engine, "volumes")["reserved"] == 3


def test_negative_deltas_are_accepted_even_over_the_limit(engine):
    engine.commit(engine.reserve(P, volumes=5))
    engine.set_limit(P, "volumes", 2)  # now over the limit
    with pytest.raises(exception.OverQuota):
        engine.reserve(P, volumes=1)
    uuids = engine.reserve(P, volumes=-1)
    assert usage(engine, "volumes") == {"in_use": 5, "reserved": 0, "limit": 2}
    engine.commit(uuids)
    assert usage(engine, "volumes")["in_use"] == 4


def test_unlimited_resources_are_never_over_quota(engine):
    engine.set_limit(P, "snapshots", -1)
    engine.commit(engine.reserve(P, snapshots=10_000))
    assert usage(engine, "snapshots")["in_use"] == 10_000


@pytest.mark.parametrize("deltas, error", [
    ({"backups": 1}, exception.UnknownQuotaResource),
    ({"per_volume_gigabytes": 1}, exception.UnknownQuotaResource),
    ({"volumes": True}, exception.InvalidQuotaValue),
    ({"volumes": 1.0}, exception.InvalidQuotaValue),
    ({"volumes": "1"}, exception.InvalidQuotaValue),
    ({"volumes": None}, exception.InvalidQuotaValue),
    ({"gigabytes": MAX_QUOTA_VALUE + 1}, exception.InvalidQuotaValue),
    ({"gigabytes": -MAX_QUOTA_VALUE - 1}, exception.InvalidQuotaValue),
])
def test_reserve_bad_deltas_raise_typed_errors_and_write_nothing(engine, sqlite_database,
                                                                deltas, error):
    with pytest.raises(error):
        engine.reserve(P, snapshots=1, **deltas)  # the valid delta is not reserved either
    assert live_reservations(sqlite_database) == []


def test_limit_only_resource_in_reserve_points_to_limit_check(engine):
    with pytest.raises(exception.UnknownQuotaResource) as err:
        engine.reserve(P, per_volume_gigabytes=1)
    assert "limit_check" in str(err.value)


def test_reserve_guards_against_overflow_of_unlimited_usage(engine):
    engine.set_limit(P, "gigabytes", -1)
    engine.commit(engine.reserve(P, gigabytes=MAX_QUOTA_VALUE))
    with pytest.raises(exception.InvalidQuotaValue) as err:
        engine.reserve(P, gigabytes=1)
    assert "largest supported value" in str(err.value)
    assert usage(engine, "gigabytes") == {"in_use": MAX_QUOTA_VALUE, "reserved": 0,
                                          "limit": -1}


# --- commit / rollback ------------------------------------------------------------------------

def test_commit_moves_reserved_into_in_use_once(engine, sqlite_database):
    uuids = engine.reserve(P, volumes=1, gigabytes=10)
    engine.commit(uuids)
    engine.commit(uuids)  # a task that runs again after a crash
    engine.rollback(uuids)  # already resolved: no effect either
    assert usage(engine, "volumes") == {"in_use": 1, "reserved": 0, "limit": 10}
    assert usage(engine, "gigabytes") == {"in_use": 10, "reserved": 0, "limit": 1000}
    assert live_reservations(sqlite_database) == []
    with sqlite_database.reader() as s:
        rows = s.scalars(sa.select(models.Reservation)).all()
    assert len(rows) == 2 and all(r.deleted and r.deleted_at for r in rows)


def test_rollback_releases_reserved_and_leaves_in_use(engine):
    engine.commit(engine.reserve(P, volumes=2))
    positive = engine.reserve(P, volumes=1)
    negative = engine.reserve(P, volumes=-1)
    engine.rollback(positive + negative)
    engine.rollback(positive + negative)
    engine.commit(positive + negative)  # rolled back already: no effect
    assert usage(engine, "volumes") == {"in_use": 2, "reserved": 0, "limit": 10}


def test_commit_and_rollback_of_unknown_or_no_uuids_are_no_ops(engine):
    engine.commit(["3f1a7c9e-0000-0000-0000-000000000000"])
    engine.rollback(["3f1a7c9e-0000-0000-0000-000000000000"])
    engine.commit([])
    engine.commit(None)
    engine.rollback(None)
    assert usage(engine, "volumes") == {"in_use": 0, "reserved": 0, "limit": 10}


@pytest.mark.parametrize("bad", ["3f1a7c9e-0000-0000-0000-000000000000", [1]])
def test_commit_rejects_a_bare_string_or_non_string_ids(engine, bad):
    with pytest.raises(exception.InvalidInput):
        engine.commit(bad)
    with pytest.raises(exception.InvalidInput):
        engine.rollback(bad)


def test_commit_never_drives_in_use_below_zero(engine):
    engine.commit(engine.reserve(P, volumes=1))
    engine.commit(engine.reserve(P, volumes=-3))
    assert usage(engine, "volumes")["in_use"] == 0


def test_commit_tolerates_reserved_already_lowered_by_a_sync(engine, sqlite_database):
    uuids = engine.reserve(P, volumes=2)
    with sqlite_database.writer() as s:
        s.execute(sa.update(models.QuotaUsage).values(reserved=1))
    engine.commit(uuids)
    assert usage(engine, "volumes") == {"in_use": 2, "reserved": 0, "limit": 10}


# --- joining the caller's transaction ---------------------------------------------------------

def test_reserve_and_commit_join_the_callers_transaction(engine, sqlite_database):
    with pytest.raises(RuntimeError):
        with sqlite_database.writer() as s:
            engine.commit(engine.reserve(P, volumes=1, session=s), session=s)
            raise RuntimeError("caller fails after the quota work")
    assert usage(engine, "volumes") == {"in_use": 0, "reserved": 0, "limit": 10}
    assert live_reservations(sqlite_database) == []


def test_delete_soft_deletes_row_and_commits_negative_reservation_atomically(
        engine, sqlite_database):
    with sqlite_database.writer() as s:
        volume_id = add_volume(s, 5).id
        engine.consume(s, P, volumes=1, gigabytes=5)
    uuids = engine.reserve(P, volumes=-1, gigabytes=-5, owner="delete-flow")
    with sqlite_database.writer() as s:
        volume = s.get(models.Volume, volume_id)
        volume.status = "deleting"
        volume.status = "deleted"
        volume.deleted = True
        assert engine.commit_owned("delete-flow", session=s) == 2
    assert usage(engine, "volumes")["in_use"] == 0 and usage(engine, "gigabytes")["in_use"] == 0
    assert engine.check(P) == []
    assert uuids and engine.reservations_of("delete-flow") == []


def test_joined_reserve_over_quota_raises_inside_the_transaction(engine, sqlite_database):
    engine.set_limit(P, "volumes", 0)
    with pytest.raises(exception.OverQuota):
        with sqlite_database.writer() as s:
            engine.reserve(P, volumes=1, session=s)
    assert live_reservations(sqlite_database) == []


# --- consume (API side: quota and row in one transaction) -------------------------------------

def test_consume_charges_in_use_with_the_row_insert(engine, sqlite_database):
    with sqlite_database.writer() as s:
        add_volume(s, 3)
        engine.consume(s, P, volumes=1, gigabytes=3)
    assert usage(engine, "volumes") == {"in_use": 1, "reserved": 0, "limit": 10}
    assert usage(engine, "gigabytes")["in_use"] == 3
    assert live_reservations(sqlite_database) == []
    assert engine.check(P) == []


def test_consume_over_quota_leaves_neither_row_nor_usage(engine, sqlite_database):
    engine.set_limit(P, "gigabytes", 2)
    with pytest.raises(exception.OverQuota) as err:
        with sqlite_database.writer() as s:
            add_volume(s, 3)
            engine.consume(s, P, volumes=1, gigabytes=3)
    assert err.value.overs == ["gigabytes"]
    with sqlite_database.reader() as s:
        assert s.scalar(sa.select(sa.func.count(models.Volume.id))) == 0
    assert usage(engine, "volumes")["in_use"] == 0


def test_consume_rolls_back_with_a_failing_caller(engine, sqlite_database):
    with pytest.raises(RuntimeError):
        with sqlite_database.writer() as s:
            engine.consume(s, P, volumes=1)
            raise RuntimeError("insert failed")
    assert usage(engine, "volumes")["in_use"] == 0


def test_consume_validates_and_accepts_negative_deltas(engine, sqlite_database):
    with sqlite_database.writer() as s:
        with pytest.raises(exception.InvalidQuotaValue):
            engine.consume(s, P, volumes=False)
        with pytest.raises(exception.UnknownQuotaResource):
            engine.consume(s, P, backups=1)
        engine.consume(s, P)
        engine.consume(s, P, volumes=-1)
    assert usage(engine, "volumes")["in_use"] == 0


def test_run_in_transaction_commits_the_work(engine, sqlite_database):
    def create(s):
        engine.consume(s, P, volumes=1, gigabytes=1)
        return add_volume(s, 1).id

    volume_id = engine.run_in_transaction(create)
    with sqlite_database.reader() as s:
        assert s.get(models.Volume, volume_id) is not None
    assert engine.check(P) == []


# --- owners -----------------------------------------------------------------------------------

def test_owned_reservations_commit_and_rollback_by_owner(engine):
    first = engine.reserve(P, volumes=1, gigabytes=2, owner="flow-a")
    engine.reserve(P, snapshots=1, owner="flow-b")
    assert engine.reservations_of("flow-a") == first
    assert engine.commit_owned("flow-a") == 2
    assert engine.commit_owned("flow-a") == 0
    assert engine.rollback_owned("flow-b") == 1
    assert engine.rollback_owned("flow-b") == 0
    assert engine.reservations_of("flow-a") == [] == engine.reservations_of("flow-b")
    usages = engine.get_usages(P)
    assert usages["volumes"]["in_use"] == 1 and usages["gigabytes"]["in_use"] == 2
    assert usages["snapshots"] == {"in_use": 0, "reserved": 0, "limit": 10}


@pytest.mark.parametrize("owner", [None, "", 3])
def test_owner_calls_need_an_owner(engine, owner):
    for call in (engine.reservations_of, engine.commit_owned, engine.rollback_owned):
        with pytest.raises(exception.InvalidInput):
            call(owner)


# --- expiry and orphans -----------------------------------------------------------------------

def _past(seconds=60):
    return models.utcnow() - dt.timedelta(seconds=seconds)


def test_expire_releases_only_expired_reservations(engine, sqlite_database):
    expired = engine.reserve(P, volumes=2, expire=_past())
    dropped = engine.reserve(P, gigabytes=-1, expire=_past())
    fresh = engine.reserve(P, volumes=1)
    assert usage(engine, "volumes")["reserved"] == 3
    assert engine.expire() == 2
    assert engine.expire() == 0
    assert usage(engine, "volumes") == {"in_use": 0, "reserved": 1, "limit": 10}
    assert [r.uuid for r in live_reservations(sqlite_database)] == fresh
    with sqlite_database.reader() as s:
        gone = s.scalars(sa.select(models.Reservation).where(
            models.Reservation.uuid.in_(expired + dropped))).all()
    assert all(r.deleted for r in gone)


def test_expire_keeps_reservations_of_live_owners_when_told(engine):
    engine.reserve(P, volumes=1, owner="running", expire=_past())
    engine.reserve(P, volumes=1, owner="finished", expire=_past())
    engine.reserve(P, volumes=1, expire=_past())
    assert engine.expire(is_owner_live=lambda owner: owner == "running") == 2
    assert engine.reservations_of("running") and not engine.reservations_of("finished")
    assert engine.expire() == 1


def test_release_orphans_uses_owner_liveness_not_age(engine):
    live = engine.reserve(P, volumes=1, owner="live-flow", expire=_past())
    dead = engine.reserve(P, volumes=1, gigabytes=1, owner="dead-flow")
    unjudgeable = engine.reserve(P, volumes=1, owner="weird-flow")
    ownerless_fresh = engine.reserve(P, snapshots=1)
    ownerless_old = engine.reserve(P, groups=1, expire=_past())
    asked = []

    def is_owner_live(owner):
        asked.append(owner)
        if owner == "weird-flow":
            raise RuntimeError("logbook unavailable")
        return owner == "live-flow"

    released = engine.release_orphans(is_owner_live)
    assert sorted(released) == sorted(dead + ownerless_old)
    assert sorted(asked) == ["dead-flow", "live-flow", "weird-flow"]
    assert engine.reservations_of("live-flow") == live
    assert engine.reservations_of("weird-flow") == unjudgeable
    usages = engine.get_usages(P)
    assert usages["volumes"]["reserved"] == 2 and usages["gigabytes"]["reserved"] == 0
    assert usages["snapshots"]["reserved"] == 1 and usages["groups"]["reserved"] == 0
    assert ownerless_fresh
    assert engine.release_orphans(is_owner_live) == []


def test_a_request_owned_reservation_lives_while_its_resource_waits(engine, sqlite_database):
    """The API's extend reservation belongs to the request until a flow takes it over: kept
    while the volume is ``extending``, an orphan once the volume moved on without it (the
    request was lost) -- whatever the flow-liveness callback says."""
    from blockmgr import quota as bm_quota
    from blockmgr.db import repository

    with sqlite_database.writer() as session:
        vol = repository.create(session, models.Volume, status="extending", size=1,
                                project_id=P)
        vid = vol.id
    owner = bm_quota.request_owner("volume", vid, "extending")
    assert bm_quota.parse_request_owner(owner) == ("volume", vid, "extending")
    assert bm_quota.parse_request_owner("5f1c0d9e-flow-id") is None
    uuids = engine.reserve(P, gigabytes=2, owner=owner)
    asked = []

    def is_owner_live(o):
        asked.append(o)
        return False

    assert engine.release_orphans(is_owner_live) == [] and asked == []
    with sqlite_database.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          status="error_extending")
    assert [o.uuid for o in engine.orphans(is_owner_live)] == uuids
    assert engine.release_orphans(is_owner_live) == uuids
    assert usage(engine, "gigabytes")["reserved"] == 0
    with pytest.raises(ValueError):
        bm_quota.request_owner("volume", vid, "creating")


# --- check / sync -----------------------------------------------------------------------------

def test_truth_counts_only_live_quota_rows(engine, sqlite_database, conf):
    with sqlite_database.writer() as s:
        vol = add_volume(s, 10)
        add_volume(s, 4)
        add_volume(s, 100, use_quota=False)  # temporary volume
        gone = add_volume(s, 50)
        gone.deleted = True
        add_volume(s, 7, project="project-b")
        add_snapshot(s, vol)
        add_snapshot(s, vol, use_quota=False)
        s.add(models.Group(project_id=P, status="available"))
        s.add(models.Group(project_id=P, status="available", deleted=True))
    drifts = {(d.resource, d.field): d for d in engine.check(P)}
    assert {k: d.expected for k, d in drifts.items()} == {
        ("volumes", "in_use"): 2, ("gigabytes", "in_use"): 24,
        ("snapshots", "in_use"): 1, ("groups", "in_use"): 1}
    assert all(d.recorded == 0 for d in drifts.values())
    conf.set_override("no_snapshot_gb_quota", True, group="quota")
    assert {d.resource: d.expected for d in engine.check(P)}["gigabytes"] == 14


def test_check_reports_and_sync_fixes_every_project(engine, sqlite_database):
    with sqlite_database.writer() as s:
        add_volume(s, 10)
        add_volume(s, 7, project="project-b")
    engine.reserve("project-b", snapshots=2)
    with sqlite_database.writer() as s:  # a crashed process left reserved inflated
        s.execute(sa.update(models.QuotaUsage).values(reserved=9))
    drifts = engine.check()
    assert {(d.project_id, d.resource, d.field, d.recorded, d.expected) for d in drifts} == {
        (P, "volumes", "in_use", 0, 1), (P, "gigabytes", "in_use", 0, 10),
        ("project-b", "volumes", "in_use", 0, 1), ("project-b", "gigabytes", "in_use", 0, 7),
        ("project-b", "snapshots", "reserved", 9, 2)}
    assert engine.check() == drifts  # check changes nothing
    assert engine.sync() == drifts
    assert engine.check() == []
    assert usage(engine, "snapshots", "project-b")["reserved"] == 2
    assert usage(engine, "gigabytes")["in_use"] == 10


def test_sync_of_one_project_leaves_others(engine, sqlite_database):
    with sqlite_database.writer() as s:
        add_volume(s, 1)
        add_volume(s, 1, project="project-b")
    assert {d.project_id for d in engine.sync(P)} == {P}
    assert engine.check(P) == []
    assert {d.project_id for d in engine.check()} == {"project-b"}


def test_in_flight_reservations_are_not_drift(engine, sqlite_database):
    """A manage flow writes the new size before committing its reservation; a delete flow
    may soft-delete before committing. Neither is drift, and a sync in between must not make
    the later commit count twice."""
    with sqlite_database.writer() as s:
        volume_id = add_volume(s, 0).id
        engine.consume(s, P, volumes=1)
    grow = engine.reserve(P, gigabytes=8, owner="manage-flow")
    assert engine.check(P) == []  # size not written yet
    with sqlite_database.writer() as s:
        s.get(models.Volume, volume_id).size = 8
    assert engine.check(P) == []  # size written, commit pending
    assert engine.sync(P) == []
    engine.commit(grow)
    assert usage(engine, "gigabytes")["in_use"] == 8
    assert engine.check(P) == []


def test_sync_with_live_reservations_makes_the_smallest_correction(engine, sqlite_database):
    """Outside the consistent range sync assumes the live reservations' changes are already
    in the tables, so committing them afterwards lands exactly on the truth."""
    with sqlite_database.writer() as s:
        for _ in range(3):
            add_volume(s, 1)
    pending = engine.reserve(P, volumes=1, owner="create-flow")
    (drift,) = [d for d in engine.sync(P) if d.resource == "volumes"]
    assert (drift.field, drift.recorded, drift.expected) == ("in_use", 0, 2)
    assert "1 live reservation(s)" in drift.reason
    engine.commit(pending)
    assert usage(engine, "volumes")["in_use"] == 3
    assert engine.check(P) == []


def test_sync_with_live_negative_reservations(engine, sqlite_database):
    engine.commit(engine.reserve(P, volumes=5))  # usage says 5, only 1 volume exists
    with sqlite_database.writer() as s:
        add_volume(s, 0)
    pending = engine.reserve(P, volumes=-1, owner="delete-flow")
    (drift,) = [d for d in engine.sync(P) if d.resource == "volumes"]
    assert (drift.recorded, drift.expected) == (5, 2)
    engine.commit(pending)
    assert usage(engine, "volumes")["in_use"] == 1
    assert engine.check(P) == []


def test_drift_reads_as_a_sentence():
    drift = Drift(P, "gigabytes", "in_use", 5, 3, "3 GiB in the database")
    assert str(drift) == ("project project-a: gigabytes in_use is 5, expected 3 "
                          "(3 GiB in the database)")


# --- usage refresh ----------------------------------------------------------------------------

def test_until_refresh_recomputes_usage_every_n_reservations(engine, sqlite_database, conf):
    conf.set_override("until_refresh", 2, group="quota")
    with sqlite_database.writer() as s:
        add_volume(s, 1)
        add_volume(s, 1)
    uuids = engine.reserve(P, volumes=1)  # counter 2 -> 1
    assert usage(engine, "volumes")["in_use"] == 0
    engine.rollback(uuids)
    engine.reserve(P, volumes=1)  # counter reaches 0: refresh
    assert usage(engine, "volumes") == {"in_use": 2, "reserved": 1, "limit": 10}


def test_max_age_recomputes_stale_usage(engine, sqlite_database, conf):
    conf.set_override("max_age", 30, group="quota")
    engine.commit(engine.reserve(P, volumes=3))  # usage says 3, no volume rows
    assert usage(engine, "volumes")["in_use"] == 3  # fresh rows are not refreshed
    with sqlite_database.writer() as s:
        s.execute(sa.update(models.QuotaUsage).values(updated_at=_past(31)))
    engine.reserve(P, volumes=1)
    assert usage(engine, "volumes") == {"in_use": 0, "reserved": 1, "limit": 10}


def test_refresh_lets_a_stale_usage_stop_blocking_reservations(engine, sqlite_database, conf):
    engine.set_limit(P, "volumes", 1)
    engine.commit(engine.reserve(P, volumes=1))  # the volume was never created
    with pytest.raises(exception.OverQuota):
        engine.reserve(P, volumes=1)
    conf.set_override("until_refresh", 1, group="quota")
    assert len(engine.reserve(P, volumes=1)) == 1


def test_no_refresh_without_options_or_in_a_joined_transaction(engine, sqlite_database, conf):
    engine.commit(engine.reserve(P, volumes=3))
    engine.reserve(P, volumes=1)
    assert usage(engine, "volumes")["in_use"] == 3
    conf.set_override("until_refresh", 1, group="quota")
    with sqlite_database.writer() as s:
        engine.reserve(P, volumes=1, session=s)
    assert usage(engine, "volumes")["in_use"] == 3


# --- concurrency (docs/behaviours.md row 14) ------------------------------------------------

def test_two_concurrent_reserves_over_the_limit_exactly_one_wins(engine):
    engine.set_limit(P, "gigabytes", 10)
    barrier = threading.Barrier(2)
    outcomes = []

    def worker():
        barrier.wait()
        try:
            engine.reserve(P, gigabytes=6)
            outcomes.append("ok")
        except exception.OverQuota:
            outcomes.append("over")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "over"]
    assert usage(engine, "gigabytes")["reserved"] == 6


def test_a_second_engine_creates_usage_rows_without_duplicates(sqlite_database, conf):
    first, second = QuotaEngine(sqlite_database, conf), QuotaEngine(sqlite_database, conf)
    first.reserve(P, volumes=1)
    second.reserve(P, volumes=1)
    with sqlite_database.reader() as s:
        assert s.scalar(sa.select(sa.func.count(models.QuotaUsage.id))) == 1
    assert usage(first, "volumes")["reserved"] == 2


# --- CLI --------------------------------------------------------------------------------------

@pytest.fixture
def cli_db(tmp_path):
    path = tmp_path / "cli.sqlite"
    db = Database("sqlite:///%s" % path)
    db.create_schema()
    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\n[database]\nconnection = sqlite:///%s\n"
                      "[quota]\nvolumes = 5\n" % (tmp_path, path))
    yield db, ["--config-file", str(config)]
    db.dispose()


def test_cli_show_prints_limits_usage_and_reservations(cli_db, capsys):
    db, args = cli_db
    QuotaEngine(db, _conf_for(args)).reserve(P, volumes=2)
    assert manage.main(args + ["quota", "show", "--project-id", P]) == 0
    out = capsys.readouterr().out
    assert "Quota of project project-a" in out
    assert [line.split() for line in out.splitlines() if line.startswith("volumes")] == [
        ["volumes", "5", "0", "2"]]
    assert ["per_volume_gigabytes", "unlimited", "-", "-"] in [
        line.split() for line in out.splitlines()]


def test_cli_check_exits_1_on_drift_and_sync_fixes_it(cli_db, capsys):
    db, args = cli_db
    with db.writer() as s:
        add_volume(s, 4)
    assert manage.main(args + ["quota", "check"]) == 1
    out = capsys.readouterr().out
    assert "DRIFT project project-a: volumes in_use is 0, expected 1" in out
    assert "quota sync" in out
    assert manage.main(args + ["quota", "sync", "--project-id", P]) == 0
    out = capsys.readouterr().out
    assert "FIXED project project-a: gigabytes in_use is 0, expected 4" in out
    assert manage.main(args + ["quota", "check", "--project-id", P]) == 0
    assert "matches" in capsys.readouterr().out
    assert manage.main(args + ["quota", "sync"]) == 0
    assert "Nothing to fix" in capsys.readouterr().out


def test_cli_sync_can_release_expired_reservations(cli_db, capsys):
    db, args = cli_db
    QuotaEngine(db, _conf_for(args)).reserve(P, volumes=1, expire=_past())
    assert manage.main(args + ["quota", "sync", "--release-expired"]) == 0
    assert "Released 1 expired reservation(s)." in capsys.readouterr().out


def test_cli_set_and_reset_limits(cli_db, capsys):
    db, args = cli_db
    assert manage.main(args + ["quota", "set", "--project-id", P, "--resource", "volumes",
                               "--limit", "-1"]) == 0
    assert "set to unlimited" in capsys.readouterr().out
    assert QuotaEngine(db, _conf_for(args)).get_limits(P)["volumes"] == -1
    assert manage.main(args + ["quota", "reset", "--project-id", P, "--resource",
                               "volumes"]) == 0
    assert "reset to the default (5)" in capsys.readouterr().out


def test_cli_bad_limit_is_a_readable_error(cli_db, capsys):
    _, args = cli_db
    assert manage.main(args + ["quota", "set", "--project-id", P, "--resource", "volumes",
                               "--limit", "-7"]) == 2
    assert "Invalid quota value for volumes" in capsys.readouterr().err


def _conf_for(args):
    from blockmgr import conf as bm_conf
    return bm_conf.new_config(args=args)


def test_a_refused_reserve_keeps_its_usage_refresh(engine, sqlite_database, conf):
    engine.set_limit(P, "volumes", 2)
    engine.commit(engine.reserve(P, volumes=1))  # usage 1, but no volume exists
    with sqlite_database.writer() as s:
        for _ in range(2):
            add_volume(s, 1)
    conf.set_override("until_refresh", 1, group="quota")
    with pytest.raises(exception.OverQuota):
        engine.reserve(P, volumes=1)  # refreshed to 2 first, then refused
    assert usage(engine, "volumes") == {"in_use": 2, "reserved": 0, "limit": 2}
