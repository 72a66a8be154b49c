"""The attachment status table, the volume attach statuses and the reset rule: enforced on
every write of an attachment row, a volume's ``attach_status`` and an admin reset."""

from __future__ import annotations

import itertools

import pytest

from blockmgr import exception
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository

A = states.AttachStatus
ALLOWED = sorted((src.value, dst.value) for src, dsts in states.ATTACHMENT_TRANSITIONS.items()
                 for dst in dsts)
ILLEGAL = sorted((src.value, dst.value) for src, dst in itertools.product(A, repeat=2)
                 if src != dst and dst not in states.ATTACHMENT_TRANSITIONS[src])


def test_table_covers_every_attach_status_and_detached_is_final():
    assert set(states.ATTACHMENT_TRANSITIONS) == set(A)
    assert states.ATTACHMENT_TRANSITIONS[A.DETACHED] == frozenset()
    for status in set(A) - {A.DETACHED}:
        assert A.DETACHED in states.ATTACHMENT_TRANSITIONS[status] or \
            A.DETACHING in states.ATTACHMENT_TRANSITIONS[status], status


def _attachment(session, status):
    volume = repository.create(session, models.Volume, status="reserved", size=1)
    return repository.create(session, models.Attachment, volume_id=volume.id,
                             attach_status=status)


@pytest.mark.parametrize("src,dst", ALLOWED)
def test_allowed_attachment_transitions_are_written(sqlite_database, src, dst):
    with sqlite_database.writer() as session:
        row = _attachment(session, src)
        repository.update(session, row, attach_status=dst)
        assert row.attach_status == dst


@pytest.mark.parametrize("src,dst", ILLEGAL)
def test_illegal_attachment_transitions_raise_and_write_nothing(sqlite_database, src, dst):
    with sqlite_database.writer() as session:
        row_id = _attachment(session, src).id
    with pytest.raises(exception.InvalidStatusTransition):
        with sqlite_database.writer() as session:
            repository.update(session, session.get(models.Attachment, row_id),
                              attach_status=dst)
    with sqlite_database.reader() as session:
        assert session.get(models.Attachment, row_id).attach_status == src


def test_volume_attach_status_must_be_a_volume_attach_status(sqlite_database):
    with sqlite_database.writer() as session:
        volume = repository.create(session, models.Volume, status="available", size=1)
        for value in sorted(states.VOLUME_ATTACH_STATUSES):
            repository.update(session, volume, attach_status=value)
        with pytest.raises(exception.InvalidInput):
            repository.update(session, volume, attach_status="reserved")


@pytest.mark.parametrize("kind", sorted(states.MACHINES))
def test_reset_targets_are_stable_statuses(kind):
    for status in states.RESETTABLE[kind]:
        assert status not in states.TRANSITIONAL[kind] and status != "deleted"
        assert states.check_reset(kind, status) == status
    for status in states.TRANSITIONAL[kind] | {"deleted"}:
        with pytest.raises(exception.InvalidInput):
            states.check_reset(kind, status)
