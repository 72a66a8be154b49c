"""``/os-quota-sets/{project}``: show (with usage), defaults, update and reset by an admin,
who may do what, and bad input -> a 4xx fault with no limit changed."""

from __future__ import annotations

from blockmgr import quota as bm_quota
from tests.unit.rest.conftest import OTHER
from tests.unit.rest.conftest import PROJECT

RESOURCES = {"volumes", "snapshots", "gigabytes", "groups", "per_volume_gigabytes"}
#: Every volume type adds its per-type resources (unlimited by default); the stack has the
#: default type.
TYPED = {"volumes___DEFAULT__", "snapshots___DEFAULT__", "gigabytes___DEFAULT__"}


def test_show_own_quota_with_and_without_usage(stack, api):
    body = api.get("os-quota-sets/%s" % PROJECT).json()["quota_set"]
    assert body["id"] == PROJECT and set(body) == RESOURCES | TYPED | {"id"}
    assert body["volumes"] == stack.conf.quota.volumes
    assert api.post("volumes", {"volume": {"size": 2}}).status_code == 202
    # python-cinderclient sends usage=True / usage=False
    used = api.get("os-quota-sets/%s?usage=True" % PROJECT).json()["quota_set"]
    assert used["volumes"] == {"limit": stack.conf.quota.volumes, "in_use": 1, "reserved": 0}
    assert used["gigabytes"]["in_use"] == 2
    assert isinstance(api.get("os-quota-sets/%s?usage=False" % PROJECT).json()[
        "quota_set"]["volumes"], int)


def test_defaults(stack, api):
    body = api.get("os-quota-sets/%s/defaults" % PROJECT).json()["quota_set"]
    assert body == dict({r: getattr(stack.conf.quota, r) for r in RESOURCES},
                        **{r: -1 for r in TYPED}, id=PROJECT)


def test_admin_updates_and_resets_another_projects_quota(api, admin_api):
    # python-cinderclient's body: the changed limits plus tenant_id
    response = admin_api.put("os-quota-sets/%s" % PROJECT, {"quota_set": {
        "tenant_id": PROJECT, "volumes": 1, "gigabytes": -1}})
    assert response.status_code == 200, response.text
    assert response.json()["quota_set"]["volumes"] == 1
    assert response.json()["quota_set"]["gigabytes"] == -1
    assert api.get("os-quota-sets/%s" % PROJECT).json()["quota_set"]["volumes"] == 1
    # the new limit is enforced
    assert api.post("volumes", {"volume": {"size": 1}}).status_code == 202
    response = api.post("volumes", {"volume": {"size": 1}})
    assert response.status_code == 413, response.text
    # below the usage: refused only when asked to validate
    response = admin_api.put("os-quota-sets/%s?skip_validation=False" % PROJECT,
                             {"quota_set": {"volumes": 0}})
    assert response.status_code == 400 and "in use" in response.text
    assert admin_api.put("os-quota-sets/%s" % PROJECT,
                         {"quota_set": {"volumes": 0}}).status_code == 200
    response = admin_api.delete("os-quota-sets/%s" % PROJECT)
    assert response.status_code == 200 and response.content == b""
    assert api.get("os-quota-sets/%s" % PROJECT).json()["quota_set"]["volumes"] == 10


def test_a_non_admin_reads_only_its_own_and_changes_nothing(api):
    for method, path, body in [
            ("get", "os-quota-sets/%s" % OTHER, None),
            ("get", "os-quota-sets/%s/defaults" % OTHER, None),
            ("put", "os-quota-sets/%s" % PROJECT, {"quota_set": {"volumes": 100}}),
            ("delete", "os-quota-sets/%s" % PROJECT, None)]:
        args = (body,) if method == "put" else ()
        response = getattr(api, method)(path, *args)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["forbidden"]["code"] == 403
    assert api.get("os-quota-sets/%s" % PROJECT).json()["quota_set"]["volumes"] == 10


def test_bad_updates_are_refused_and_change_nothing(admin_api):
    before = admin_api.get("os-quota-sets/%s" % PROJECT).json()
    for body in [
            {"quota_set": {}},
            {"quota_set": {"tenant_id": PROJECT}},
            {"quota_set": {"volumes": "5"}},
            {"quota_set": {"volumes": 5.5}},
            {"quota_set": {"volumes": True}},
            {"quota_set": {"volumes": -2}},
            {"quota_set": {"volumes": bm_quota.MAX_QUOTA_VALUE + 1}},
            {"quota_set": {"volumes": 5, "backups": 5}},
            {"quota_set": {"volumes": 5, "tenant_id": OTHER}},
            {"quota_set": {"snapshots": 1, "volumes": -5}},
            {"volumes": 5},
            None]:
        response = admin_api.put("os-quota-sets/%s" % PROJECT, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["badRequest"]["code"] == 400
        assert admin_api.get("os-quota-sets/%s" % PROJECT).json() == before, body
    for path in ("os-quota-sets/bad%20project", "os-quota-sets/%s?usage=maybe" % PROJECT):
        assert admin_api.get(path).status_code == 400, path
