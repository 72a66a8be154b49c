"""``/snapshots``: create, show, list/detail with paging and filters, update, delete, the
os-unmanage action; scoping; bad input refused with nothing written."""

from __future__ import annotations

import os

from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volume_actions import available
from tests.unit.rest.test_volumes import DONE, UNKNOWN, fault
from tests.unit.test_api import state_of


def snapshot(api, volume_id, **extra) -> dict:
    response = api.post("snapshots", {"snapshot": dict(volume_id=volume_id, **extra)})
    assert response.status_code == 202, response.text
    return response.json()["snapshot"]


def test_create_show_list_update_delete_and_unmanage(api, other_api, admin_api, stack):
    vid = available(api, size=2)
    first = snapshot(api, vid, name="s1", description="before upgrade", force=False,
                     metadata={})
    assert first["status"] == "creating" and first["size"] == 2
    assert first["volume_id"] == vid and first["name"] == "s1"
    assert api.wait("snapshots/" + first["id"], "snapshot", DONE)["status"] == "available"
    second = snapshot(api, vid, name="s2")
    api.wait("snapshots/" + second["id"], "snapshot", DONE)

    listed = api.get("snapshots").json()["snapshots"]
    assert [s["name"] for s in listed] == ["s2", "s1"]             # newest first
    assert "os-extended-snapshot-attributes:progress" not in listed[0]
    detail = api.get("snapshots/detail?sort=name:asc").json()["snapshots"]
    assert [s["name"] for s in detail] == ["s1", "s2"]
    assert detail[0]["os-extended-snapshot-attributes:project_id"] == "pA"
    page = api.get("snapshots?sort=name:asc&limit=1").json()
    assert [s["name"] for s in page["snapshots"]] == ["s1"]
    nxt = page["snapshots_links"][0]["href"].split("?", 1)[1]
    assert [s["name"] for s in api.get("snapshots?" + nxt).json()["snapshots"]] == ["s2"]
    assert [s["name"] for s in api.get("snapshots?name=s2").json()["snapshots"]] == ["s2"]
    assert len(api.get("snapshots?volume_id=" + vid).json()["snapshots"]) == 2
    assert api.get("snapshots?status=deleting").json()["snapshots"] == []
    v314 = Api(api.http, "pA", version="3.14")
    assert v314.get("snapshots/" + first["id"]).json()["snapshot"]["group_snapshot_id"] is None

    response = api.put("snapshots/" + first["id"], {"snapshot": {"name": "kept",
                                                                 "description": "x"}})
    assert response.status_code == 200, response.text
    assert response.json()["snapshot"]["name"] == "kept"

    # scoping: another project sees nothing, an admin sees all with all_tenants
    assert other_api.get("snapshots").json()["snapshots"] == []
    assert fault(other_api.get("snapshots/" + first["id"]), 404)
    assert fault(other_api.delete("snapshots/" + first["id"]), 404)
    assert fault(other_api.post("snapshots", {"snapshot": {"volume_id": vid}}), 404)
    assert admin_api.get("snapshots").json()["snapshots"] == []
    assert len(admin_api.get("snapshots?all_tenants=1").json()["snapshots"]) == 2

    assert api.delete("snapshots/" + second["id"]).status_code == 202
    assert api.wait("snapshots/" + second["id"], "snapshot", (None,)) == {}

    path = "snapshots/%s/action" % first["id"]
    assert "admin" in fault(api.post(path, {"os-unmanage": None}), 403)
    admin = Api(api.http, "pA", admin=True)
    assert admin.post(path, {"os-unmanage": None}).status_code == 202
    assert api.wait("snapshots/" + first["id"], "snapshot", (None,)) == {}
    directory = os.path.join(str(stack.conf.state_path), "volumes", "loopback")
    assert "volume-%s@snapshot-%s" % (vid, first["id"]) in os.listdir(directory)


BAD_CREATES = [
    ({"snapshot": {}}, 400, "snapshot.volume_id: Field required"),
    ({"snapshot": {"volume_id": "abc"}}, 400, "snapshot.volume_id"),
    ({"snapshot": {"volume_id": 42}}, 400, "snapshot.volume_id"),
    ({"snapshot": {"volume_id": UNKNOWN}}, 404, "could not be found"),
    ({"snapshot": {"volume_id": "{vid}", "force": "true"}}, 400, "snapshot.force"),
    ({"snapshot": {"volume_id": "{vid}", "name": "n" * 256}}, 400, "snapshot.name"),
    ({"snapshot": {"volume_id": "{vid}", "size": 1}}, 400, "size: unknown field"),
    ({"snapshot": {"volume_id": "{vid}", "metadata": {"a": "b"}}}, 400, "metadata"),
    ({"volume_id": "{vid}"}, 400, "snapshot: Field required"),
]


