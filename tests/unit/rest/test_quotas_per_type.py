"""``/os-quota-sets`` with per-volume-type quotas: ``volumes_<type>``, ``snapshots_<type>`` and
``gigabytes_<type>`` listed for every existing type (unlimited by default), settable by an
admin, enforced with the same ``413 overLimit`` as the project-wide limits, refused for a
type that does not exist, and gone from the views once the type is deleted."""

from __future__ import annotations

from tests.unit.rest.conftest import PROJECT

GOLD = ("volumes_gold", "snapshots_gold", "gigabytes_gold")


def _type(admin_api, name) -> str:
    response = admin_api.post("types", {"volume_type": {"name": name}})
    assert response.status_code == 200, response.text
    return response.json()["volume_type"]["id"]


def _quota_set(api, suffix=""):
    response = api.get("os-quota-sets/%s%s" % (PROJECT, suffix))
    assert response.status_code == 200, response.text
    return response.json()["quota_set"]


def test_per_type_limits_are_listed_set_and_enforced(api, admin_api):
    _type(admin_api, "gold")
    assert {r: _quota_set(api)[r] for r in GOLD} == dict.fromkeys(GOLD, -1)
    assert {r: _quota_set(api, "/defaults")[r] for r in GOLD} == dict.fromkeys(GOLD, -1)
    response = admin_api.put("os-quota-sets/%s" % PROJECT, {"quota_set": {
        "tenant_id": PROJECT, "volumes_gold": 1, "gigabytes_gold": 5}})
    assert response.status_code == 200, response.text
    assert response.json()["quota_set"]["volumes_gold"] == 1
    assert api.post("volumes", {"volume": {"size": 2, "volume_type": "gold"}}
                    ).status_code == 202
    used = _quota_set(api, "?usage=true")
    assert used["volumes_gold"] == {"limit": 1, "in_use": 1, "reserved": 0}
    assert used["gigabytes_gold"] == {"limit": 5, "in_use": 2, "reserved": 0}
    assert used["snapshots_gold"] == {"limit": -1, "in_use": 0, "reserved": 0}
    response = api.post("volumes", {"volume": {"size": 1, "volume_type": "gold"}})
    assert response.status_code == 413, response.text
    assert "volumes_gold" in response.json()["overLimit"]["message"]
    # another type is not limited by gold's limits
    assert api.post("volumes", {"volume": {"size": 1}}).status_code == 202
    # below the usage: refused only when asked to validate
    response = admin_api.put("os-quota-sets/%s?skip_validation=False" % PROJECT,
                             {"quota_set": {"volumes_gold": 0}})
    assert response.status_code == 400 and "in use" in response.text


def test_bad_per_type_updates_are_refused_and_change_nothing(admin_api):
    _type(admin_api, "gold")
    before = admin_api.get("os-quota-sets/%s" % PROJECT).json()
    for body in [
            {"quota_set": {"volumes_silver": 1}},              # no such type
            {"quota_set": {"volumes": 3, "gigabytes_silver": 1}},
            {"quota_set": {"volumes_gold": "1"}},
            {"quota_set": {"volumes_gold": -2}},
            {"quota_set": {"volumes_gold": True}},
            {"quota_set": {"backups_gold": 1}}]:
        response = admin_api.put("os-quota-sets/%s?skip_validation=False" % PROJECT, body)
        assert response.status_code == 400, (body, response.text)
        assert admin_api.get("os-quota-sets/%s" % PROJECT).json() == before, body


def test_a_deleted_types_keys_leave_the_views(api, admin_api):
    bronze = _type(admin_api, "bronze")
    assert admin_api.put("os-quota-sets/%s" % PROJECT,
                         {"quota_set": {"volumes_bronze": 4}}).status_code == 200
    assert admin_api.delete("types/%s" % bronze).status_code == 202
    for suffix in ("", "?usage=true", "/defaults"):
        assert not any(r.endswith("_bronze") for r in _quota_set(api, suffix)), suffix
    response = admin_api.put("os-quota-sets/%s" % PROJECT, {"quota_set": {"volumes_bronze": 1}})
    assert response.status_code == 400
