"""``/volumes``: create (raw, from snapshot, clone), show, list/detail with paging, sorting
and filters, update, delete; project scoping; bad input refused with nothing written."""

from __future__ import annotations

from tests.unit.rest.conftest import Api
from tests.unit.test_api import state_of

DONE = ("available", "error")
UNKNOWN = "8a1f0c1e-0000-4000-8000-000000000000"


def create(api, **volume):
    response = api.post("volumes", {"volume": volume})
    assert response.status_code == 202, response.text
    return response.json()["volume"]


def fault(response, status: int) -> str:
    """The message of a Cinder fault body with ``status``."""
    assert response.status_code == status, response.text
    (body,) = response.json().values()
    assert body["code"] == status
    return body["message"]


def test_create_show_list_update_clone_and_delete(api, admin_api):
    volume = create(api, size=1, name="data", description="first")
    assert volume["status"] == "creating" and volume["size"] == 1
    assert volume["name"] == "data" and volume["bootable"] == "false"
    assert volume["links"][0]["href"].endswith("/v3/pA/volumes/" + volume["id"])
    assert "os-vol-host-attr:host" not in volume and "group_id" not in volume
    vid = volume["id"]
    shown = api.wait("volumes/" + vid, "volume", DONE)
    assert shown["status"] == "available" and shown["os-vol-tenant-attr:tenant_id"] == "pA"

    listed = api.get("volumes").json()["volumes"]
    assert [(v["id"], v["name"]) for v in listed] == [(vid, "data")]
    assert set(listed[0]) == {"id", "name", "links"}
    detail = api.get("volumes/detail").json()["volumes"]
    assert detail[0]["status"] == "available" and detail[0]["description"] == "first"

    response = api.put("volumes/" + vid, {"volume": {"name": "renamed",
                                                     "description": None}})
    assert response.status_code == 200, response.text
    assert response.json()["volume"]["name"] == "renamed"
    assert response.json()["volume"]["description"] is None
    legacy = api.put("volumes/" + vid, {"volume": {"display_name": "old-style"}})
    assert legacy.json()["volume"]["name"] == "old-style"

    # clone, then snapshot -> volume from the snapshot (size defaults to the source's)
    clone = create(api, source_volid=vid, size=2)
    snap = api.post("snapshots", {"snapshot": {"volume_id": vid}}).json()["snapshot"]
    api.wait("snapshots/" + snap["id"], "snapshot", DONE)
    restored = create(api, snapshot_id=snap["id"])
    assert restored["snapshot_id"] == snap["id"] and restored["size"] == 1
    assert api.wait("volumes/" + clone["id"], "volume", DONE)["source_volid"] == vid
    assert api.wait("volumes/" + restored["id"], "volume", DONE)["status"] == "available"

    # admin view: host attribute and group_id from 3.13
    admin = Api(api.http, "pA", admin=True, version="3.13")
    shown = admin.get("volumes/" + vid).json()["volume"]
    assert shown["os-vol-host-attr:host"].startswith("node1@loopback")
    assert "group_id" in shown and shown["group_id"] is None

    # a volume with a snapshot needs cascade; with it both go
    message = fault(api.delete("volumes/" + vid), 400)
    assert "snapshot" in message and "cascade" in message
    assert api.delete("volumes/%s?cascade=true" % vid).status_code == 202
    assert api.wait("volumes/" + vid, "volume", (None,)) == {}
    assert api.get("snapshots/" + snap["id"]).status_code in (200, 404)
    for other in (clone["id"], restored["id"]):
        assert api.delete("volumes/" + other).status_code == 202
        api.wait("volumes/" + other, "volume", (None,))
    assert api.get("volumes").json()["volumes"] == []


