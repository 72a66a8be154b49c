"""``/attachments`` (3.27, ``os-complete`` 3.44) and the attach / admin volume and snapshot
actions over the real in-process stack (loopback backend): statuses, codes, refusals."""

from __future__ import annotations

from blockmgr.db import models
from blockmgr.db import repository
from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volume_actions import available
from tests.unit.rest.test_volumes import UNKNOWN, fault

INSTANCE = "3f1e4c2a-9d8b-4a7c-8e6f-5d4c3b2a1f0e"
CONNECTOR = {"host": "client-1", "initiator": "iqn.2026-12.example:client-1"}
V344 = {"OpenStack-API-Version": "volume 3.44"}


def volume_status(api, vid) -> tuple[str, str]:
    body = api.get("volumes/" + vid).json()["volume"]
    return body["status"], body.get("attach_status", "")


def test_attachments_need_3_27(api):
    assert api.get("attachments").status_code == 404
    response = api.get("attachments", headers={"OpenStack-API-Version": "volume 3.27"})
    assert response.status_code == 200 and response.json() == {"attachments": []}


def test_attachment_lifecycle_and_refusals_while_attached(api, admin_api, stack):
    vid = available(api)
    response = api.post("attachments", {"attachment": {"volume_uuid": vid,
                                                       "instance_uuid": INSTANCE}},
                        headers=V344)
    assert response.status_code == 200, response.text
    att = response.json()["attachment"]
    assert att["status"] == "reserved" and att["instance"] == INSTANCE
    assert api.get("volumes/" + vid).json()["volume"]["status"] == "reserved"

    # Nothing destructive while held: 400 with a message naming the cause.
    assert "attached or reserved" in fault(api.delete("volumes/" + vid), 400)
    assert "attached or reserved" in fault(api.delete("volumes/%s?cascade=true" % vid), 400)
    response = Api(api.http, api.project, admin=True).post(
        "volumes/%s/action" % vid, {"os-unmanage": None})
    assert "attached or reserved" in fault(response, 400)
    assert "must be available" in fault(api.post("volumes/%s/action" % vid,
                                                 {"os-extend": {"new_size": 2}}), 400)

    response = api.put("attachments/" + att["id"], {"attachment": {"connector": CONNECTOR}},
                       headers=V344)
    assert response.status_code == 200, response.text
    att = response.json()["attachment"]
    info = att["connection_info"]
    assert att["status"] == "attaching" and info["driver_volume_type"] == "local"
    assert info["data"]["device_path"] and info["data"]["volume_id"] == vid

    response = api.post("attachments/%s/action" % att["id"], {"os-complete": None},
                        headers={"OpenStack-API-Version": "volume 3.43"})
    assert response.status_code == 404
    response = api.post("attachments/%s/action" % att["id"], {"os-complete": None},
                        headers=V344)
    assert response.status_code == 204, response.text
    assert api.get("volumes/" + vid).json()["volume"]["status"] == "in-use"
    listed = api.get("attachments/detail?volume_id=" + vid, headers=V344).json()
    assert [a["status"] for a in listed["attachments"]] == ["attached"]
    # The volume view names its attachment, as Nova and cinderclient expect.
    shown = api.get("volumes/" + vid).json()["volume"]["attachments"]
    assert [(a["attachment_id"], a["server_id"]) for a in shown] == [(att["id"], INSTANCE)]
    page = api.get("volumes/detail").json()["volumes"]
    assert [v["attachments"] for v in page if v["id"] == vid] == [shown]
    assert "attached or reserved" in fault(api.delete("volumes/" + vid), 400)

    # In-use extend: the loopback driver extends attached volumes (3.42).
    response = api.post("volumes/%s/action" % vid, {"os-extend": {"new_size": 2}},
                        headers={"OpenStack-API-Version": "volume 3.42"})
    assert response.status_code == 202, response.text
    assert api.wait("volumes/" + vid, "volume", ("in-use", "error_extending"))["size"] == 2

    response = api.delete("attachments/" + att["id"], headers=V344)
    assert response.status_code == 200, response.text
    assert response.json() == {"attachments": []}
    assert api.wait("volumes/" + vid, "volume", ("available", "in-use"))["status"] == \
        "available"
    assert api.get("attachments/" + att["id"], headers=V344).status_code == 404
    response = api.delete("volumes/" + vid)
    assert response.status_code == 202


def test_attachment_bad_input(api):
    vid = available(api)
    for body in ({"attachment": {}}, {"attachment": {"volume_uuid": "x"}},
                 {"attachment": {"volume_uuid": vid, "mode": "rw"}},
                 {"attachment": {"volume_uuid": vid, "connector": "iqn"}},
                 {"attachment": {"volume_uuid": vid, "unknown": 1}}):
        response = api.post("attachments", body, headers=V344)
        assert response.status_code == 400, (body, response.text)
    assert api.post("attachments", {"attachment": {"volume_uuid": UNKNOWN}},
                    headers=V344).status_code == 404
    assert api.get("attachments/not-a-uuid", headers=V344).status_code == 404
    assert api.get("attachments?host=x", headers=V344).status_code == 400
    assert volume_status(api, vid)[0] == "available"


