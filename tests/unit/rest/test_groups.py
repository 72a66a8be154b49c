"""``/groups`` over the real in-process stack (loopback backend): life cycle, listing, the
microversion gate, project scoping, and bad input -> a 4xx fault with nothing written."""

from __future__ import annotations

import pytest

from tests.unit.rest.conftest import OTHER
from tests.unit.rest.conftest import PROJECT
from tests.unit.rest.conftest import Api
from tests.unit.test_api import state_of

V = "3.14"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def gapi(http) -> Api:
    return Api(http, PROJECT, version=V)


def create_group(gapi: Api, **fields) -> dict:
    body = {"group": dict({"name": "g", "group_type": "cg", "volume_types": ["gold"]},
                          **fields)}
    response = gapi.post("groups", body)
    assert response.status_code == 202, response.text
    group = response.json()["group"]
    return gapi.wait("groups/%s" % group["id"], "group", {"available", "error"})


def create_volume(gapi: Api, **fields) -> dict:
    response = gapi.post("volumes", {"volume": dict({"size": 1}, **fields)})
    assert response.status_code == 202, response.text
    vid = response.json()["volume"]["id"]
    return gapi.wait("volumes/%s" % vid, "volume", {"available", "error"})


def test_group_life_cycle(gapi):
    group = create_group(gapi, description="first")
    assert group["status"] == "available"
    assert group["group_type"] == "cg" and group["volume_types"] == ["gold"]
    assert group["description"] == "first" and group["group_snapshot_id"] is None
    gid = group["id"]
    member = create_volume(gapi, group_id=gid)
    assert member["status"] == "available" and member["group_id"] == gid
    loose = create_volume(gapi)

    # rename + add a volume in one update: 202, the worker changes the membership
    response = gapi.put("groups/%s" % gid, {"group": {"name": "renamed",
                                                      "add_volumes": loose["id"]}})
    assert response.status_code == 202 and response.content == b""
    group = gapi.wait("groups/%s" % gid, "group", {"available"})
    assert group["name"] == "renamed"
    assert gapi.get("volumes/%s" % loose["id"]).json()["volume"]["group_id"] == gid

    response = gapi.post("group_snapshots", {"group_snapshot": {"group_id": gid,
                                                                "name": "gs"}})
    assert response.status_code == 202, response.text
    gsnap = response.json()["group_snapshot"]
    assert gsnap["group_id"] == gid and gsnap["status"] == "creating"
    gsnap = gapi.wait("group_snapshots/%s" % gsnap["id"], "group_snapshot", {"available"})

    response = gapi.post("groups/action", {"create-from-src": {
        "group_snapshot_id": gsnap["id"], "name": "copy"}})
    assert response.status_code == 202, response.text
    copy = response.json()["group"]
    assert copy["group_snapshot_id"] == gsnap["id"] and copy["name"] == "copy"
    copy = gapi.wait("groups/%s" % copy["id"], "group", {"available"})
    copies = gapi.get("volumes/detail?group_id=%s" % copy["id"]).json()["volumes"]
    assert len(copies) == 2

    # a group with volumes is deleted only with delete-volumes
    response = gapi.post("groups/%s/action" % copy["id"], {"delete": {}})
    assert response.status_code == 400
    assert "delete_volumes" in response.json()["badRequest"]["message"]
    response = gapi.post("groups/%s/action" % copy["id"],
                         {"delete": {"delete-volumes": True}})
    assert response.status_code == 202 and response.content == b""
    gapi.wait("groups/%s" % copy["id"], "group", {None})

    assert gapi.delete("group_snapshots/%s" % gsnap["id"]).status_code == 202
    gapi.wait("group_snapshots/%s" % gsnap["id"], "group_snapshot", {None})
    assert gapi.post("groups/%s/action" % gid,
                     {"delete": {"delete-volumes": True}}).status_code == 202
    gapi.wait("groups/%s" % gid, "group", {None})
    assert gapi.get("volumes/%s" % member["id"]).status_code == 404


def test_group_from_a_source_group(gapi):
    source = create_group(gapi)
    create_volume(gapi, group_id=source["id"])
    response = gapi.post("groups/action", {"create-from-src": {
        "source_group_id": source["id"].upper(), "description": "clone"}})
    assert response.status_code == 202, response.text
    clone = gapi.wait("groups/%s" % response.json()["group"]["id"], "group", {"available"})
    assert clone["source_group_id"] == source["id"] and clone["description"] == "clone"


def test_listing_summary_detail_paging_and_filters(gapi):
    ids = [gapi.post("groups", {"group": {"name": n}}).json()["group"]["id"]
           for n in ("b", "a", "c")]
    summary = gapi.get("groups").json()["groups"]
    assert [set(g) for g in summary] == [{"id", "name"}] * 3
    assert [g["id"] for g in summary] == ids[::-1]                 # newest first
    detail = gapi.get("groups/detail?sort=name:asc").json()["groups"]
    assert [g["name"] for g in detail] == ["a", "b", "c"]
    assert {"status", "volume_types", "group_type", "created_at"} <= set(detail[0])

    first = gapi.get("groups?sort_key=name&sort_dir=asc&limit=2").json()
    assert [g["name"] for g in first["groups"]] == ["a", "b"]
    (link,) = first["groups_links"]
    assert link["rel"] == "next" and "marker=%s" % ids[0] in link["href"]
    rest = gapi.get("groups?sort_key=name&sort_dir=asc&limit=2&marker=%s" % ids[0]).json()
    assert [g["name"] for g in rest["groups"]] == ["c"] and "groups_links" not in rest
    assert [g["name"] for g in gapi.get("groups?name=a").json()["groups"]] == ["a"]