def test_paging_sorting_and_filters(api):
    ids = {}
    for size, name in ((3, "c"), (1, "a"), (2, "b"), (5, "e"), (4, "d")):
        ids[name] = create(api, size=size, name=name)["id"]

    def names(query):
        response = api.get("volumes" + query)
        assert response.status_code == 200, response.text
        return [v["name"] for v in response.json()["volumes"]], response.json()

    assert names("?sort=size:asc")[0] == ["a", "b", "c", "d", "e"]
    assert names("?sort=name:desc")[0] == ["e", "d", "c", "b", "a"]
    assert names("?sort_key=size&sort_dir=asc")[0] == ["a", "b", "c", "d", "e"]
    assert names("")[0] == ["d", "e", "b", "a", "c"]            # newest first
    assert names("?sort=size:asc&offset=3")[0] == ["d", "e"]

    # follow next links two at a time
    seen, query = [], "?sort=size:asc&limit=2"
    while True:
        page, body = names(query)
        seen += page
        links = body.get("volumes_links")
        if not links:
            break
        href = links[0]["href"]
        assert links[0]["rel"] == "next" and "marker=" in href
        query = "?" + href.split("?", 1)[1]
    assert seen == ["a", "b", "c", "d", "e"]
    assert names("?sort=size:asc&limit=2&marker=%s" % ids["b"])[0] == ["c", "d"]

    assert names("?name=c")[0] == ["c"]
    assert names("?display_name=c")[0] == ["c"]
    assert names("?status=error")[0] == []
    detail = api.get("volumes/detail?name=e").json()["volumes"]
    assert [v["size"] for v in detail] == [5]

    for query, expected in [
        ("?sort=color:asc", "cannot sort by 'color'"),
        ("?sort=size:sideways", "asc or desc"),
        ("?marker=" + UNKNOWN, "marker %s is not a volume" % UNKNOWN),
        ("?limit=-1", "limit"),
        ("?limit=two", "limit"),
        ("?offset=-3", "offset"),
        ("?status=melting", "status"),
        ("?colour=red", "cannot filter volumes by 'colour'"),
        ("?project_id=pB", "cannot filter"),
        ("?all_tenants=maybe", "all_tenants must be true or false"),
        ("?name=a&name=b", "more than once"),
        ("?sort=size&sort_key=size", "either sort or sort_key"),
    ]:
        assert expected in fault(api.get("volumes" + query), 400), query


def test_other_projects_ids_are_not_found_and_admin_sees_all_tenants(api, other_api,
                                                                    admin_api, stack):
    vid = create(api, size=1, name="mine")["id"]
    api.wait("volumes/" + vid, "volume", DONE)
    before = state_of(stack.db)
    assert "could not be found" in fault(other_api.get("volumes/" + vid), 404)
    assert fault(other_api.put("volumes/" + vid, {"volume": {"name": "x"}}), 404)
    assert fault(other_api.delete("volumes/" + vid), 404)
    assert fault(other_api.post("volumes", {"volume": {"source_volid": vid}}), 404)
    assert fault(other_api.post("volumes/%s/action" % vid,
                                {"os-extend": {"new_size": 2}}), 404)
    assert other_api.get("volumes").json()["volumes"] == []
    # a non-admin's all_tenants is ignored (python-cinderclient sends it on every lookup)
    assert other_api.get("volumes?all_tenants=1").json()["volumes"] == []
    assert state_of(stack.db) == before

    assert admin_api.get("volumes").json()["volumes"] == []
    everyone = admin_api.get("volumes/detail?all_tenants=1").json()["volumes"]
    assert [(v["id"], v["os-vol-tenant-attr:tenant_id"]) for v in everyone] == [(vid, "pA")]
    assert "os-vol-host-attr:host" in everyone[0]
    assert admin_api.get("volumes?all_tenants=true&project_id=pB").json()["volumes"] == []
    assert admin_api.get("volumes/" + vid).json()["volume"]["id"] == vid


