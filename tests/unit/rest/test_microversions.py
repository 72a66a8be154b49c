"""Microversions 3.0-3.71: each change to a served resource appears at its version, not
before; resources blockmgr does not serve answer a clean 404 at every version."""

from __future__ import annotations

import pytest

from tests.unit.rest.conftest import Api

HOST = "node1@loopback"


def at(api: Api, version: str | None) -> Api:
    other = Api(api.http, api.project, version=version)
    other.headers = dict(api.headers)
    if version:
        other.headers["OpenStack-API-Version"] = "volume " + version
    else:
        other.headers.pop("OpenStack-API-Version", None)
    return other


def volume(api: Api) -> dict:
    created = api.post("volumes", {"volume": {"size": 1}})
    assert created.status_code == 202, created.text
    return api.wait("volumes/" + created.json()["volume"]["id"], "volume", ("available",))


VOLUME_KEYS = [("3.13", "group_id"), ("3.48", "shared_targets"), ("3.48", "service_uuid"),
               ("3.63", "volume_type_id"), ("3.64", "encryption_key_id"),
               ("3.65", "consumes_quota")]


@pytest.mark.parametrize("version,key", VOLUME_KEYS)
def test_volume_fields_appear_at_their_microversion(api, version, key):
    vid = volume(api)["id"]
    major, minor = version.split(".")
    before = "%s.%d" % (major, int(minor) - 1)
    assert key not in at(api, before).get("volumes/" + vid).json()["volume"]
    shown = at(api, version).get("volumes/" + vid).json()["volume"]
    assert key in shown
    listed = at(api, version).get("volumes/detail").json()["volumes"][0]
    assert key in listed


def test_volume_field_values_at_the_latest_microversion(api, admin_api, stack):
    vid = volume(api)["id"]
    shown = at(api, "3.71").get("volumes/" + vid).json()["volume"]
    assert shown["consumes_quota"] is True and shown["shared_targets"] is False
    assert shown["encryption_key_id"] is None and "cluster_name" not in shown
    admin_view = at(admin_api, "3.71").get("volumes/%s" % vid).json()["volume"]
    assert "cluster_name" in admin_view
    assert "cluster_name" not in at(admin_api, "3.60").get("volumes/" + vid).json()["volume"]
    services = {s["host"]: s for s in at(admin_api, "3.71").get(
        "os-services").json()["services"]}
    assert services[HOST]["backend_state"] == "up"
    from blockmgr.db import models

    with stack.db.reader() as session:
        uuid = session.query(models.Service.uuid).filter_by(host=HOST).scalar()
    assert shown["service_uuid"] == uuid


def test_snapshot_fields_appear_at_their_microversion(api, admin_api):
    vid = volume(api)["id"]
    snap = api.post("snapshots", {"snapshot": {"volume_id": vid}}).json()["snapshot"]
    path = "snapshots/" + snap["id"]
    assert "user_id" not in at(api, "3.40").get(path).json()["snapshot"]
    assert at(api, "3.41").get(path).json()["snapshot"]["user_id"] == "u-pA"
    assert "consumes_quota" not in at(api, "3.64").get(path).json()["snapshot"]
    assert at(api, "3.65").get(path).json()["snapshot"]["consumes_quota"] is True
    admin = Api(api.http, "pA", admin=True)
    assert "provider_id" not in at(admin, "3.20").get(path).json()["snapshot"]
    assert "provider_id" in at(admin, "3.21").get(path).json()["snapshot"]
    assert "provider_id" not in at(api, "3.21").get(path).json()["snapshot"]


def test_snapshot_of_an_in_use_volume_needs_no_force_from_3_66(api, monkeypatch, stack):
    seen = []
    real = stack.client.snapshots.create_snapshot

    def recording(ctx, volume_id, **kwargs):
        seen.append(kwargs["force"])
        return real(ctx, volume_id, **kwargs)

    monkeypatch.setattr(stack.client.snapshots, "create_snapshot", recording)
    vid = volume(api)["id"]
    body = {"snapshot": {"volume_id": vid}}
    assert at(api, "3.65").post("snapshots", body).status_code == 202
    assert at(api, "3.66").post("snapshots", body).status_code == 202
    assert seen == [False, True]
    refused = at(api, "3.66").post("snapshots", {"snapshot": {"volume_id": vid,
                                                              "force": False}})
    assert refused.status_code == 400
    assert "omit force" in refused.json()["badRequest"]["message"]