def test_legacy_actions(api, stack):
    vid = available(api)
    path = "volumes/%s/action" % vid
    assert api.post(path, {"os-reserve": None}).status_code == 202
    assert volume_status(api, vid)[0] == "attaching"
    response = api.post(path, {"os-initialize_connection": {"connector": CONNECTOR}})
    assert response.status_code == 200, response.text
    assert api.post(path, {"os-attach": {"instance_uuid": INSTANCE,
                                         "mountpoint": "/dev/vdb"}}).status_code == 202
    assert volume_status(api, vid)[0] == "in-use"
    assert api.post(path, {"os-begin_detaching": None}).status_code == 202
    assert volume_status(api, vid)[0] == "detaching"
    assert api.post(path, {"os-roll_detaching": None}).status_code == 202
    assert volume_status(api, vid)[0] == "in-use"
    assert api.post(path, {"os-terminate_connection": {"connector": CONNECTOR}}
                    ).status_code == 202
    assert api.post(path, {"os-detach": {}}).status_code == 202
    api.wait("volumes/" + vid, "volume", ("available",))
    assert "only an attaching" in fault(api.post(path, {"os-unreserve": None}), 400)
    assert api.post(path, {"os-attach": {}}).status_code == 400


def test_initialize_connection_alone_holds_the_volume(api, stack):
    """Issue: a volume handed out by os-initialize_connection stayed available and could be
    deleted (its data removed under the consumer), extended and unmanaged."""
    vid = available(api)
    path = "volumes/%s/action" % vid
    response = api.post(path, {"os-initialize_connection": {"connector": CONNECTOR}})
    assert response.status_code == 200, response.text
    assert volume_status(api, vid)[0] == "attaching"
    assert "attached or reserved" in fault(api.delete("volumes/" + vid), 400)
    assert "must be available" in fault(api.post(path, {"os-extend": {"new_size": 2}},
                                                 headers={"OpenStack-API-Version":
                                                          "volume 3.42"}), 400)
    as_admin = Api(api.http, api.project, admin=True)
    assert "attached or reserved" in fault(as_admin.post(path, {"os-unmanage": None}), 400)
    assert api.post(path, {"os-terminate_connection": {"connector": CONNECTOR}}
                    ).status_code == 202
    api.wait("volumes/" + vid, "volume", ("available",))
    assert api.delete("volumes/" + vid).status_code == 202


def test_admin_actions_are_admin_only(api, admin_api, stack):
    vid = available(api)
    as_admin = Api(api.http, api.project, admin=True)
    for action in ({"os-reset_status": {"status": "error"}}, {"os-force_delete": None},
                   {"os-force_detach": {}}):
        response = api.post("volumes/%s/action" % vid, action)
        assert response.status_code == 403, (action, response.text)
    response = as_admin.post("volumes/%s/action" % vid,
                             {"os-reset_status": {"status": "creating"}})
    assert "cannot be reset" in fault(response, 400)


def test_error_extending_reset_and_force_delete(api, stack):
    vid = available(api)
    with stack.db.writer() as session:
        repository.transition(session, models.Volume, vid, "extending")
        repository.transition(session, models.Volume, vid, "error_extending")
    as_admin = Api(api.http, api.project, admin=True)
    response = as_admin.post("volumes/%s/action" % vid,
                             {"os-reset_status": {"status": "available",
                                                  "attach_status": "detached"}})
    assert response.status_code == 202, response.text
    assert volume_status(api, vid)[0] == "available"
    response = api.post("volumes/%s/action" % vid, {"os-extend": {"new_size": 2}})
    assert response.status_code == 202
    assert api.wait("volumes/" + vid, "volume", ("available", "error_extending"))["size"] == 2

    with stack.db.writer() as session:
        repository.transition(session, models.Volume, vid, "extending")
    assert as_admin.post("volumes/%s/action" % vid, {"os-force_delete": None}
                         ).status_code == 202
    api.wait("volumes/" + vid, "volume", (None,))


def test_snapshot_reset_and_force_delete(api, stack):
    vid = available(api)
    response = api.post("snapshots", {"snapshot": {"volume_id": vid}})
    sid = response.json()["snapshot"]["id"]
    api.wait("snapshots/" + sid, "snapshot", ("available",))
    as_admin = Api(api.http, api.project, admin=True)
    assert api.post("snapshots/%s/action" % sid,
                    {"os-reset_status": {"status": "error"}}).status_code == 403
    assert as_admin.post("snapshots/%s/action" % sid,
                         {"os-reset_status": {"status": "error"}}).status_code == 202
    assert api.get("snapshots/" + sid).json()["snapshot"]["status"] == "error"
    assert as_admin.post("snapshots/%s/action" % sid,
                         {"os-force_delete": None}).status_code == 202
    api.wait("snapshots/" + sid, "snapshot", (None,))


def test_multiattach_needs_the_type_and_a_backend_that_reports_it(api, stack):
    """A type asking for multiattach is placed only where the driver reports it (loopback
    does not: no valid backend); a plain volume takes one attachment only."""
    as_admin = Api(api.http, api.project, admin=True)
    response = as_admin.post("types", {"volume_type": {
        "name": "shared", "extra_specs": {"multiattach": "<is> True"}}})
    assert response.status_code == 200, response.text
    response = api.post("volumes", {"volume": {"size": 1, "volume_type": "shared"}})
    assert response.status_code == 202, response.text
    vid = response.json()["volume"]["id"]
    body = api.wait("volumes/" + vid, "volume", ("available", "error"))
    assert body["status"] == "error" and body["multiattach"] is True

    plain = available(api)
    first = api.post("attachments", {"attachment": {"volume_uuid": plain}}, headers=V344)
    assert first.status_code == 200, first.text
    second = api.post("attachments", {"attachment": {"volume_uuid": plain}}, headers=V344)
    assert "not multiattach" in fault(second, 400)