BAD_CREATES = [
    ({"volume": {"size": "1"}}, 400, "volume.size"),
    ({"volume": {"size": 1.5}}, 400, "volume.size"),
    ({"volume": {"size": True}}, 400, "volume.size"),
    ({"volume": {"size": 0}}, 400, "greater than or equal to 1"),
    ({"volume": {"size": -5}}, 400, "greater than or equal to 1"),
    ({"volume": {"size": 10 ** 12}}, 400, "less than or equal to"),
    ({"volume": {"size": 2000}}, 413, "Quota exceeded"),
    ({"volume": {}}, 400, "size is required"),
    ({"volume": {"name": "x"}}, 400, "size is required"),
    ({}, 400, "volume: Field required"),
    ({"volume": {"size": 1}, "extra": 1}, 400, "extra: unknown field"),
    ({"volume": {"size": 1, "colour": "red"}}, 400, "volume.colour: unknown field"),
    ({"volume": {"size": 1, "name": "n" * 256}}, 400, "volume.name"),
    ({"volume": {"size": 1, "name": 7}}, 400, "volume.name"),
    ({"volume": {"size": 1, "snapshot_id": "not-a-uuid"}}, 400, "volume.snapshot_id"),
    ({"volume": {"source_volid": UNKNOWN}}, 404, "could not be found"),
    ({"volume": {"snapshot_id": UNKNOWN}}, 404, "could not be found"),
    ({"volume": {"size": 1, "snapshot_id": UNKNOWN, "source_volid": UNKNOWN}}, 400,
     "at most one of snapshot_id and source_volid"),
    ({"volume": {"size": 1, "volume_type": "gold"}}, 400, "volume type 'gold' does not exist"),
    ({"volume": {"size": 1, "metadata": {"k": "v"}}}, 400, "metadata is not supported"),
    ({"volume": {"size": 1, "imageRef": "img"}}, 400, "from an image is not supported"),
    ({"volume": {"size": 1, "group_id": UNKNOWN}}, 400, "needs microversion 3.13"),
    ({"volume": {"size": 1}, "OS-SCH-HNT:scheduler_hints": "near"}, 400, "scheduler_hints"),
    ([1, 2], 400, "Invalid input"),
]


def test_bad_create_bodies_are_refused_and_write_nothing(api, stack):
    vid = create(api, size=1)["id"]   # usages exist: "nothing written" compares real numbers
    api.wait("volumes/" + vid, "volume", DONE)
    before = state_of(stack.db)
    for body, status, expected in BAD_CREATES:
        assert expected in fault(api.post("volumes", body), status), body
    headers = dict(api.headers, **{"Content-Type": "application/json"})
    response = api.http.post(api.url("volumes"), headers=headers, content=b"{not json")
    assert "Invalid input" in fault(response, 400)
    response = api.http.post(api.url("volumes"), headers=api.headers, content=b"{not json")
    assert "Content-Type" in fault(response, 415)
    assert state_of(stack.db) == before


def test_bad_update_delete_and_show_requests_write_nothing(api, stack):
    vid = create(api, size=1)["id"]
    api.wait("volumes/" + vid, "volume", DONE)
    before = state_of(stack.db)
    path = "volumes/" + vid
    for response, status, expected in [
        (api.put(path, {"volume": {}}), 400, "nothing to update"),
        (api.put(path, {"volume": {"size": 2}}), 400, "volume.size: unknown field"),
        (api.put(path, {"volume": {"name": ["x"]}}), 400, "volume.name"),
        (api.put(path, {"volume": {"name": "a", "display_name": "b"}}), 400, "not both"),
        (api.put(path, {"volume": {"metadata": {"a": "b"}}}), 400, "metadata"),
        (api.put(path, {"name": "x"}), 400, "volume: Field required"),
        (api.put("volumes/" + UNKNOWN, {"volume": {"name": "x"}}), 404, UNKNOWN),
        (api.delete(path + "?cascade=perhaps"), 400, "cascade must be true or false"),
        (api.delete("volumes/" + UNKNOWN), 404, "could not be found"),
        (api.delete("volumes/not-a-uuid"), 404, "could not be found"),
        (api.get("volumes/not-a-uuid"), 404, "not-a-uuid could not be found"),
        (api.get("volumes/" + "x" * 300), 404, "could not be found"),
    ]:
        assert expected in fault(response, status)
    assert state_of(stack.db) == before
