"""The REST core: version discovery, microversions, fault bodies, project scoping."""

from __future__ import annotations

from tests.unit.rest.conftest import Api


def test_version_discovery_lists_v3_with_its_microversion_range(http):
    response = http.get("/")
    assert response.status_code == 300
    (version,) = response.json()["versions"]
    assert version["id"] == "v3.0" and version["status"] == "CURRENT"
    assert version["min_version"] == "3.0" and version["version"] == "3.71"
    assert version["links"][0]["href"].endswith("/v3/")
    assert http.get("/v3/").json()["version"]["id"] == "v3.0"


def test_responses_state_the_microversion_served(http):
    assert http.get("/").headers["OpenStack-API-Version"] == "volume 3.0"
    response = http.get("/", headers={"OpenStack-API-Version": "volume 3.13"})
    assert response.headers["OpenStack-API-Version"] == "volume 3.13"
    response = http.get("/", headers={"OpenStack-API-Version": "volume latest"})
    assert response.headers["OpenStack-API-Version"] == "volume 3.71"


def test_out_of_range_or_malformed_microversion_is_refused(http):
    response = http.get("/", headers={"OpenStack-API-Version": "volume 3.99"})
    assert response.status_code == 406
    assert "3.0 to 3.71" in response.json()["notAcceptable"]["message"]
    response = http.get("/", headers={"OpenStack-API-Version": "volume three"})
    assert response.status_code == 400
    assert "volume 3.N" in response.json()["badRequest"]["message"]


def test_unknown_path_is_an_item_not_found_fault(api):
    response = api.get("no-such-collection")
    assert response.status_code == 404
    assert set(response.json()) == {"itemNotFound"}
    assert response.json()["itemNotFound"]["code"] == 404


def test_another_projects_url_is_forbidden_for_a_non_admin(http):
    intruder = Api(http, "pA")
    intruder.headers["X-Project-Id"] = "pB"     # caller pB, URL pA
    response = intruder.get("volumes")
    assert response.status_code == 403
    assert "pB" in response.json()["forbidden"]["message"]


def test_noauth_token_names_user_and_project(http):
    member = {"X-Auth-Token": "u1:pB", "X-Roles": "member"}
    response = http.get("/v3/pA/volumes", headers=member)
    assert response.status_code == 403
    member["X-Auth-Token"] = "u1:pA"
    assert http.get("/v3/pA/volumes", headers=member).status_code == 200


def test_bad_project_id_in_url_is_a_bad_request(api):
    response = api.http.get("/v3/%20bad%20/volumes")
    assert response.status_code == 400


def test_metrics_are_served_on_the_api_port_when_enabled(stack):
    from fastapi.testclient import TestClient

    from blockmgr.api.rest import app as rest_app

    stack.conf.set_override("enabled", True, group="metrics")
    try:
        app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                  quota=stack.quota)
        with TestClient(app) as client:
            for path in ("/metrics", "/metrics/"):
                response = client.get(path, follow_redirects=False)
                assert response.status_code == 200, path
                assert "blockmgr_" in response.text
    finally:
        stack.conf.clear_override("enabled", group="metrics")
    plain = rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                quota=stack.quota)
    with TestClient(plain) as client:
        assert client.get("/metrics/").status_code == 404
        assert client.get("/metrics", follow_redirects=False).status_code == 404


def _requests(text: str, **labels) -> float:
    """The value of the blockmgr_api_requests_total sample with exactly ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "blockmgr_api_requests_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_api_requests_are_counted_and_timed_by_route_template(stack):
    from fastapi.testclient import TestClient

    from blockmgr.api.rest import app as rest_app

    stack.conf.set_override("enabled", True, group="metrics")
    try:
        app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                  quota=stack.quota)
    finally:
        stack.conf.clear_override("enabled", group="metrics")
    show = {"method": "GET", "route": "/v3/{project_id}/volumes/{volume_id}",
            "status": "404"}
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    with TestClient(app) as client:
        before = client.get("/metrics").text
        for volume_id in ("a1", "b2", "c3"):
            assert client.get("/v3/pA/volumes/%s" % volume_id).status_code == 404
        assert client.get("/v3/pA/volumes").status_code == 200
        assert client.get("/no/such/path").status_code == 404
        after = client.get("/metrics").text
    assert _requests(after, **show) - _requests(before, **show) == 3
    listing = {"method": "GET", "route": "/v3/{project_id}/volumes", "status": "200"}
    assert _requests(after, **listing) - _requests(before, **listing) == 1
    assert _requests(after, **unmatched) - _requests(before, **unmatched) == 1
    assert "a1" not in "".join(line for line in after.splitlines()
                               if line.startswith("blockmgr_api_"))
    assert ('blockmgr_api_request_duration_seconds_count{method="GET",'
            'route="/v3/{project_id}/volumes/{volume_id}",status="404"}') in after
