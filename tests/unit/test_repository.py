"""Repository query functions (SQLite; the server databases are covered by the quota tests)."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository


def _volume(session, **values):
    values.setdefault("status", "available")
    values.setdefault("size", 1)
    return repository.create(session, models.Volume, **values)


def _ids(rows):
    return sorted(row.id for row in rows)


@pytest.mark.parametrize("model, error", [
    (models.Volume, exception.VolumeNotFound),
    (models.Snapshot, exception.SnapshotNotFound),
    (models.Group, exception.GroupNotFound),
    (models.GroupSnapshot, exception.GroupSnapshotNotFound),
])
def test_get_missing_raises_the_typed_not_found(sqlite_database, model, error):
    with sqlite_database.reader() as session:
        with pytest.raises(error, match="nope"):
            repository.get(session, model, "nope")


def test_get_other_projects_row_is_not_found(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, project_id="p1").id
    with sqlite_database.reader() as session:
        assert repository.get(session, models.Volume, volume_id, project_id="p1").id == volume_id
        with pytest.raises(exception.VolumeNotFound):
            repository.get(session, models.Volume, volume_id, project_id="p2")


def test_get_deleted_row_only_when_asked(sqlite_database):
    with sqlite_database.writer() as session:
        volume = _volume(session, status="deleting")
        repository.soft_delete(session, volume)
        volume_id = volume.id
    with sqlite_database.reader() as session:
        with pytest.raises(exception.VolumeNotFound):
            repository.get(session, models.Volume, volume_id)
        row = repository.get(session, models.Volume, volume_id, read_deleted=True)
        assert (row.status, row.deleted) == ("deleted", True)
        assert row.deleted_at is not None


def test_get_for_update(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session).id
        assert repository.get(session, models.Volume, volume_id, for_update=True).id == volume_id


def test_create_fills_defaults(sqlite_database):
    with sqlite_database.writer() as session:
        volume = _volume(session)
        assert len(volume.id) == 36
        assert volume.name == "volume-%s" % volume.id
        assert (volume.deleted, volume.attach_status, volume.bootable) == (
            False, "detached", False)
        assert volume.created_at is not None


def test_create_with_an_unknown_status_writes_nothing(sqlite_database):
    with pytest.raises(exception.InvalidInput):
        with sqlite_database.writer() as session:
            _volume(session, status="bogus", project_id="p1")
    with sqlite_database.reader() as session:
        assert repository.list_for_project(session, models.Volume, "p1") == []


def test_update_sets_fields_and_rejects_unknown_ones(sqlite_database):
    with sqlite_database.writer() as session:
        volume = _volume(session)
        repository.update(session, volume, display_name="data", status="in-use")
        assert (volume.display_name, volume.status) == ("data", "in-use")
        with pytest.raises(exception.InvalidInput, match="has no field 'colour'"):
            repository.update(session, volume, colour="blue")


def test_soft_delete_refuses_an_illegal_final_transition(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="in-use").id
    with pytest.raises(exception.InvalidStatusTransition):
        with sqlite_database.writer() as session:
            repository.soft_delete(session, repository.get(session, models.Volume, volume_id))
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Volume, volume_id)
        assert (row.status, row.deleted) == ("in-use", False)


def test_transition_narrowed_by_expected(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="available").id
    with pytest.raises(exception.InvalidStatusTransition, match="only from error"):
        with sqlite_database.writer() as session:
            repository.transition(session, models.Volume, volume_id, "deleting",
                                  expected=["error"])
    with sqlite_database.writer() as session:
        row = repository.transition(session, models.Volume, volume_id, "deleting",
                                    expected=["available", "error"], status_reason="asked")
        assert (row.status, row.status_reason) == ("deleting", "asked")


def test_transition_of_missing_or_deleted_row_is_not_found(sqlite_database):
    with sqlite_database.writer() as session:
        with pytest.raises(exception.VolumeNotFound):
            repository.transition(session, models.Volume, "nope", "available")
        volume = _volume(session, status="deleting")
        repository.soft_delete(session, volume)
        with pytest.raises(exception.VolumeNotFound):
            repository.transition(session, models.Volume, volume.id, "error_deleting")


def test_list_by_host_and_status_matches_pools_of_that_backend_only(sqlite_database):
    with sqlite_database.writer() as session:
        wanted = [_volume(session, host="node1@lvm", status="creating").id,
                  _volume(session, host="node1@lvm#pool-a", status="deleting").id]
        _volume(session, host="node1@lvm", status="available")      # not in flight
        _volume(session, host="node1@lvm2", status="creating")      # another backend
        _volume(session, host="node1@lvm2#p", status="creating")    # another backend's pool
        _volume(session, host="node2@lvm", status="creating")       # another node
        gone = _volume(session, host="node1@lvm", status="deleting")
        repository.soft_delete(session, gone)
    with sqlite_database.reader() as session:
        found = repository.list_by_host_and_status(session, models.Volume, "node1@lvm",
                                                   ["creating", "deleting"])
    assert _ids(found) == sorted(wanted)


def test_snapshots_and_group_snapshots_follow_their_parents_host(sqlite_database):
    with sqlite_database.writer() as session:
        here = _volume(session, host="node1@lvm#p")
        there = _volume(session, host="node2@lvm")
        snap = repository.create(session, models.Snapshot, volume_id=here.id,
                                 status="creating").id
        repository.create(session, models.Snapshot, volume_id=there.id, status="creating")
        repository.create(session, models.Snapshot, volume_id=here.id, status="available")
        group_here = repository.create(session, models.Group, host="node1@lvm",
                                       status="available")
        group_there = repository.create(session, models.Group, host="node2@lvm",
                                        status="available")
        gsnap = repository.create(session, models.GroupSnapshot, group_id=group_here.id,
                                  status="deleting").id
        repository.create(session, models.GroupSnapshot, group_id=group_there.id,
                          status="deleting")
    with sqlite_database.reader() as session:
        assert _ids(repository.list_snapshots_by_host_and_status(
            session, "node1@lvm", ["creating"])) == [snap]
        assert _ids(repository.list_group_snapshots_by_host_and_status(
            session, "node1@lvm", ["deleting"])) == [gsnap]


def test_list_for_project_pages_and_filters(sqlite_database):
    with sqlite_database.writer() as session:
        mine = sorted(_volume(session, project_id="p1", bootable=(i % 2 == 0)).id
                      for i in range(5))
        _volume(session, project_id="p2")
    with sqlite_database.reader() as session:
        assert _ids(repository.list_for_project(session, models.Volume, "p1")) == mine
        assert len(repository.list_for_project(session, models.Volume, None)) == 6
        first = repository.list_for_project(session, models.Volume, "p1", limit=2)
        rest = repository.list_for_project(session, models.Volume, "p1", marker=first[-1].id)
        assert [row.id for row in first] + [row.id for row in rest] == mine
        bootable = repository.list_for_project(session, models.Volume, "p1",
                                               filters={"bootable": True})
        assert len(bootable) == 3


def test_members_of_groups_and_snapshots_of_volumes(sqlite_database):
    with sqlite_database.writer() as session:
        group = repository.create(session, models.Group, status="available")
        members = sorted(_volume(session, group_id=group.id).id for _ in range(2))
        _volume(session)
        volume = _volume(session)
        gsnap = repository.create(session, models.GroupSnapshot, group_id=group.id,
                                  status="available")
        snaps = sorted(repository.create(session, models.Snapshot, volume_id=volume.id,
                                         status="available", group_snapshot_id=gsnap.id).id
                       for _ in range(2))
        deleted = repository.create(session, models.Snapshot, volume_id=volume.id,
                                    status="deleting", group_snapshot_id=gsnap.id)
        repository.soft_delete(session, deleted)
    with sqlite_database.reader() as session:
        assert _ids(repository.volumes_in_group(session, group.id)) == members
        assert _ids(repository.snapshots_of_volume(session, volume.id)) == snaps
        assert _ids(repository.snapshots_of_group_snapshot(session, gsnap.id)) == snaps


def test_update_by_id_writes_without_loading_and_refuses_status_and_missing_rows(
        sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = repository.create(session, models.Volume, size=1, status="creating",
                                      project_id="p").id
    with sqlite_database.writer() as session:
        repository.update_by_id(session, models.Volume, volume_id,
                                provider_location="loc", bootable=True)
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Volume, volume_id)
        assert (row.provider_location, row.bootable, row.status) == ("loc", True, "creating")
    with pytest.raises(exception.InvalidInput):
        with sqlite_database.writer() as session:
            repository.update_by_id(session, models.Volume, volume_id, status="available")
    with pytest.raises(exception.InvalidInput):
        with sqlite_database.writer() as session:
            repository.update_by_id(session, models.Volume, volume_id, no_such_field=1)
    with pytest.raises(exception.VolumeNotFound):
        with sqlite_database.writer() as session:
            repository.update_by_id(session, models.Volume, "missing", size=2)


def test_finish_writes_once_then_leaves_the_row_to_the_next_request(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="creating", size=2).id
    with sqlite_database.writer() as session:
        assert repository.finish(session, models.Volume, volume_id, "available",
                                 in_progress="creating", status_reason=None) is True
        repository.transition(session, models.Volume, volume_id, "deleting")
    with sqlite_database.writer() as session:   # the step again, after the API moved on
        assert repository.finish(session, models.Volume, volume_id, "available",
                                 in_progress="creating") is False
        assert repository.get(session, models.Volume, volume_id).status == "deleting"
        repository.soft_delete(session, repository.get(session, models.Volume, volume_id))
    with sqlite_database.writer() as session:   # gone: also "not any more in progress"
        assert repository.finish(session, models.Volume, volume_id, "available",
                                 in_progress="creating") is False


def test_finish_with_a_pending_condition_tells_a_later_request_in_the_same_status(
        sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="extending", size=3).id
    with sqlite_database.writer() as session:   # size 3 already: this extend to 3 is done
        assert repository.finish(session, models.Volume, volume_id, "available",
                                 in_progress="extending", pending=(models.Volume.size < 3,),
                                 size=3) is False
        assert repository.get(session, models.Volume, volume_id).status == "extending"
        assert repository.finish(session, models.Volume, volume_id, "available",
                                 in_progress="extending", pending=(models.Volume.size < 4,),
                                 size=4) is True


def test_finish_refuses_a_move_the_status_rules_forbid(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="creating").id
    with sqlite_database.writer() as session:
        with pytest.raises(exception.InvalidStatusTransition):
            repository.finish(session, models.Volume, volume_id, "extending",
                              in_progress="creating")


@pytest.mark.parametrize("write", ["update_by_id", "transition", "finish"])
def test_id_updates_come_after_what_the_session_still_holds(sqlite_database, write):
    """The id-based UPDATEs are Core statements, which the ORM does not autoflush before:
    a change still held by the session must be flushed first, or its flush at commit would
    overwrite the UPDATE (here ``status_reason``)."""
    with sqlite_database.writer() as session:
        volume_id = _volume(session, status="creating").id
    with sqlite_database.writer() as session:
        repository.get(session, models.Volume, volume_id).status_reason = "held"
        if write == "update_by_id":
            repository.update_by_id(session, models.Volume, volume_id, status_reason="written")
        elif write == "transition":
            repository.transition(session, models.Volume, volume_id, "available",
                                  fetch=False, status_reason="written")
        else:
            assert repository.finish(session, models.Volume, volume_id, "available",
                                     in_progress="creating", status_reason="written")
    with sqlite_database.reader() as session:
        assert repository.get(session, models.Volume, volume_id).status_reason == "written"


def test_id_update_of_an_unknown_field_is_refused(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = _volume(session).id
        with pytest.raises(exception.InvalidInput, match="no field 'sizee'"):
            repository.update_by_id(session, models.Volume, volume_id, sizee=2)


def test_a_volume_view_from_a_core_row_equals_the_one_from_the_model(sqlite_database):
    """The manager reads a request's volume as a Core row (``get_columns``); the view it
    makes must be the one the ORM row gives, ``name`` included."""
    from blockmgr.interface import objects

    with sqlite_database.writer() as session:
        volume_id = _volume(session, host="h@b#p", provider_location="loc",
                            project_id="p1").id
    with sqlite_database.reader() as session:
        row = repository.get_columns(session, models.Volume, volume_id,
                                     objects.VOLUME_VIEW_COLUMNS)
        orm = repository.get(session, models.Volume, volume_id)
        assert objects.VolumeView.from_model(row) == objects.VolumeView.from_model(orm)
        assert objects.VolumeView.from_model(row).name == "volume-%s" % volume_id
