"""``/types``: volume types, extra specs, access to private types, the default type, and
volumes created with a type (the scheduler routes by ``volume_backend_name``)."""

from __future__ import annotations

import sqlalchemy as sa

from blockmgr.db import models
from tests.unit.rest.conftest import Api
from tests.unit.rest.conftest import OTHER
from tests.unit.rest.conftest import PROJECT


def _create_type(admin_api, name, **extra):
    response = admin_api.post("types", {"volume_type": dict({"name": name}, **extra)})
    assert response.status_code == 200, response.text
    return response.json()["volume_type"]


def _names(api_, query=""):
    response = api_.get("types" + query)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["volume_types"]]


def _backend_name(admin_api) -> str:
    (pool,) = admin_api.get("scheduler-stats/get_pools?detail=true").json()["pools"]
    return pool["capabilities"]["volume_backend_name"]


def test_admin_creates_shows_updates_and_deletes_a_type(admin_api, api):
    gold = _create_type(admin_api, "gold", description="fast",
                        extra_specs={"volume_backend_name": "x", "k": "v"})
    assert gold["is_public"] is True and gold["os-volume-type-access:is_public"] is True
    assert gold["extra_specs"] == {"volume_backend_name": "x", "k": "v"}
    assert gold["description"] == "fast" and gold["qos_specs_id"] is None
    assert "gold" in _names(api) and "__DEFAULT__" in _names(api)
    assert _names(api, "?name=gold") == ["gold"] and _names(api, "?name=nope") == []
    # A non-admin does not see the backend name (sensitive) nor the admin-only key.
    shown = api.get("types/" + gold["id"]).json()["volume_type"]
    assert shown["extra_specs"] == {"k": "v"} and "qos_specs_id" not in shown
    assert admin_api.get("types/gold").json()["volume_type"]["id"] == gold["id"]
    updated = admin_api.put("types/" + gold["id"],
                            {"volume_type": {"name": "platinum", "description": "faster"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["volume_type"]["name"] == "platinum"
    assert admin_api.delete("types/" + gold["id"]).status_code == 202
    assert admin_api.get("types/" + gold["id"]).status_code == 404
    assert "platinum" not in _names(admin_api)
    # The name is free again.
    assert _create_type(admin_api, "platinum")["id"] != gold["id"]


def test_only_admins_change_types(admin_api, api):
    assert api.post("types", {"volume_type": {"name": "mine"}}).status_code == 403
    gold = _create_type(admin_api, "gold")
    assert api.put("types/" + gold["id"], {"volume_type": {"name": "x"}}).status_code == 403
    assert api.delete("types/" + gold["id"]).status_code == 403
    assert api.post("types/%s/extra_specs" % gold["id"],
                    {"extra_specs": {"a": "b"}}).status_code == 403
    assert api.get("types/%s/os-volume-type-access" % gold["id"]).status_code == 403
    assert "mine" not in _names(admin_api)


def test_bad_type_requests_are_4xx_and_change_nothing(admin_api):
    _create_type(admin_api, "gold")
    cases = [
        ({"volume_type": {"name": "gold"}}, 409, "already exists"),
        ({"volume_type": {"name": ""}}, 400, "volume_type.name"),
        ({"volume_type": {"name": "n" * 256}}, 400, "volume_type.name"),
        ({"volume_type": {"name": "ok", "extra_specs": {"k": 1}}}, 400, "extra_specs"),
        ({"volume_type": {"name": "ok", "extra_specs": {"bad\x01key": "v"}}}, 400,
         "control character"),
        ({"volume_type": {"name": "ok", "extra_specs": {"bad*key": "v"}}}, 400,
         "may contain only"),
        ({"volume_type": {"name": "ok", "is_public": True,
                          "os-volume-type-access:is_public": False}}, 400, "disagree"),
        ({"volume_type": {"name": "ok", "colour": "red"}}, 400, "unknown field"),
    ]
    for body, status, text in cases:
        response = admin_api.post("types", body)
        assert response.status_code == status, (body, response.text)
        assert text in response.text, (body, response.text)
    assert sorted(_names(admin_api, "?is_public=none")) == ["__DEFAULT__", "gold"]
    assert admin_api.get("types?colour=red").status_code == 400
    assert admin_api.get("types?is_public=maybe").status_code == 400
    assert admin_api.get("types/" + "0" * 36).status_code == 404


def test_the_default_type_is_listed_and_protected(admin_api, api):
    default = api.get("types/default").json()["volume_type"]
    assert default["name"] == "__DEFAULT__" and default["is_public"] is True
    response = admin_api.delete("types/" + default["id"])
    assert response.status_code == 400 and "cannot be deleted" in response.text
    response = admin_api.put("types/" + default["id"], {"volume_type": {"name": "other"}})
    assert response.status_code == 400 and "cannot be renamed" in response.text
    described = admin_api.put("types/" + default["id"],
                              {"volume_type": {"description": "plain"}})
    assert described.status_code == 200, described.text


def test_extra_specs_crud(admin_api, api):
    gold = _create_type(admin_api, "gold", extra_specs={"a": "1"})
    base = "types/%s/extra_specs" % gold["id"]
    response = admin_api.post(base, {"extra_specs": {"b": "2", "a": "3"}})
    assert response.status_code == 200 and response.json() == {"extra_specs":
                                                                {"b": "2", "a": "3"}}
    assert admin_api.get(base).json() == {"extra_specs": {"a": "3", "b": "2"}}
    assert admin_api.get(base + "/b").json() == {"b": "2"}
    assert admin_api.put(base + "/b", {"b": "4"}).json() == {"b": "4"}
    assert admin_api.put(base + "/b", {"c": "4"}).status_code == 400
    assert admin_api.put(base + "/b", {"b": 4}).status_code == 400
    assert admin_api.delete(base + "/b").status_code == 202
    assert admin_api.get(base + "/b").status_code == 404
    assert admin_api.delete(base + "/b").status_code == 404
    assert api.get(base).json() == {"extra_specs": {"a": "3"}}
    assert admin_api.get("types/%s/extra_specs" % ("0" * 36)).status_code == 404


def test_private_types_are_seen_and_used_only_with_access(admin_api, api, other_api):
    secret = _create_type(admin_api, "secret", **{"os-volume-type-access:is_public": False})
    assert secret["is_public"] is False
    assert "secret" not in _names(api)
    assert api.get("types/" + secret["id"]).status_code == 404
    refused = api.post("volumes", {"volume": {"size": 1, "volume_type": "secret"}})
    assert refused.status_code == 400 and "not available to project" in refused.text
    # An admin lists private types with is_public=false or none.
    assert _names(admin_api, "?is_public=false") == ["secret"]
    assert "secret" in _names(admin_api, "?is_public=None")
    access = "types/%s/os-volume-type-access" % secret["id"]
    action = "types/%s/action" % secret["id"]
    assert admin_api.post(action, {"addProjectAccess": {"project": PROJECT}}).status_code \
        == 202
    assert admin_api.post(action, {"addProjectAccess": {"project": PROJECT}}).status_code \
        == 409
    assert admin_api.get(access).json() == {"volume_type_access": [
        {"volume_type_id": secret["id"], "project_id": PROJECT}]}
    assert "secret" in _names(api) and "secret" not in _names(other_api)
    created = api.post("volumes", {"volume": {"size": 1, "volume_type": "secret"}})
    assert created.status_code == 202, created.text
    assert created.json()["volume"]["volume_type"] == "secret"
    assert admin_api.post(action, {"removeProjectAccess": {"project": PROJECT}}) \
        .status_code == 202
    assert admin_api.post(action, {"removeProjectAccess": {"project": PROJECT}}) \
        .status_code == 404
    assert "secret" not in _names(api)
    assert admin_api.post(action, {}).status_code == 400
    public = _create_type(admin_api, "open")
    response = admin_api.post("types/%s/action" % public["id"],
                              {"addProjectAccess": {"project": OTHER}})
    assert response.status_code == 400 and "is public" in response.text


def test_volumes_get_the_default_type_or_the_one_named(admin_api, api, http):
    default = api.get("types/default").json()["volume_type"]
    plain = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
    assert plain["volume_type"] == "__DEFAULT__"
    gold = _create_type(admin_api, "gold")
    by_name = api.post("volumes", {"volume": {"size": 1, "volume_type": "gold"}})
    assert by_name.status_code == 202, by_name.text
    assert by_name.json()["volume"]["volume_type"] == "gold"
    by_id = api.post("volumes", {"volume": {"size": 1, "volume_type": gold["id"]}})
    assert by_id.json()["volume"]["volume_type"] == "gold"
    new = Api(http, PROJECT, version="3.63")
    shown = new.get("volumes/" + plain["id"]).json()["volume"]
    assert shown["volume_type"] == "__DEFAULT__" and shown["volume_type_id"] == default["id"]
    listed = {v["id"]: v for v in api.get("volumes/detail").json()["volumes"]}
    assert listed[by_id.json()["volume"]["id"]]["volume_type"] == "gold"


def test_a_type_in_use_cannot_be_deleted(admin_api, api):
    gold = _create_type(admin_api, "gold")
    volume = api.post("volumes", {"volume": {"size": 1, "volume_type": "gold"}}).json()[
        "volume"]
    api.wait("volumes/" + volume["id"], "volume", ("available",))
    response = admin_api.delete("types/" + gold["id"])
    assert response.status_code == 400 and "used by 1 volume" in response.text
    assert admin_api.get("types/" + gold["id"]).status_code == 200
    assert api.delete("volumes/" + volume["id"]).status_code == 202
    api.wait("volumes/" + volume["id"], "volume", (None,))
    assert admin_api.delete("types/" + gold["id"]).status_code == 202


def test_unknown_type_on_create_writes_nothing(api, stack):
    with stack.db.reader() as session:
        before = session.scalar(sa.select(sa.func.count(models.Volume.id)))
    response = api.post("volumes", {"volume": {"size": 1, "volume_type": "nope"}})
    assert response.status_code == 400 and "does not exist" in response.text
    with stack.db.reader() as session:
        assert session.scalar(sa.select(sa.func.count(models.Volume.id))) == before


def test_the_scheduler_honours_volume_backend_name(admin_api, api):
    name = _backend_name(admin_api)
    _create_type(admin_api, "here", extra_specs={"volume_backend_name": name})
    _create_type(admin_api, "nowhere", extra_specs={"volume_backend_name": name + "-other"})
    good = api.post("volumes", {"volume": {"size": 1, "volume_type": "here"}}).json()[
        "volume"]
    assert api.wait("volumes/" + good["id"], "volume", ("available", "error"))[
        "status"] == "available"
    bad = api.post("volumes", {"volume": {"size": 1, "volume_type": "nowhere"}}).json()[
        "volume"]
    failed = api.wait("volumes/" + bad["id"], "volume", ("available", "error"))
    assert failed["status"] == "error"
    assert "volume_backend_name" in failed["status_reason"]


def test_project_less_urls_serve_types(admin_api):
    _create_type(admin_api, "gold")
    response = admin_api.http.get("/v3/types", headers=admin_api.headers)
    assert response.status_code == 200
    assert "gold" in [t["name"] for t in response.json()["volume_types"]]