def test_groups_need_microversion_3_13(http):
    plain = Api(http, PROJECT)
    response = plain.get("groups")
    assert response.status_code == 404
    assert "3.13" in response.json()["itemNotFound"]["message"]
    response = Api(http, PROJECT, version="3.13").post("groups/action", {
        "create-from-src": {"source_group_id": UNKNOWN}})
    assert response.status_code == 404 and "3.14" in response.text
    assert Api(http, PROJECT, version="3.13").get("groups").status_code == 200


def test_another_projects_group_is_not_found(http, gapi):
    gid = gapi.post("groups", {"group": {"name": "mine"}}).json()["group"]["id"]
    other = Api(http, OTHER, version=V)
    assert other.get("groups/%s" % gid).status_code == 404
    assert other.get("groups").json()["groups"] == []
    assert other.put("groups/%s" % gid, {"group": {"name": "x"}}).status_code == 404
    assert other.post("groups/%s/action" % gid, {"delete": {}}).status_code == 404
    admin = Api(http, "admin", admin=True, version=V)
    assert admin.get("groups").json()["groups"] == []
    assert [g["id"] for g in admin.get("groups?all_tenants=1").json()["groups"]] == [gid]
    assert admin.get("groups/%s" % gid).status_code == 200


BAD_INPUT = [
    ("post", "groups", {"group": {"name": "x", "colour": "red"}}, 400),
    ("post", "groups", {"group": {"name": 5}}, 400),
    ("post", "groups", {"group": {"name": "x" * 256}}, 400),
    ("post", "groups", {"group": {"name": "nul\x00"}}, 400),
    ("post", "groups", {"group": {"volume_types": "gold"}}, 400),
    ("post", "groups", {"group": {"volume_types": [""]}}, 400),
    ("post", "groups", {"group": {"group_type": "t" * 37}}, 400),
    ("post", "groups", {"name": "no wrapper"}, 400),
    ("post", "groups", None, 400),
    ("put", "groups/{gid}", {"group": {}}, 400),
    ("put", "groups/{gid}", {"group": {"add_volumes": "not-a-uuid"}}, 400),
    ("put", "groups/{gid}", {"group": {"add_volumes": ",,"}}, 400),
    ("put", "groups/{gid}", {"group": {"add_volumes": UNKNOWN}}, 404),
    ("put", "groups/{gid}", {"group": {"remove_volumes": "{vid}"}}, 400),   # not a member
    ("put", "groups/{gid}", {"group": {"add_volumes": "{vid}", "remove_volumes": "{vid}"}},
     400),
    ("put", "groups/" + UNKNOWN, {"group": {"name": "x"}}, 404),
    ("put", "groups/not-a-uuid", {"group": {"name": "x"}}, 404),
    ("post", "groups/{gid}/action", {"reset_status": {"status": "error"}}, 404),  # < 3.20
    ("post", "groups/{gid}/action", {"reset_status": None}, 400),
    ("post", "groups/{gid}/action", {"replication": {}}, 400),
    ("post", "groups/{gid}/action", {"delete": {"delete-volumes": "maybe"}}, 400),
    ("post", "groups/{gid}/action", {"delete": {"cascade": True}}, 400),
    ("post", "groups/{gid}/action", {"delete": {}, "extra": {}}, 400),
    ("post", "groups/action", {"create-from-src": {}}, 400),
    ("post", "groups/action", {"create-from-src": {"source_group_id": "{gid}",
                                                   "group_snapshot_id": UNKNOWN}}, 400),
    ("post", "groups/action", {"create-from-src": {"source_group_id": "nope"}}, 400),
    ("post", "groups/action", {"create-from-src": {"group_snapshot_id": UNKNOWN}}, 404),
    ("get", "groups?sort=host:asc", None, 400),
    ("get", "groups?sort=name:sideways", None, 400),
    ("get", "groups?limit=-1", None, 400),
    ("get", "groups?colour=red", None, 400),
    ("get", "groups/detail?status=melted", None, 400),
    ("get", "groups?all_tenants=perhaps", None, 400),
    ("get", "groups?marker=" + UNKNOWN, None, 400),
    ("get", "groups/" + UNKNOWN, None, 404),
]


def test_bad_input_is_a_fault_and_writes_nothing(stack, gapi):
    """One stack for every case (starting one per case would cost seconds each)."""
    gid = create_group(gapi)["id"]
    vid = create_volume(gapi)["id"]
    before = state_of(stack.db)
    for method, path, body, status in BAD_INPUT:
        path = path.format(gid=gid, vid=vid)
        args = () if method == "get" else (_format(body, gid=gid, vid=vid),)
        response = getattr(gapi, method)(path, *args)
        case = "%s %s %r -> %s" % (method, path, body, response.text)
        assert response.status_code == status, case
        (fault,) = response.json().values()
        assert fault["code"] == status and fault["message"], case
        assert state_of(stack.db) == before, case


def _format(value, **names):
    if isinstance(value, dict):
        return {k: _format(v, **names) for k, v in value.items()}
    if isinstance(value, str):
        return value.format(**names)
    return value