def test_group_id_filter_from_3_10(api):
    assert at(api, "3.9").get("volumes?group_id=%s" % ("0" * 8 + "-0000-4000-8000-"
                                                       + "0" * 12)).status_code == 400
    response = at(api, "3.10").get("volumes?group_id=" + "0" * 8 + "-0000-4000-8000-"
                                   + "0" * 12)
    assert response.status_code == 200 and response.json()["volumes"] == []


def test_groups_show_their_project_from_3_58(api):
    v = at(api, "3.58")
    group = v.post("groups", {"group": {"name": "g"}})
    assert group.status_code == 202, group.text
    assert group.json()["group"]["project_id"] == "pA"
    gid = group.json()["group"]["id"]
    assert "project_id" not in at(api, "3.57").get("groups/" + gid).json()["group"]


def test_volume_summary_from_3_12_with_metadata_from_3_36(api, other_api):
    assert at(api, "3.11").get("volumes/summary").status_code == 404
    volume(api)
    at(api, "3.0").post("volumes", {"volume": {"size": 3}})
    at(other_api, "3.0").post("volumes", {"volume": {"size": 5}})
    summary = at(api, "3.12").get("volumes/summary").json()["volume-summary"]
    assert summary == {"total_count": 2, "total_size": 4}
    summary = at(api, "3.36").get("volumes/summary").json()["volume-summary"]
    assert summary == {"total_count": 2, "total_size": 4, "metadata": {}}
    admin = Api(api.http, "pA", admin=True, version="3.36")
    every = admin.get("volumes/summary?all_tenants=1").json()["volume-summary"]
    assert every["total_count"] == 3 and every["total_size"] == 9


def test_resource_filters_from_3_33(api):
    assert at(api, "3.32").get("resource_filters").status_code == 404
    found = at(api, "3.33").get("resource_filters").json()["resource_filters"]
    by_name = {f["resource"]: f["filters"] for f in found}
    assert "availability_zone" in by_name["volume"] and "volume_id" in by_name["snapshot"]
    only = at(api, "3.33").get("resource_filters?resource=snapshot").json()
    assert [f["resource"] for f in only["resource_filters"]] == ["snapshot"]


def test_manageable_paths_from_3_8_and_legacy_paths_always(admin_api):
    old = at(admin_api, "3.7")
    response = old.get("manageable_volumes?host=" + HOST)
    assert response.status_code == 404
    assert "3.8" in response.json()["itemNotFound"]["message"]
    assert old.get("os-volume-manage?host=" + HOST).status_code == 200
    assert at(admin_api, "3.8").get("manageable_volumes?host=" + HOST).status_code == 200


def test_services_cluster_from_3_7_and_backend_state_from_3_49(admin_api):
    def service(version):
        return {s["host"]: s for s in at(admin_api, version).get(
            "os-services").json()["services"]}[HOST]

    assert "cluster" not in service("3.6") and "cluster" in service("3.7")
    assert "backend_state" not in service("3.48")
    assert service("3.49")["backend_state"] == "up"


def test_delete_with_force_from_3_23_is_an_admins_forced_delete(api, stack):
    import sqlalchemy as sa

    from blockmgr.db import models

    vid = volume(api)["id"]
    api.wait("volumes/" + vid, "volume", ("available", "error"))
    with stack.db.writer() as session:   # stuck in a status no ordinary delete takes
        session.execute(sa.update(models.Volume).where(models.Volume.id == vid).values(
            status="extending"))
    refused = at(api, "3.22").delete("volumes/%s?force=true" % vid)
    assert refused.status_code == 400 and "3.23" in refused.json()["badRequest"]["message"]
    assert at(api, "3.23").delete("volumes/%s?force=true" % vid).status_code == 403
    assert at(api, "3.23").delete("volumes/%s?force=false" % vid).status_code == 400
    assert at(api, "3.23").delete("volumes/%s?force=maybe" % vid).status_code == 400
    assert api.get("volumes/" + vid).json()["volume"]["status"] == "extending"
    admin = Api(api.http, api.project, admin=True)
    response = at(admin, "3.23").delete("volumes/%s?force=true" % vid)
    assert response.status_code == 202, response.text
    assert api.wait("volumes/" + vid, "volume", (None, "error_deleting")) == {}


