"""Volume and snapshot list filters added by later microversions: ``bootable`` (strict,
3.2), like-filters ``name~`` (3.34), ``created_at`` / ``updated_at`` comparisons (3.60),
``consumes_quota`` (3.65); each refused with a ``400`` naming the version below it, and
bad values refused with a ``400``."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from blockmgr.db import models
from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volume_actions import available
from tests.unit.rest.test_volumes import DONE, fault


def names(api, query: str, what: str = "volumes") -> list[str]:
    response = api.get("%s?%s&sort=name:asc" % (what, query))
    assert response.status_code == 200, response.text
    return [v["name"] for v in response.json()[what]]


def set_columns(stack, model, row_id: str, **values) -> None:
    with stack.db.writer() as session:
        session.execute(sa.update(model).where(model.id == row_id).values(**values))


def test_volume_filters_by_version(http, stack):
    api = Api(http, "pA", version="3.71")
    data = available(api, name="Data-1")
    logs = available(api, name="logs_2")
    other = available(api, name="other%")
    set_columns(stack, models.Volume, data, bootable=True,
                created_at=dt.datetime(2024, 1, 1), updated_at=dt.datetime(2024, 1, 2))
    set_columns(stack, models.Volume, logs, use_quota=False,
                created_at=dt.datetime(2024, 6, 1), updated_at=dt.datetime(2024, 6, 2))
    set_columns(stack, models.Volume, other, created_at=dt.datetime(2025, 1, 1))

    assert names(api, "bootable=true") == ["Data-1"]
    assert names(api, "bootable=False") == ["logs_2", "other%"]
    assert fault(api.get("volumes?bootable=maybe"), 400).startswith("Invalid input")
    assert names(Api(http, "pA"), "bootable=1") == ["Data-1"]         # every version

    # like: case-insensitive substring; % and _ match themselves
    assert names(api, "name~=data") == ["Data-1"]
    assert names(api, "name~=_") == ["logs_2"]
    assert names(api, "name~=%25") == ["other%"]
    assert names(api, "display_name~=O") == ["logs_2", "other%"]
    assert names(api, "status~=avail") == ["Data-1", "logs_2", "other%"]
    assert names(api, "name~=a&status=available") == ["Data-1"]
    assert "3.34" in fault(Api(http, "pA", version="3.33").get("volumes?name~=d"), 400)

    # time comparisons
    assert names(api, "created_at=gt:2024-03-01T00:00:00") == ["logs_2", "other%"]
    assert names(api, "created_at=gte:2024-01-01T00:00:00,lt:2024-06-01T00:00:00") == [
        "Data-1"]
    assert names(api, "created_at=lte:2024-06-01T00:00:00Z") == ["Data-1", "logs_2"]
    assert names(api, "created_at=gt:2024-06-01T02:00:00%2B03:00") == ["logs_2", "other%"]
    assert names(api, "updated_at=lt:2024-05-01T00:00:00") == ["Data-1"]
    assert names(api, "created_at=gt:2024-03-01T00:00:00&name~=other") == ["other%"]
    for bad in ("created_at=2024-01-01", "created_at=after:2024-01-01T00:00:00",
                "created_at=gt:yesterday", "updated_at=gt:", "created_at~=2024"):
        assert fault(api.get("volumes?" + bad), 400), bad
    assert "3.60" in fault(Api(http, "pA", version="3.59").get(
        "volumes?created_at=gt:2024-01-01T00:00:00"), 400)

    # consumes_quota
    assert names(api, "consumes_quota=false") == ["logs_2"]
    assert names(api, "consumes_quota=true") == ["Data-1", "other%"]
    assert "3.65" in fault(Api(http, "pA", version="3.64").get(
        "volumes?consumes_quota=true"), 400)

    # with_count counts with the same filters
    assert api.get("volumes?name~=a&with_count=true").json()["count"] == 1

    filters = api.get("resource_filters?resource=volume").json()["resource_filters"]
    assert {"bootable", "name~", "created_at", "consumes_quota"} <= set(
        filters[0]["filters"])


def test_snapshot_filters_by_version(http, stack):
    api = Api(http, "pA", version="3.71")
    vid = available(api)
    ids = []
    for name in ("Nightly", "weekly"):
        response = api.post("snapshots", {"snapshot": {"volume_id": vid, "name": name}})
        assert response.status_code == 202, response.text
        ids.append(response.json()["snapshot"]["id"])
        api.wait("snapshots/" + ids[-1], "snapshot", DONE)
    set_columns(stack, models.Snapshot, ids[1], use_quota=False)
    assert names(api, "name~=LY", "snapshots") == ["Nightly", "weekly"]
    assert names(api, "name~=night", "snapshots") == ["Nightly"]
    assert names(api, "consumes_quota=0", "snapshots") == ["weekly"]
    assert "3.34" in fault(Api(http, "pA", version="3.30").get("snapshots?name~=n"), 400)
    assert "3.65" in fault(Api(http, "pA", version="3.64").get(
        "snapshots?consumes_quota=1"), 400)
    assert fault(api.get("snapshots?created_at=gt:2024-01-01T00:00:00"), 400)
