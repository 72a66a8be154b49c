"""``/group_snapshots`` over the real stack: shapes, listing, scoping, the 3.14 gate, and
bad input -> a 4xx fault with nothing written."""

from __future__ import annotations

from tests.unit.rest.conftest import OTHER
from tests.unit.rest.conftest import PROJECT
from tests.unit.rest.conftest import Api
from tests.unit.rest.test_groups import UNKNOWN
from tests.unit.rest.test_groups import V
from tests.unit.rest.test_groups import create_group
from tests.unit.rest.test_groups import create_volume
from tests.unit.rest.test_groups import gapi  # noqa: F401  (fixture)
from tests.unit.test_api import state_of


def snapshot_group(gapi: Api, name: str) -> tuple[str, dict]:
    gid = create_group(gapi)["id"]
    create_volume(gapi, group_id=gid)
    response = gapi.post("group_snapshots", {"group_snapshot": {"group_id": gid,
                                                                "name": name,
                                                                "description": "d"}})
    assert response.status_code == 202, response.text
    gsnap = response.json()["group_snapshot"]
    return gid, gapi.wait("group_snapshots/%s" % gsnap["id"], "group_snapshot",
                          {"available", "error"})


def test_show_list_and_delete(http, gapi):
    gid, gsnap = snapshot_group(gapi, "one")
    assert gsnap["status"] == "available"
    assert set(gsnap) >= {"id", "name", "description", "status", "group_id",
                          "group_type_id", "created_at"}
    assert gsnap["group_id"] == gid and gsnap["description"] == "d"
    summary = gapi.get("group_snapshots").json()["group_snapshots"]
    assert summary == [{"id": gsnap["id"], "name": "one"}]
    detail = gapi.get("group_snapshots/detail?group_id=%s" % gid).json()["group_snapshots"]
    assert [g["id"] for g in detail] == [gsnap["id"]]
    assert gapi.get("group_snapshots/detail?group_id=%s" % UNKNOWN).json()[
        "group_snapshots"] == []
    paged = gapi.get("group_snapshots?limit=1").json()
    assert paged["group_snapshots_links"][0]["rel"] == "next"

    other = Api(http, OTHER, version=V)
    assert other.get("group_snapshots/%s" % gsnap["id"]).status_code == 404
    assert other.delete("group_snapshots/%s" % gsnap["id"]).status_code == 404
    assert other.get("group_snapshots").json()["group_snapshots"] == []

    response = gapi.delete("group_snapshots/%s" % gsnap["id"])
    assert response.status_code == 202 and response.content == b""
    gapi.wait("group_snapshots/%s" % gsnap["id"], "group_snapshot", {None})


def test_group_snapshots_need_microversion_3_14(http):
    response = Api(http, PROJECT, version="3.13").get("group_snapshots")
    assert response.status_code == 404
    assert "3.14" in response.json()["itemNotFound"]["message"]


def test_bad_input_is_a_fault_and_writes_nothing(stack, gapi):
    empty = create_group(gapi, name="empty")["id"]
    cases = [
        ({"group_snapshot": {"group_id": empty}}, 400),                    # no volumes
        ({"group_snapshot": {"group_id": UNKNOWN}}, 404),
        ({"group_snapshot": {"group_id": "not-a-uuid"}}, 400),
        ({"group_snapshot": {"group_id": 7}}, 400),
        ({"group_snapshot": {"name": "no group"}}, 400),
        ({"group_snapshot": {"group_id": empty, "force": True}}, 400),
        ({"group_snapshot": {"group_id": empty, "name": ["x"]}}, 400),
        ({"snapshot": {"group_id": empty}}, 400),
        ([], 400),
    ]
    before = state_of(stack.db)
    for body, status in cases:
        response = gapi.post("group_snapshots", body)
        assert response.status_code == status, (body, response.text)
        (fault,) = response.json().values()
        assert fault["code"] == status, (body, fault)
        assert state_of(stack.db) == before, body
    for path, status in [("group_snapshots/" + UNKNOWN, 404),
                         ("group_snapshots/nope", 404)]:
        assert gapi.delete(path).status_code == status
        assert gapi.get(path).status_code == status
    for query in ("sort=volume_id:asc", "marker=" + UNKNOWN, "offset=-2",
                  "sort_dir=up", "volume_id=" + UNKNOWN, "status=melted"):
        response = gapi.get("group_snapshots?" + query)
        assert response.status_code == 400, (query, response.text)
    assert state_of(stack.db) == before