def test_bad_snapshot_requests_are_refused_and_write_nothing(api, stack):
    vid = available(api)
    sid = snapshot(api, vid)["id"]
    api.wait("snapshots/" + sid, "snapshot", DONE)
    before = state_of(stack.db)
    for body, status, expected in BAD_CREATES:
        body = _fill(body, vid)
        assert expected in fault(api.post("snapshots", body), status), body
    admin = Api(api.http, "pA", admin=True)
    for response, status, expected in [
        (api.put("snapshots/" + sid, {"snapshot": {}}), 400, "nothing to update"),
        (api.put("snapshots/" + sid, {"snapshot": {"status": "error"}}), 400,
         "status: unknown field"),
        (api.put("snapshots/" + UNKNOWN, {"snapshot": {"name": "x"}}), 404, UNKNOWN),
        (api.get("snapshots/not-a-uuid"), 404, "could not be found"),
        (api.delete("snapshots/" + UNKNOWN), 404, "could not be found"),
        (api.get("snapshots?sort=colour"), 400, "cannot sort by 'colour'"),
        (api.get("snapshots?volume=x"), 400, "cannot filter snapshots by 'volume'"),
        (api.get("snapshots?marker=" + UNKNOWN), 400, "is not a snapshot"),
        (admin.post("snapshots/%s/action" % sid, {"os-reset_status": {}}), 400,
         "status: Field required"),
        (admin.post("snapshots/%s/action" % sid, {"os-revert": {}}), 400,
         "supports os-unmanage"),
        (admin.post("snapshots/%s/action" % sid, {"os-unmanage": {"x": 1}}), 400,
         "os-unmanage"),
        (admin.post("snapshots/%s/action" % UNKNOWN, {"os-unmanage": None}), 404,
         "could not be found"),
        # a volume with a snapshot cannot be deleted without cascade
        (api.delete("volumes/" + vid), 400, "cascade"),
    ]:
        assert expected in fault(response, status)
    assert state_of(stack.db) == before
    # a snapshot being deleted cannot be deleted again
    assert api.delete("snapshots/" + sid).status_code == 202
    response = api.delete("snapshots/" + sid)
    assert response.status_code in (400, 404), response.text


def _fill(body, vid):
    if isinstance(body, dict):
        return {k: _fill(v, vid) for k, v in body.items()}
    return vid if body == "{vid}" else body


def test_a_failed_snapshot_manage_shows_error_managing_and_delete_keeps_the_file(
        api, stack, monkeypatch):
    """The manage fails after the rename and neither the name restore nor the unmanage
    fallback works: the snapshot shows ``error_managing`` with its reason, DELETE answers
    202 (``error_managing_deleting``), and the user's file is released, never deleted."""
    from blockmgr import exception
    from blockmgr.drivers.loopback.driver import LoopbackDriver
    from blockmgr.flows import manage_existing_snapshot

    def fails(*args, **kwargs):
        raise exception.VolumeBackendAPIException(reason="rename failed")

    def commit_fails(*args, **kwargs):
        raise exception.BlockmgrError("database went away")

    vid = available(api, size=1)
    directory = os.path.join(str(stack.conf.state_path), "volumes", "loopback")
    with open(os.path.join(directory, "volume-%s@legacy" % vid), "wb") as f:
        f.truncate(1024 ** 3)
        f.write(b"user data")
    admin = Api(api.http, "pA", admin=True)
    with monkeypatch.context() as patch:
        patch.setattr(manage_existing_snapshot.QuotaCommitTask, "execute", commit_fails)
        patch.setattr(LoopbackDriver, "restore_managed_snapshot_name", fails)
        patch.setattr(LoopbackDriver, "unmanage_snapshot", fails)
        response = admin.post("os-snapshot-manage", {"snapshot": {
            "volume_id": vid, "ref": {"source-name": "volume-%s@legacy" % vid}}})
        assert response.status_code == 202, response.text
        sid = response.json()["snapshot"]["id"]
        failed = api.wait("snapshots/" + sid, "snapshot", DONE + ("error_managing",))
    assert failed["status"] == "error_managing"
    assert "database went away" in failed["status_reason"]
    assert "snapshot-%s" % sid in os.listdir(directory)     # still under the snapshot's name
    assert api.get("snapshots?status=error_managing").json()["snapshots"][0]["id"] == sid

    response = api.delete("snapshots/" + sid)
    assert response.status_code == 202, response.text
    assert api.wait("snapshots/" + sid, "snapshot", (None,)) == {}
    (released,) = [n for n in os.listdir(directory) if n.endswith("snapshot-" + sid)]
    with open(os.path.join(directory, released), "rb") as f:
        assert f.read(9) == b"user data"
