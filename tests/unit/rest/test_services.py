"""``/os-services`` (admin): the all-in-one node's scheduler and volume service, up."""

from __future__ import annotations

from blockmgr import services as bm_services


def test_admin_lists_services_with_their_state(admin_api):
    services = admin_api.get("os-services").json()["services"]
    by_binary = {s["binary"]: s for s in services}
    volume = by_binary[bm_services.VOLUME_BINARY]
    assert volume["host"] == "node1@loopback"
    assert volume["state"] == "up" and volume["status"] == "enabled"
    assert volume["zone"] == "nova" and volume["disabled_reason"] is None
    assert volume["updated_at"] and "T" in volume["updated_at"]
    assert set(volume) == {"binary", "host", "zone", "status", "state", "updated_at",
                           "disabled_reason"}


def test_filters_by_host_and_binary(admin_api):
    only = admin_api.get("os-services?binary=%s" % bm_services.VOLUME_BINARY).json()
    assert [s["binary"] for s in only["services"]] == [bm_services.VOLUME_BINARY]
    assert admin_api.get("os-services?host=node1@loopback").json()["services"][0][
        "host"] == "node1@loopback"
    by_host = admin_api.get("os-services?host=node1").json()["services"]
    assert by_host and all(s["host"].partition("@")[0] == "node1" for s in by_host)
    assert admin_api.get("os-services?host=node_").json()["services"] == []
    assert admin_api.get("os-services?host=elsewhere").json()["services"] == []
    assert admin_api.get("os-services?binary=cinder-volume").json()["services"] == []
    assert admin_api.get("os-services?host=a%20b").status_code == 400


def test_a_non_admin_may_not_list_services(api):
    response = api.get("os-services")
    assert response.status_code == 403
    assert "admin" in response.json()["forbidden"]["message"]


def _volume_service(admin_api) -> dict:
    return {s["binary"]: s for s in admin_api.get("os-services").json()["services"]}[
        bm_services.VOLUME_BINARY]


def test_a_disabled_backend_gets_no_new_volumes_until_enabled(admin_api, api, stack):
    host = "node1@loopback"
    body = {"host": host, "binary": bm_services.VOLUME_BINARY}
    response = admin_api.put("os-services/disable", body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disabled" and response.json()["disabled"] is True
    assert _volume_service(admin_api)["status"] == "disabled"
    stack.scheduler.manager.live.get(fresh=True)   # the scheduler's liveness cache is 1 s old at most
    refused = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
    failed = api.wait("volumes/" + refused["id"], "volume", ("available", "error"))
    assert failed["status"] == "error" and "down or disabled" in failed["status_reason"]
    response = admin_api.put("os-services/enable", body)
    assert response.status_code == 200 and response.json()["status"] == "enabled"
    assert _volume_service(admin_api)["status"] == "enabled"
    stack.scheduler.manager.live.get(fresh=True)
    placed = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
    assert api.wait("volumes/" + placed["id"], "volume", ("available", "error"))[
        "status"] == "available"


def test_disable_with_a_reason_shows_it_and_enable_clears_it(admin_api):
    body = {"host": "node1@loopback", "binary": bm_services.VOLUME_BINARY}
    response = admin_api.put("os-services/disable-log-reason",
                             dict(body, disabled_reason="maintenance"))
    assert response.status_code == 200, response.text
    assert response.json()["disabled_reason"] == "maintenance"
    service = admin_api.http.get("/v3/admin/os-services", headers=dict(
        admin_api.headers, **{"OpenStack-API-Version": "volume 3.49"})).json()["services"]
    volume = {s["binary"]: s for s in service}[bm_services.VOLUME_BINARY]
    assert volume["disabled_reason"] == "maintenance" and volume["status"] == "disabled"
    assert volume["backend_state"] == "up"   # an operator's reason is not a failure
    assert admin_api.put("os-services/enable", body).status_code == 200
    assert _volume_service(admin_api)["disabled_reason"] is None


def test_switching_services_is_admin_only_and_checked(admin_api, api):
    body = {"host": "node1@loopback", "binary": bm_services.VOLUME_BINARY}
    assert api.put("os-services/disable", body).status_code == 403
    missing = admin_api.put("os-services/disable", dict(body, host="nowhere@x"))
    assert missing.status_code == 404 and "GET /os-services" in missing.text
    assert admin_api.put("os-services/disable", {"host": "node1@loopback"}).status_code == 400
    assert admin_api.put("os-services/disable-log-reason", body).status_code == 400
    assert admin_api.put("os-services/disable", dict(body, host="a b")).status_code == 400
    assert _volume_service(admin_api)["status"] == "enabled"
