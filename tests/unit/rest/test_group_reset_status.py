"""The admin ``reset_status`` actions of groups (3.20) and group snapshots (3.19): the
status changes, a lower version is a ``404`` naming the version, a non-admin a ``403``, a
status no reset may choose a ``400``, and nothing changes when refused."""

from __future__ import annotations

from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volumes import fault


def test_reset_group_and_group_snapshot_status(http):
    admin = Api(http, "pA", admin=True, version="3.20")
    member = Api(http, "pA", version="3.20")
    group = admin.post("groups", {"group": {"name": "g"}}).json()["group"]
    admin.wait("groups/" + group["id"], "group", {"available"})
    volume = admin.post("volumes", {"volume": {"size": 1, "group_id": group["id"]}})
    admin.wait("volumes/" + volume.json()["volume"]["id"], "volume", {"available"})
    gsnap = admin.post("group_snapshots", {"group_snapshot": {"group_id": group["id"]}})
    gsnap_id = gsnap.json()["group_snapshot"]["id"]
    admin.wait("group_snapshots/" + gsnap_id, "group_snapshot", {"available"})

    group_url, gsnap_url = "groups/%s/action" % group["id"], "group_snapshots/%s/action" % (
        gsnap_id)
    reset = {"reset_status": {"status": "error"}}
    assert "3.20" in fault(Api(http, "pA", admin=True, version="3.19").post(
        group_url, reset), 404)
    assert "3.19" in fault(Api(http, "pA", admin=True, version="3.18").post(
        gsnap_url, reset), 404)
    assert fault(member.post(group_url, reset), 403)
    assert fault(member.post(gsnap_url, reset), 403)
    assert "reset to one of" in fault(admin.post(group_url, {"reset_status": {
        "status": "creating"}}), 400)
    assert fault(admin.post(gsnap_url, {"reset_status": {"status": "nonsense"}}), 400)
    assert fault(admin.post(group_url, {"reset_status": {"status": 1}}), 400)
    assert fault(admin.post(group_url, {**reset, "delete": {}}), 400)
    assert fault(admin.post(gsnap_url, {"delete": {}}), 400)
    assert admin.get("groups/" + group["id"]).json()["group"]["status"] == "available"
    assert admin.get("group_snapshots/" + gsnap_id).json()[
        "group_snapshot"]["status"] == "available"

    response = admin.post(gsnap_url, reset)
    assert response.status_code == 202 and response.content == b"", response.text
    assert admin.get("group_snapshots/" + gsnap_id).json()[
        "group_snapshot"]["status"] == "error"
    response = admin.post(group_url, reset)
    assert response.status_code == 202, response.text
    assert admin.get("groups/" + group["id"]).json()["group"]["status"] == "error"
    response = admin.post(group_url, {"reset_status": {"status": "available"}})
    assert response.status_code == 202, response.text
    assert admin.get("groups/" + group["id"]).json()["group"]["status"] == "available"
