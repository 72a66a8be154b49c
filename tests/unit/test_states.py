"""Status transition tables, and their enforcement on every status write.

Each allowed entry of every table is written through the ORM and through
``repository.transition``; each pair that is not in a table must raise and leave the row as it
was, on both paths.
"""

from __future__ import annotations

import itertools

import pytest

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository

KINDS = sorted(states.MACHINES)
MODELS = {
    "volume": models.Volume,
    "snapshot": models.Snapshot,
    "group": models.Group,
    "group_snapshot": models.GroupSnapshot,
}


def _allowed_pairs(kind):
    _, table = states.MACHINES[kind]
    return sorted((src.value, dst.value) for src, dsts in table.items() for dst in dsts)


def _illegal_pairs(kind):
    status_enum, table = states.MACHINES[kind]
    return sorted((src.value, dst.value)
                  for src, dst in itertools.product(status_enum, repeat=2)
                  if src != dst and dst not in table[src])


def _make_row(session, kind: str, status: str):
    """A fresh row of ``kind`` in ``status``, with whatever parents it needs."""
    if kind == "snapshot":
        parent = repository.create(session, models.Volume, status="available", size=1)
        return repository.create(session, models.Snapshot, status=status,
                                 volume_id=parent.id, volume_size=1)
    if kind == "group_snapshot":
        parent = repository.create(session, models.Group, status="available")
        return repository.create(session, models.GroupSnapshot, status=status,
                                 group_id=parent.id)
    return repository.create(session, MODELS[kind], status=status)


def _stored_status(db, kind, row_id) -> str:
    with db.reader() as session:
        return repository.get(session, MODELS[kind], row_id, read_deleted=True).status


# --- the tables themselves ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_table_has_a_row_for_every_status(kind):
    status_enum, table = states.MACHINES[kind]
    assert set(table) == set(status_enum)
    for dsts in table.values():
        assert dsts <= set(status_enum)


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_is_final_and_reachable(kind):
    status_enum, table = states.MACHINES[kind]
    assert table[status_enum("deleted")] == frozenset()
    assert any(status_enum("deleted") in dsts for dsts in table.values())


@pytest.mark.parametrize("kind", KINDS)
def test_every_transitional_status_can_move_on(kind):
    """Recovery must be able to move every in-flight status to a stable one."""
    status_enum, table = states.MACHINES[kind]
    for status in states.TRANSITIONAL[kind]:
        assert table[status_enum(status)], "%s %s has no way out" % (kind, status)


@pytest.mark.parametrize("kind", KINDS)
def test_every_table_entry_is_allowed(kind):
    for src, dst in _allowed_pairs(kind):
        assert states.can_transition(kind, src, dst)
        states.check_transition(kind, src, dst)
        assert src in states.allowed_sources(kind, dst)


@pytest.mark.parametrize("kind", KINDS)
def test_every_pair_outside_the_table_is_refused(kind):
    for src, dst in _illegal_pairs(kind):
        assert not states.can_transition(kind, src, dst)
        assert src not in states.allowed_sources(kind, dst)
        with pytest.raises(exception.InvalidStatusTransition) as info:
            states.check_transition(kind, src, dst, resource_id="r-1")
        assert info.value.kwargs["current"] == src
        assert info.value.kwargs["requested"] == dst


@pytest.mark.parametrize("kind", KINDS)
def test_writing_the_same_status_again_is_allowed(kind):
    status_enum, _ = states.MACHINES[kind]
    for status in status_enum:
        assert states.can_transition(kind, status.value, status.value)


def test_illegal_transition_message_lists_what_is_allowed():
    with pytest.raises(exception.InvalidStatusTransition) as info:
        states.check_transition("volume", "creating", "in-use", resource_id="v-1")
    assert str(info.value) == ("Volume v-1 cannot go from status 'creating' to 'in-use'; "
                               "allowed from 'creating': available, deleted, error.")
    assert isinstance(info.value, exception.Conflict)


