"""Bad input is a 4xx, always: control characters, paging bounds, unknown backends, bodies
that are not JSON, manage references that are paths, transient database failures, and the
keep-alive connection after an error."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from oslo_db import exception as db_exc

from blockmgr.api import common
from blockmgr.api import listing
from blockmgr.api.rest.server import ApiServer
from blockmgr import exception
from tests.unit.rest.conftest import Api

HOST = "node1@loopback"


def fault(response, status: int) -> str:
    assert response.status_code == status, response.text
    (body,) = response.json().values()
    assert body["code"] == status
    return body["message"]


def volume_count(admin: Api) -> int:
    return len(admin.get("volumes?all_tenants=1").json()["volumes"])


# --- control characters --------------------------------------------------------------------

@pytest.mark.parametrize("field", ["name", "description", "availability_zone"])
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f"])
def test_control_characters_in_a_volume_body_are_refused(api, admin_api, field, char):
    response = api.post("volumes", {"volume": {"size": 1, field: "a%sb" % char}})
    message = fault(response, 400)
    assert field in message and "control character U+%04X" % ord(char) in message
    assert volume_count(admin_api) == 0


def test_control_characters_in_updates_snapshots_and_groups_are_refused(api):
    volume = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
    fault(api.put("volumes/" + volume["id"], {"volume": {"name": "x\x00"}}), 400)
    fault(api.put("volumes/" + volume["id"], {"volume": {"display_description": "\x01"}}),
          400)
    fault(api.post("snapshots", {"snapshot": {"volume_id": volume["id"],
                                              "name": "s\x00"}}), 400)
    fault(Api(api.http, api.project, version="3.14").post(
        "groups", {"group": {"name": "g\x00", "group_type": "t", "volume_types": ["v"]}}),
        400)
    # A key is a string too.
    fault(api.post("volumes", {"volume": {"size": 1, "na\x00me": "x"}}), 400)


def test_line_breaks_and_tabs_are_text(api):
    response = api.post("volumes", {"volume": {"size": 1, "name": "a\tb",
                                               "description": "line 1\nline 2\r\n"}})
    assert response.status_code == 202, response.text
    assert response.json()["volume"]["description"] == "line 1\nline 2\r\n"


@pytest.mark.parametrize("query", [
    "volumes?name=%00", "volumes/detail?availability_zone=a%00", "volumes?status=%00",
    "volumes?marker=%00", "volumes?marker=abc%1b", "snapshots?name=x%00",
    "snapshots/detail?volume_id=%00", "volumes?sort=name%00", "volumes?na%00me=x",
])
def test_control_characters_in_filters_and_markers_are_refused(api, query):
    assert "control character" in fault(api.get(query), 400)


def test_control_characters_in_the_path_or_admin_queries_are_refused(admin_api):
    fault(admin_api.get("volumes/%00"), 400)
    fault(admin_api.get("os-services?binary=%00"), 400)
    fault(admin_api.get("os-volume-manage?host=node1@loopback%00"), 400)
    fault(admin_api.http.get("/v3/p%00/volumes"), 400)


def test_manage_references_with_control_characters_or_paths_are_refused(admin_api):
    for ref in ({"source-name": "a\x00"}, {"source-name": "../etc/passwd"},
                {"source-name": "dir/file"}, {"source-name": ".hidden"},
                {"source-id": "x\x1f"}):
        response = admin_api.post("os-volume-manage", {"volume": {"host": HOST,
                                                                  "ref": ref}})
        fault(response, 400)
    assert volume_count(admin_api) == 0


def test_manage_snapshot_reference_that_is_a_path_is_refused_before_the_202(admin_api):
    volume = admin_api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
    admin_api.wait("volumes/" + volume["id"], "volume", ("available",))
    for ref in ({"source-name": "../x"}, {"source-name": ".x"}):
        message = fault(admin_api.post("os-snapshot-manage", {"snapshot": {
            "volume_id": volume["id"], "ref": ref}}), 400)
        assert "not a path" in message
    assert admin_api.get("snapshots?all_tenants=1").json()["snapshots"] == []


def test_library_checks_refuse_control_characters():
    with pytest.raises(exception.InvalidInput, match="U\\+0000"):
        common.check_text("a\x00", "name")
    assert common.check_text("a\nb", "description") == "a\nb"
    with pytest.raises(exception.ManageExistingInvalidReference):
        common.check_ref({"source-name": "a\nb"})
    with pytest.raises(exception.ManageExistingInvalidReference, match="not a path"):
        common.check_ref({"source-name": "a/b"})
    assert common.check_ref({"source-name": "volume-1"}) == {"source-name": "volume-1"}
    with pytest.raises(exception.InvalidInput, match="control character"):
        listing.check(filters={"name": "\x00"}, filterable=["name"])
    with pytest.raises(exception.InvalidInput, match="marker"):
        listing.check(marker="\x00")


# --- paging bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["offset", "limit"])
@pytest.mark.parametrize("value", [2 ** 63, 2 ** 64, 10 ** 30])
def test_paging_values_past_a_64_bit_integer_are_refused(api, param, value):
    message = fault(api.get("volumes?%s=%d" % (param, value)), 400)
    assert param in message
    fault(api.get("snapshots/detail?%s=%d" % (param, value)), 400)


def test_largest_offset_is_served(api):
    api.post("volumes", {"volume": {"size": 1}})
    response = api.get("volumes?offset=%d" % (2 ** 63 - 1))
    assert response.status_code == 200, response.text
    assert response.json()["volumes"] == []


def test_library_listing_bounds_paging():
    with pytest.raises(exception.InvalidInput, match="offset"):
        listing.check(offset=2 ** 63)
    assert listing.check(offset=2 ** 63 - 1).offset == 2 ** 63 - 1


# --- unknown backends ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["manageable_volumes", "manageable_snapshots/detail",
                                  "os-volume-manage", "os-snapshot-manage/detail"])
def test_manageable_listing_of_an_unknown_backend_is_a_fast_404(http, path):
    admin_api = Api(http, "admin", admin=True, version="3.8")
    started = time.monotonic()
    message = fault(admin_api.get("%s?host=nowhere@nothing" % path), 404)
    assert time.monotonic() - started < 5
    assert "nowhere@nothing" in message
    fault(admin_api.get("%s?host=no-backend-part" % path), 400)


def test_manageable_listing_of_a_down_backend_is_a_fast_503(admin_api, monkeypatch):
    from blockmgr import services

    monkeypatch.setattr(services, "is_up", lambda *args, **kwargs: False)
    message = fault(admin_api.get("os-volume-manage?host=" + HOST), 503)
    assert HOST in message and "down" in message


# --- content type --------------------------------------------------------------------------

def test_a_body_that_is_not_declared_json_is_415(api, admin_api):
    body = json.dumps({"volume": {"size": 1}})
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "application/xml"):
        response = api.request("POST", "volumes", content=body,
                               headers={"Content-Type": content_type})
        message = fault(response, 415)
        assert "Content-Type" in message and content_type in message
    response = api.http.request("POST", api.url("volumes"), content=body.encode(),
                                headers=dict(api.headers))
    assert "Content-Type" in fault(response, 415)
    response = api.request("POST", "volumes", content=body,
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 202, response.text
    assert volume_count(admin_api) == 1


# --- transient database failures -----------------------------------------------------------

@pytest.mark.parametrize("error", [db_exc.DBConnectionError, db_exc.DBDeadlock])
def test_transient_database_errors_are_503_with_retry_after(api, stack, monkeypatch, error):
    def unavailable(*args, **kwargs):
        raise error("server has gone away")

    monkeypatch.setattr(stack.client.volumes, "list_volumes", unavailable)
    response = api.get("volumes")
    message = fault(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    assert error.__name__ in message


# --- the connection after an error ---------------------------------------------------------

def _exchange(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=dict(headers or {}))
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_keep_alive_connection_survives_error_responses(stack, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(stack.client.volumes, "list_volumes", broken)
    headers = {"X-Project-Id": "pA", "X-User-Id": "u"}
    with ApiServer(stack.app, "127.0.0.1", 0) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            status, _h, body = _exchange(conn, "GET", "/v3/pA/volumes", headers=headers)
            assert status == 500 and b"RuntimeError" in body and b"boom" not in body
            sock = conn.sock
            status, _h, _b = _exchange(conn, "GET", "/v3/pA/snapshots", headers=headers)
            assert status == 200
            status, _h, _b = _exchange(conn, "POST", "/v3/pA/volumes", body=b"{",
                                       headers=dict(headers, **{
                                           "Content-Type": "application/json"}))
            assert status == 400
            status, _h, _b = _exchange(conn, "GET", "/v3/pA/volumes?offset=%d" % 2 ** 64,
                                       headers=headers)
            assert status == 400
            # Refused before the body is read: the unread body must not spill into the
            # next request on the connection.
            body = json.dumps({"volume": {"size": 1, "name": "x" * 200}}).encode()
            status, _h, _b = _exchange(conn, "POST", "/v3/pA/volumes", body=body,
                                       headers=dict(headers, **{"Content-Type": "text/plain"}))
            assert status == 415
            status, _h, _b = _exchange(conn, "POST", "/v3/pA/volumes?name=%00", body=body,
                                       headers=dict(headers, **{
                                           "Content-Type": "application/json"}))
            assert status == 400
            status, _h, _b = _exchange(conn, "GET", "/v3/pA/snapshots", headers=headers)
            assert status == 200
            assert conn.sock is sock, "the server closed the connection after an error"
        finally:
            conn.close()


def test_a_worker_that_does_not_answer_in_time_is_503_with_retry_after(http, stack,
                                                                      monkeypatch):
    import oslo_messaging

    def silent(*args, **kwargs):
        raise oslo_messaging.MessagingTimeout("Timed out waiting for a reply")

    monkeypatch.setattr(stack.client.volumes, "get_manageable_volumes", silent)
    admin = Api(http, "admin", admin=True)
    response = admin.get("os-volume-manage?host=" + HOST)
    assert "did not answer in time" in fault(response, 503)
    assert int(response.headers["Retry-After"]) > 0


def test_control_characters_in_a_quota_body_are_refused(admin_api):
    response = admin_api.put("os-quota-sets/pA", {"quota_set": {"tenant_id": "pA\x00",
                                                                "volumes": 5}})
    assert "control character" in fault(response, 400)
    assert admin_api.get("os-quota-sets/pA").json()["quota_set"]["volumes"] != 5
