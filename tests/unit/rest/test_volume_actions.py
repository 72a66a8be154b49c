"""``POST /volumes/{id}/action``: os-extend, os-initialize_connection,
os-terminate_connection, os-unmanage; one action per request; bad input writes nothing."""

from __future__ import annotations

import os

from blockmgr.db import models
from blockmgr.db import repository
from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volumes import DONE, UNKNOWN, create, fault
from tests.unit.test_api import state_of


def available(api, size=1, **extra) -> str:
    vid = create(api, size=size, **extra)["id"]
    assert api.wait("volumes/" + vid, "volume", DONE)["status"] == "available"
    return vid


def test_extend_connect_disconnect_and_unmanage(api, admin_api, stack):
    vid = available(api)
    path = "volumes/%s/action" % vid
    response = api.post(path, {"os-extend": {"new_size": 3}})
    assert response.status_code == 202 and response.content == b""
    assert api.wait("volumes/" + vid, "volume", ("available", "error_extending"))["size"] == 3

    connector = {"host": "client-1", "initiator": "iqn.2026-12.example:client-1"}
    response = api.post(path, {"os-initialize_connection": {"connector": connector}})
    try:
        assert response.status_code == 200, response.text
        info = response.json()["connection_info"]
        assert info["driver_volume_type"] == "local"
        assert info["data"]["volume_id"] == vid
    finally:
        response = api.post(path, {"os-terminate_connection": {"connector": connector}})
        assert response.status_code == 202, response.text
    response = api.post(path, {"os-terminate_connection": {"connector": connector,
                                                           "force": True}})
    assert response.status_code == 202
    # The connection was never attached (no os-attach): terminating it gave the hold back.
    api.wait("volumes/" + vid, "volume", ("available",))

    # unmanage is for admins; the file stays on the backend under another name
    assert "admin" in fault(api.post(path, {"os-unmanage": None}), 403)
    admin = Api(api.http, "pA", admin=True)
    assert admin.post(path, {"os-unmanage": None}).status_code == 202
    assert api.wait("volumes/" + vid, "volume", (None, "error_unmanaging")) == {}
    directory = os.path.join(str(stack.conf.state_path), "volumes", "loopback")
    assert "unmanaged-volume-" + vid in os.listdir(directory)
    assert api.get("volumes").json()["volumes"] == []


BAD_ACTIONS = [
    ({"os-extend": {"new_size": "3"}}, 400, "new_size"),
    ({"os-extend": {"new_size": 2.0}}, 400, "new_size"),
    ({"os-extend": {"new_size": -1}}, 400, "greater than or equal to 1"),
    ({"os-extend": {"new_size": 2 ** 40}}, 400, "less than or equal to"),
    ({"os-extend": {"new_size": 1}}, 400, "must be larger than the current 1 GiB"),
    ({"os-extend": {"new_size": 5000}}, 413, "Quota exceeded"),
    ({"os-extend": {}}, 400, "new_size: Field required"),
    ({"os-extend": None}, 400, "os-extend needs its arguments"),
    ({"os-extend": {"new_size": 2, "force": True}}, 400, "force: unknown field"),
    ({"os-initialize_connection": {"connector": "iqn.x"}}, 400, "connector"),
    ({"os-initialize_connection": {}}, 400, "connector: Field required"),
    ({"os-terminate_connection": {"connector": {}, "force": "yes"}}, 400, "force"),
    ({"os-unmanage": {"now": True}}, 400, "now: unknown field"),
    ({"os-retype": {"new_type": "gold"}}, 400,
     "unknown volume action 'os-retype'; this server supports os-extend"),
    ({"os-reset_status": {"status": "available"}}, 403, "os-reset_status for a non-admin"),
    ({"os-attach": {"mode": "rx"}}, 400, "mode"),
    ({"os-extend": {"new_size": 2}, "os-unmanage": None}, 400, "exactly one action"),
    ({}, 400, "exactly one action"),
    ([], 400, "must be an object naming one action"),
    ("os-unmanage", 400, "must be an object"),
]


def test_bad_actions_are_refused_and_write_nothing(api, other_api, stack):
    vid = available(api)
    snap = api.post("snapshots", {"snapshot": {"volume_id": vid}}).json()["snapshot"]
    api.wait("snapshots/" + snap["id"], "snapshot", DONE)
    before = state_of(stack.db)
    path = "volumes/%s/action" % vid
    for body, status, expected in BAD_ACTIONS:
        assert expected in fault(api.post(path, body), status), body
    admin = Api(api.http, "pA", admin=True)
    for response, status, expected in [
        (api.post("volumes/%s/action" % UNKNOWN, {"os-extend": {"new_size": 2}}), 404,
         UNKNOWN),
        (api.post("volumes/bad/action", {"os-extend": {"new_size": 2}}), 404, "bad"),
        (other_api.post(path, {"os-initialize_connection": {"connector": {}}}), 404, vid),
        # a volume with snapshots cannot be unmanaged (the snapshot rows would dangle)
        (admin.post(path, {"os-unmanage": None}), 400, "snapshot"),
    ]:
        assert expected in fault(response, status)
    assert state_of(stack.db) == before


def test_actions_on_a_volume_in_the_wrong_status_are_refused(api, stack):
    vid = available(api)
    with stack.db.writer() as session:     # what a failed operation leaves behind
        repository.transition(session, models.Volume, vid, "error", expected=("available",))
    before = state_of(stack.db)
    admin = Api(api.http, "pA", admin=True)
    path = "volumes/%s/action" % vid
    for response, expected in [
        (api.post(path, {"os-extend": {"new_size": 2}}), "must be available or in-use"),
        (api.post(path, {"os-initialize_connection": {"connector": {}}}), "is error"),
        (admin.post(path, {"os-unmanage": None}), "only an available volume"),
        (api.post("snapshots", {"snapshot": {"volume_id": vid}}), "is error"),
    ]:
        assert expected in fault(response, 400)
    assert state_of(stack.db) == before
    assert api.delete("volumes/" + vid).status_code == 202     # error volumes can go
    api.wait("volumes/" + vid, "volume", (None,))