def test_final_status_says_so():
    with pytest.raises(exception.InvalidStatusTransition, match=r"\(none: final\)"):
        states.check_transition("snapshot", "deleted", "available")


def test_new_row_may_start_in_any_valid_status():
    assert states.can_transition("group", None, "available")


def test_unknown_status_names_the_valid_ones():
    with pytest.raises(exception.InvalidInput) as info:
        states.check_transition("volume", "available", "attached")
    assert "'attached' is not a volume status" in str(info.value)
    assert "in-use" in str(info.value)


# --- enforcement on writes (SQLite) ---------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_orm_assignment_follows_every_table_entry(sqlite_database, kind):
    for src, dst in _allowed_pairs(kind):
        with sqlite_database.writer() as session:
            row_id = _make_row(session, kind, src).id
        with sqlite_database.writer() as session:
            row = repository.get(session, MODELS[kind], row_id)
            row.status = dst
        assert _stored_status(sqlite_database, kind, row_id) == dst


@pytest.mark.parametrize("kind", KINDS)
def test_orm_assignment_of_illegal_status_raises_and_writes_nothing(sqlite_database, kind):
    for src, dst in _illegal_pairs(kind):
        with sqlite_database.writer() as session:
            row_id = _make_row(session, kind, src).id
        with pytest.raises(exception.InvalidStatusTransition):
            with sqlite_database.writer() as session:
                row = repository.get(session, MODELS[kind], row_id)
                row.status_reason = "must not be written either" if kind in (
                    "volume", "snapshot") else None
                row.status = dst
        assert _stored_status(sqlite_database, kind, row_id) == src
        if kind in ("volume", "snapshot"):
            with sqlite_database.reader() as session:
                row = repository.get(session, MODELS[kind], row_id, read_deleted=True)
                assert row.status_reason is None


def test_orm_checks_an_expired_row_against_its_stored_status(sqlite_database):
    """An expired status (e.g. after refresh) must be reloaded for the check, not skipped."""
    with sqlite_database.writer() as session:
        volume = _make_row(session, "volume", "creating")
        session.expire(volume)
        assert "status" not in volume.__dict__
        with pytest.raises(exception.InvalidStatusTransition):
            volume.status = "in-use"


@pytest.mark.parametrize("kind", KINDS)
def test_repository_transition_follows_every_table_entry(sqlite_database, kind):
    for src, dst in _allowed_pairs(kind):
        with sqlite_database.writer() as session:
            row_id = _make_row(session, kind, src).id
        with sqlite_database.writer() as session:
            row = repository.transition(session, MODELS[kind], row_id, dst)
            assert row.status == dst
        assert _stored_status(sqlite_database, kind, row_id) == dst


@pytest.mark.parametrize("kind", KINDS)
def test_repository_transition_refuses_illegal_pairs_and_writes_nothing(sqlite_database, kind):
    for src, dst in _illegal_pairs(kind):
        with sqlite_database.writer() as session:
            row_id = _make_row(session, kind, src).id
        with pytest.raises(exception.InvalidStatusTransition):
            with sqlite_database.writer() as session:
                repository.transition(session, MODELS[kind], row_id, dst,
                                      user_id="must-not-be-written")
        assert _stored_status(sqlite_database, kind, row_id) == src
        with sqlite_database.reader() as session:
            assert repository.get(session, MODELS[kind], row_id,
                                  read_deleted=True).user_id is None


def test_a_failed_snapshot_manage_can_only_be_released():
    """``error_managing`` never reaches ``deleting`` (whose flow deletes the backend object):
    its object is the user's, so the only way on is ``error_managing_deleting``."""
    assert states.allowed_sources("snapshot", "error_managing") == frozenset(
        {"creating", "error_managing", "error_managing_deleting"})
    assert not states.can_transition("snapshot", "error_managing", "deleting")
    assert not states.can_transition("snapshot", "error_managing", "error")
    assert states.can_transition("snapshot", "error_managing", "error_managing_deleting")
    assert "error_managing_deleting" in states.TRANSITIONAL["snapshot"]
    assert "error_managing" in states.RESETTABLE["snapshot"]
