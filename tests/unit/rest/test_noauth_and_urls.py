"""noauth acts as admin (as Cinder's does) unless the caller states other roles, and every
route is served both as ``/v3/{project_id}/...`` and, microversion 3.67's form, as
``/v3/...`` acting on the caller's project."""

from __future__ import annotations

import pytest

from tests.unit.rest.conftest import Api


def test_noauth_caller_without_roles_is_an_admin(http, stack):
    token = {"X-Auth-Token": "operator:ops"}
    services = http.get("/v3/ops/os-services", headers=token)
    assert services.status_code == 200, services.text
    assert {s["binary"] for s in services.json()["services"]} >= {"blockmgr-volume"}
    listing = http.get("/v3/ops/manageable_volumes?host=node1@loopback",
                       headers=dict(token, **{"OpenStack-API-Version": "volume 3.8"}))
    assert listing.status_code == 200, listing.text
    # The plain X-*-Id headers too, and an admin may act on another project's URL.
    headers = {"X-User-Id": "operator", "X-Project-Id": "ops"}
    assert http.get("/v3/ops/os-services", headers=headers).status_code == 200
    assert http.get("/v3/pA/volumes", headers=headers).status_code == 200


def test_noauth_caller_stating_roles_without_admin_is_a_member(http):
    member = {"X-Auth-Token": "u:pA", "X-Roles": "member,reader"}
    assert http.get("/v3/pA/os-services", headers=member).status_code == 403
    assert http.get("/v3/pB/volumes", headers=member).status_code == 403
    assert http.get("/v3/pA/volumes", headers=member).status_code == 200
    admin = {"X-Auth-Token": "u:pA", "X-Roles": "Admin"}
    assert http.get("/v3/pA/os-services", headers=admin).status_code == 200


def test_keystone_mode_never_makes_a_caller_without_roles_admin(stack):
    from fastapi.testclient import TestClient

    from blockmgr.api.rest import app as rest_app

    class Confirming:
        """Stands in for auth_token: every request is confirmed, no roles."""

        def __init__(self, wsgi_app, conf):
            self.wsgi_app = wsgi_app

        def __call__(self, environ, start_response):
            environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
            return self.wsgi_app(environ, start_response)

    stack.conf.set_override("auth_strategy", "keystone", group="api")
    try:
        app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                  quota=stack.quota, auth_protocol_factory=Confirming)
        with TestClient(app) as client:
            headers = {"X-Project-Id": "pA", "X-User-Id": "u"}
            assert client.get("/v3/pA/os-services", headers=headers).status_code == 403
            assert client.get("/v3/pA/volumes", headers=headers).status_code == 200
    finally:
        stack.conf.clear_override("auth_strategy", group="api")


# --- URLs without a project id -------------------------------------------------------------

def short(api: Api) -> Api:
    """The same caller speaking to the project-less URLs."""
    projectless = Api(api.http, api.project)
    projectless.headers = dict(api.headers)
    projectless.url = lambda path: "/v3/" + path.lstrip("/")
    return projectless


def test_volumes_and_snapshots_through_both_url_forms(api, other_api):
    bare = short(api)
    created = bare.post("volumes", {"volume": {"size": 1, "name": "bare"}})
    assert created.status_code == 202, created.text
    volume = created.json()["volume"]
    assert volume["os-vol-tenant-attr:tenant_id"] == api.project
    assert [v["id"] for v in api.get("volumes").json()["volumes"]] == [volume["id"]]
    assert [v["id"] for v in bare.get("volumes/detail").json()["volumes"]] == [volume["id"]]
    assert bare.get("volumes/" + volume["id"]).json()["volume"]["name"] == "bare"
    renamed = bare.put("volumes/" + volume["id"], {"volume": {"name": "renamed"}})
    assert renamed.status_code == 200
    assert api.get("volumes/" + volume["id"]).json()["volume"]["name"] == "renamed"
    api.wait("volumes/" + volume["id"], "volume", ("available",))
    snap = bare.post("snapshots", {"snapshot": {"volume_id": volume["id"]}})
    assert snap.status_code == 202, snap.text
    assert [s["id"] for s in bare.get("snapshots").json()["snapshots"]] == [
        snap.json()["snapshot"]["id"]]
    # Another project sees nothing of it, in either form.
    assert short(other_api).get("volumes/" + volume["id"]).status_code == 404
    assert short(other_api).get("volumes").json()["volumes"] == []


@pytest.mark.parametrize("path", ["limits", "os-quota-sets/pA", "os-quota-sets/pA/defaults"])
def test_other_collections_through_the_project_less_form(api, path):
    bare = short(api)
    response = bare.get(path)
    assert response.status_code == 200, response.text
    assert response.json() == api.get(path).json()


def test_admin_calls_through_the_project_less_form(admin_api):
    bare = short(admin_api)
    assert bare.get("os-services").json() == admin_api.get("os-services").json()
    assert bare.get("os-volume-manage?host=node1@loopback").status_code == 200


def test_project_less_url_needs_a_project_from_the_request(http):
    response = http.get("/v3/volumes")
    assert response.status_code == 400
    assert "X-Project-Id" in response.json()["badRequest"]["message"]
    assert http.get("/v3/volumes", headers={"X-Auth-Token": "u:pA"}).status_code == 200
    bad = http.get("/v3/volumes", headers={"X-Project-Id": "a b"})
    assert bad.status_code == 400


def test_project_less_routes_do_not_shadow_version_discovery(http):
    assert http.get("/v3/").json()["version"]["id"] == "v3.0"
    assert http.get("/v3/no-such-collection",
                    headers={"X-Project-Id": "pA"}).status_code == 404
