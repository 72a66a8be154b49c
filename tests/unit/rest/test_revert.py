"""``POST /volumes/{id}/action`` ``{"revert": {"snapshot_id": ...}}`` (microversion 3.40)
over the in-process stack with the loopback backend: the volume's file gets the snapshot's
bytes back; Cinder's refusals (404 below 3.40, 400 for the wrong snapshot or size, 409 for a
status) write nothing."""

from __future__ import annotations

import os

from tests.unit.rest.conftest import PROJECT, Api
from tests.unit.rest.test_snapshots import snapshot
from tests.unit.rest.test_volume_actions import available
from tests.unit.rest.test_volumes import fault
from tests.unit.test_api import state_of


def _file(stack, name):
    return os.path.join(str(stack.conf.state_path), "volumes", "loopback", name)


def _write(stack, vid, data):
    with open(_file(stack, "volume-" + vid), "r+b") as f:
        f.write(data)


def _read(stack, vid, length):
    with open(_file(stack, "volume-" + vid), "rb") as f:
        return f.read(length)


def _snapshot(api, vid):
    sid = snapshot(api, vid)["id"]
    assert api.wait("snapshots/" + sid, "snapshot", ("available", "error"))["status"] \
        == "available"
    return sid


def test_revert_gives_the_volume_its_snapshot_data(http, stack):
    api = Api(http, PROJECT, version="3.40")
    vid = available(api)
    _write(stack, vid, b"kept by the snapshot")
    sid = _snapshot(api, vid)
    _write(stack, vid, b"written afterwards!!")
    response = api.post("volumes/%s/action" % vid, {"revert": {"snapshot_id": sid}})
    assert response.status_code == 202 and response.content == b"", response.text
    assert api.wait("volumes/" + vid, "volume", ("available", "error"))["status"] \
        == "available"
    assert _read(stack, vid, 20) == b"kept by the snapshot"
    assert api.get("snapshots/" + sid).json()["snapshot"]["status"] == "available"


def test_revert_refusals_write_nothing(http, stack):
    api = Api(http, PROJECT, version="3.40")
    vid = available(api)
    path = "volumes/%s/action" % vid
    db = stack.db
    before = state_of(db)
    assert "no snapshot" in fault(api.post(path, {"revert": {"snapshot_id": vid}}), 400)
    old = _snapshot(api, vid)
    latest = _snapshot(api, vid)
    before = state_of(db)
    message = fault(api.post(path, {"revert": {"snapshot_id": old}}), 400)
    assert "not the latest" in message and latest in message
    assert "snapshot_id" in fault(api.post(path, {"revert": {}}), 400)
    assert fault(api.post(path, {"revert": None}), 400)
    # below 3.40 the action does not exist (Cinder: 404)
    assert "3.40" in fault(Api(http, PROJECT, version="3.39").post(
        path, {"revert": {"snapshot_id": latest}}), 404)
    assert "3.40" in fault(Api(http, PROJECT).post(
        path, {"revert": {"snapshot_id": latest}}), 404)
    # another project's volume is not found
    assert fault(Api(http, "pB", version="3.40").post(
        path, {"revert": {"snapshot_id": latest}}), 404)
    assert state_of(db) == before


def test_revert_of_an_extended_volume_or_a_busy_one_is_refused(http, stack):
    api = Api(http, PROJECT, version="3.40")
    vid = available(api)
    path = "volumes/%s/action" % vid
    sid = _snapshot(api, vid)
    assert api.post(path, {"os-extend": {"new_size": 2}}).status_code == 202
    assert api.wait("volumes/" + vid, "volume", ("available", "error_extending"))["size"] == 2
    message = fault(api.post(path, {"revert": {"snapshot_id": sid}}), 400)
    assert "2 GiB" in message and "1 GiB" in message

    vid = available(api)
    path = "volumes/%s/action" % vid
    sid = _snapshot(api, vid)
    assert api.post(path, {"os-reserve": None}).status_code == 202
    assert "only when available" in fault(api.post(path, {"revert": {"snapshot_id": sid}}),
                                          409)