@pytest.mark.parametrize("path", [
    "messages", "clusters", "backups", "workers/cleanup",
    "os-volume-transfer", "volume-transfers", "default-types", "group_types",
    "qos-specs", "os-hosts", "os-backup-services", "extensions"])
@pytest.mark.parametrize("version", ["3.0", "3.71"])
def test_resources_not_served_are_a_clean_404(api, path, version):
    for url in (api.url(path), "/v3/" + path):
        response = api.http.get(url, headers=dict(api.headers, **{
            "OpenStack-API-Version": "volume " + version}))
        assert response.status_code == 404, (url, response.text)
        assert set(response.json()) == {"itemNotFound"}


def test_extending_an_in_use_volume_needs_3_42(api, stack):
    from blockmgr.db import models
    from blockmgr.db import repository

    vid = volume(api)["id"]
    with stack.db.writer() as session:       # attached, as far as the API can tell
        repository.transition(session, models.Volume, vid, "in-use",
                              expected=("available",))
    extend = {"os-extend": {"new_size": 2}}
    refused = at(api, "3.41").post("volumes/%s/action" % vid, extend)
    assert refused.status_code == 400 and "3.42" in refused.text
    assert at(api, "3.42").post("volumes/%s/action" % vid, extend).status_code == 202


def test_with_count_from_3_45(api):
    for _ in range(3):
        api.post("volumes", {"volume": {"size": 1}})
    assert at(api, "3.44").get("volumes?with_count=true").status_code == 400
    body = at(api, "3.45").get("volumes/detail?with_count=true&limit=2").json()
    assert len(body["volumes"]) == 2 and body["count"] == 3
    assert "count" not in at(api, "3.45").get("volumes?limit=2").json()
    assert at(api, "3.45").get("snapshots?with_count=true").json() == {"snapshots": [],
                                                                        "count": 0}
    assert at(api, "3.45").get("volumes?with_count=true&status=error").json()["count"] == 0


def test_group_volumes_listed_from_3_25(api):
    v = at(api, "3.25")
    group = v.post("groups", {"group": {"name": "g"}}).json()["group"]
    v.wait("groups/" + group["id"], "group", ("available",))
    member = v.post("volumes", {"volume": {"size": 1, "group_id": group["id"]}})
    assert member.status_code == 202, member.text
    v.post("volumes", {"volume": {"size": 1}})
    shown = v.get("groups/%s?list_volume=true" % group["id"]).json()["group"]
    assert shown["volumes"] == [member.json()["volume"]["id"]]
    assert "volumes" not in v.get("groups/" + group["id"]).json()["group"]
    (listed,) = v.get("groups/detail?list_volume=true").json()["groups"]
    assert listed["volumes"] == shown["volumes"]
    old = at(api, "3.24")
    assert old.get("groups/%s?list_volume=true" % group["id"]).status_code == 400
    assert old.get("groups/detail?list_volume=true").status_code == 400


def test_manageable_listing_by_cluster_from_3_17(admin_api):
    by_host = at(admin_api, "3.17").get("manageable_volumes?host=" + HOST)
    by_cluster = at(admin_api, "3.17").get("manageable_volumes?cluster=" + HOST)
    assert by_cluster.status_code == 200, by_cluster.text
    assert by_cluster.json() == by_host.json()
    assert at(admin_api, "3.16").get("manageable_volumes?cluster=" + HOST).status_code == 400
    both = at(admin_api, "3.17").get("manageable_volumes?cluster=%s&host=%s" % (HOST, HOST))
    assert both.status_code == 400 and "not both" in both.text
    neither = at(admin_api, "3.17").get("manageable_volumes")
    assert neither.status_code == 400 and "cluster" in neither.text
    unknown = at(admin_api, "3.17").get("manageable_volumes?cluster=east@loopback")
    assert unknown.status_code == 404
