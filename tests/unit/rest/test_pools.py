"""``GET /scheduler-stats/get_pools``: the pools of the live backends with the capacity
their workers report (admin only); filters from 3.28."""

from __future__ import annotations

from tests.unit.rest.conftest import Api

HOST = "node1@loopback"


def test_pools_are_listed_with_their_capacity_for_an_admin(admin_api, api):
    response = admin_api.get("scheduler-stats/get_pools")
    assert response.status_code == 200, response.text
    names = [p["name"] for p in response.json()["pools"]]
    assert len(names) == 1 and names[0].startswith(HOST + "#")
    assert set(response.json()["pools"][0]) == {"name"}
    (pool,) = admin_api.get("scheduler-stats/get_pools?detail=true").json()["pools"]
    caps = pool["capabilities"]
    assert caps["total_capacity_gb"] and caps["free_capacity_gb"] is not None
    assert caps["volume_backend_name"] and "allocated_capacity_gb" in caps
    assert "pools" not in caps
    # The project-less form (3.67) too.
    bare = admin_api.http.get("/v3/scheduler-stats/get_pools", headers=admin_api.headers)
    assert bare.json()["pools"] == response.json()["pools"]
    assert api.get("scheduler-stats/get_pools").status_code == 403


def test_allocated_capacity_follows_the_volumes(admin_api, api):
    created = api.post("volumes", {"volume": {"size": 2}}).json()["volume"]
    api.wait("volumes/" + created["id"], "volume", ("available",))
    (pool,) = admin_api.get("scheduler-stats/get_pools?detail=true").json()["pools"]
    assert pool["capabilities"]["allocated_capacity_gb"] == 2


def test_pool_filters_from_3_28(http):
    old = Api(http, "admin", admin=True, version="3.27")
    response = old.get("scheduler-stats/get_pools?name=x")
    assert response.status_code == 400 and "3.28" in response.text
    new = Api(http, "admin", admin=True, version="3.28")
    (pool,) = new.get("scheduler-stats/get_pools").json()["pools"]
    assert new.get("scheduler-stats/get_pools?name=" + pool["name"].replace(
        "#", "%23")).json()["pools"] == [pool]
    assert new.get("scheduler-stats/get_pools?name=nope").json()["pools"] == []
    detail = new.get("scheduler-stats/get_pools?detail=true").json()["pools"][0]
    backend_name = detail["capabilities"]["volume_backend_name"]
    assert len(new.get("scheduler-stats/get_pools?volume_backend_name=%s" % backend_name)
               .json()["pools"]) == 1
    assert new.get("scheduler-stats/get_pools?volume_backend_name=other").json()[
        "pools"] == []


def test_pools_by_volume_type_from_3_35(http):
    admin = Api(http, "admin", admin=True, version="3.35")
    (pool,) = admin.get("scheduler-stats/get_pools").json()["pools"]
    for name, specs in (("here", {"volume_backend_name": "loopback"}),
                        ("elsewhere", {"volume_backend_name": "lvm"}),
                        ("thin", {"capabilities:thin_provisioning_support": "<is> True"}),
                        ("huge", {"capabilities:total_capacity_gb": ">= 1000000000"})):
        response = admin.post("types", {"volume_type": {"name": name, "extra_specs": specs}})
        assert response.status_code == 200, response.text

    def pools(query):
        response = admin.get("scheduler-stats/get_pools?" + query)
        assert response.status_code == 200, response.text
        return response.json()["pools"]

    assert pools("volume_type=__DEFAULT__") == [pool]
    assert pools("volume_type=here") == [pool]
    assert pools("volume_type=thin") == [pool]
    assert pools("volume_type=elsewhere") == []
    assert pools("volume_type=huge") == []
    type_id = admin.get("types/here").json()["volume_type"]["id"]
    assert pools("volume_type=" + type_id) == [pool]
    assert pools("volume_type=here&name=nope") == []
    (detailed,) = pools("volume_type=here&detail=true")
    assert detailed["name"] == pool["name"] and detailed["capabilities"]
    unknown = admin.get("scheduler-stats/get_pools?volume_type=nope")
    assert unknown.status_code == 404, unknown.text
    assert admin.get("scheduler-stats/get_pools?volume_type=%00").status_code == 400
    refused = Api(http, "admin", admin=True, version="3.34").get(
        "scheduler-stats/get_pools?volume_type=here")
    assert refused.status_code == 400 and "3.35" in refused.text


def test_a_backend_that_fails_to_report_is_left_out(admin_api, stack, monkeypatch):
    def failing(ctx, host):
        raise RuntimeError("no answer")

    monkeypatch.setattr(stack.client.volumes, "get_capabilities", failing)
    response = admin_api.get("scheduler-stats/get_pools")
    assert response.status_code == 200 and response.json() == {"pools": []}
