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
