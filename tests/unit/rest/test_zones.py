"""Availability zones: the zones of the enabled volume services are listed, and a request
naming any other zone is refused before anything is written."""

from __future__ import annotations

import sqlalchemy as sa

from blockmgr.db import models
from tests.unit.rest.conftest import Api

HOST = "node1@loopback"


def _set_service(stack, **values) -> None:
    with stack.db.writer() as session:
        session.execute(sa.update(models.Service).where(models.Service.host == HOST)
                        .values(**values))


def test_zones_of_the_volume_services_are_listed(api):
    response = api.get("os-availability-zone")
    assert response.status_code == 200, response.text
    assert response.json() == {"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}}]}
    bare = api.http.get("/v3/os-availability-zone", headers=api.headers)
    assert bare.json() == response.json()


def test_a_zone_whose_services_are_disabled_is_not_listed(api, stack):
    _set_service(stack, availability_zone="zone-b")
    zones = api.get("os-availability-zone").json()["availabilityZoneInfo"]
    assert [z["zoneName"] for z in zones] == ["zone-b"]
    _set_service(stack, disabled=True)
    assert api.get("os-availability-zone").json() == {"availabilityZoneInfo": []}


def test_unknown_zone_is_refused_on_create_and_nothing_is_written(api, admin_api):
    response = api.post("volumes", {"volume": {"size": 1, "availability_zone": "mars"}})
    assert response.status_code == 400
    message = response.json()["badRequest"]["message"]
    assert "'mars'" in message and "nova" in message
    assert admin_api.get("volumes?all_tenants=1").json()["volumes"] == []
    accepted = api.post("volumes", {"volume": {"size": 1, "availability_zone": "nova"}})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["volume"]["availability_zone"] == "nova"


def test_unknown_zone_is_refused_on_manage_and_group_create(api):
    admin = Api(api.http, "pA", admin=True)
    response = admin.post("os-volume-manage", {"volume": {
        "host": HOST, "ref": {"source-name": "x"}, "availability_zone": "mars"}})
    assert response.status_code == 400 and "mars" in response.text
    groups = Api(api.http, "pA", version="3.13")
    response = groups.post("groups", {"group": {"name": "g", "availability_zone": "mars"}})
    assert response.status_code == 400 and "mars" in response.text
    assert groups.get("groups").json()["groups"] == []
