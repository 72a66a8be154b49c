"""``[api] auth_strategy = keystone``: keystonemiddleware's real ``AuthProtocol`` in front of
the REST app (only its token lookup is replaced, so no Keystone server is needed): valid
tokens set the caller, spoofed identity headers are stripped, bad tokens get a Cinder 401
fault with ``WWW-Authenticate``, bodies pass through untouched, discovery stays public."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from fastapi.testclient import TestClient

from blockmgr import exception
from blockmgr.api.rest import app as rest_app
from blockmgr.api.rest import auth

auth_token = pytest.importorskip("keystonemiddleware.auth_token",
                                 reason="keystonemiddleware is not installed")
from keystonemiddleware.auth_token import _exceptions as ksm_exceptions  # noqa: E402

KEYSTONE = "http://keystone.invalid/v3"


def token(user: str, project: str, *roles: str) -> dict:
    """The body Keystone's ``GET /v3/auth/tokens`` returns for a project-scoped token."""
    now = dt.datetime.now(dt.timezone.utc)
    domain = {"id": "default", "name": "Default"}
    return {"token": {
        "methods": ["password"], "audit_ids": ["a" * 22], "catalog": [],
        "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "expires_at": (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "user": {"id": user, "name": user, "domain": domain},
        "project": {"id": project, "name": project, "domain": domain},
        "roles": [{"id": "r-" + role, "name": role} for role in roles]}}


TOKENS = {"member-a": token("u1", "pA", "member"),
          "admin-x": token("root", "ops", "admin", "member")}


class KnownTokens(auth_token.AuthProtocol):
    """The real middleware; tokens are looked up in :data:`TOKENS` instead of Keystone."""

    def fetch_token(self, token, **kwargs):
        try:
            return TOKENS[token]
        except KeyError:
            raise ksm_exceptions.InvalidToken("unknown token") from None


def factory(delay: bool = False):
    return lambda wsgi_app, conf: KnownTokens(wsgi_app, {
        "oslo_config_config": conf, "www_authenticate_uri": KEYSTONE,
        "delay_auth_decision": delay})


@pytest.fixture
def keystone_http(stack):
    stack.conf.set_override("auth_strategy", "keystone", group="api")
    app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db, quota=stack.quota,
                              auth_protocol_factory=factory())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    stack.conf.clear_override("auth_strategy", group="api")


def test_a_valid_token_names_the_caller(keystone_http):
    headers = {"X-Auth-Token": "member-a"}
    assert keystone_http.get("/v3/pA/limits", headers=headers).status_code == 200
    response = keystone_http.get("/v3/pB/limits", headers=headers)
    assert response.status_code == 403 and "pA" in response.json()["forbidden"]["message"]
    response = keystone_http.get("/v3/pA/os-services", headers=headers)
    assert response.status_code == 403
    admin = {"X-Auth-Token": "admin-x"}
    assert keystone_http.get("/v3/ops/os-services", headers=admin).status_code == 200


def test_spoofed_identity_headers_are_stripped(keystone_http):
    spoof = {"X-Auth-Token": "member-a", "X-Roles": "admin", "X-Project-Id": "pB",
             "X-Identity-Status": "Confirmed", "X-User-Id": "root"}
    assert keystone_http.get("/v3/pB/limits", headers=spoof).status_code == 403
    assert keystone_http.get("/v3/pA/os-services", headers=spoof).status_code == 403
    assert keystone_http.get("/v3/pA/limits", headers=spoof).status_code == 200


@pytest.mark.parametrize("headers", [
    {}, {"X-Auth-Token": "forged"},
    {"X-Identity-Status": "Confirmed", "X-Project-Id": "pA", "X-Roles": "admin"},
    {"X-Auth-Token": "u1:pA"},                     # noauth's token form means nothing here
])
def test_no_or_a_bad_token_is_a_401_fault(keystone_http, headers):
    response = keystone_http.get("/v3/pA/volumes", headers=headers)
    assert response.status_code == 401
    fault = response.json()["unauthorized"]
    assert fault["code"] == 401 and "authentication" in fault["message"].lower()
    assert response.headers["WWW-Authenticate"] == 'Keystone uri="%s"' % KEYSTONE


def test_bodies_pass_through_and_discovery_is_public(keystone_http):
    response = keystone_http.post("/v3/pA/volumes", json={"volume": {"size": 1}},
                                  headers={"X-Auth-Token": "member-a"})
    assert response.status_code == 202, response.text
    assert response.json()["volume"]["user_id"] == "u1"
    assert keystone_http.get("/").status_code == 300
    assert keystone_http.get("/v3/").status_code == 200
    assert keystone_http.get("/openapi.json").status_code == 200


def test_a_deferred_decision_is_refused_by_the_api(stack):
    """With ``delay_auth_decision`` auth_token passes bad tokens on as
    ``X-Identity-Status: Invalid``; the API itself then answers 401."""
    stack.conf.set_override("auth_strategy", "keystone", group="api")
    try:
        app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                  quota=stack.quota, auth_protocol_factory=factory(delay=True))
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/v3/pA/volumes", headers={"X-Auth-Token": "forged"})
            assert response.status_code == 401
            assert "no valid token" in response.json()["unauthorized"]["message"]
            assert client.get("/v3/pA/volumes",
                              headers={"X-Auth-Token": "member-a"}).status_code == 200
    finally:
        stack.conf.clear_override("auth_strategy", group="api")


def test_noauth_installs_nothing(stack):
    app = rest_app.create_app(stack.conf, client=stack.client, db=stack.db, quota=stack.quota)
    before = list(app.user_middleware)
    auth.install(app, stack.conf, protocol_factory=factory())
    assert app.user_middleware == before


def test_keystone_without_keystonemiddleware_stops_at_start(stack, monkeypatch):
    stack.conf.set_override("auth_strategy", "keystone", group="api")
    monkeypatch.setitem(sys.modules, "keystonemiddleware", None)
    try:
        with pytest.raises(exception.ConfigurationError) as info:
            rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                quota=stack.quota)
        assert "pip install keystonemiddleware" in str(info.value)
        assert "[api] auth_strategy" in str(info.value)

        def broken(wsgi_app, conf):
            raise ValueError("no auth_url")

        with pytest.raises(exception.ConfigurationError) as info:
            rest_app.create_app(stack.conf, client=stack.client, db=stack.db,
                                quota=stack.quota, auth_protocol_factory=broken)
        assert "keystone_authtoken" in str(info.value) and "no auth_url" in str(info.value)
    finally:
        stack.conf.clear_override("auth_strategy", group="api")


def test_header_rewrite_keeps_untouched_headers_verbatim():
    headers = [(b"content-type", b"application/json"), (b"x-roles", b"admin"),
               (b"accept", b"a"), (b"accept", b"b"), (b"x-auth-token", b"t")]
    before = {"HTTP_X_ROLES": "admin", "HTTP_ACCEPT": "a,b", "HTTP_X_AUTH_TOKEN": "t"}
    after = {"HTTP_ACCEPT": "a,b", "HTTP_X_AUTH_TOKEN": "t", "HTTP_X_ROLES": "member",
             "HTTP_X_USER_NAME": "J\u00fcrgen \u4e2d", "CONTENT_TYPE": "application/json"}
    out = auth._rewritten(headers, before, after)
    assert out == [(b"content-type", b"application/json"), (b"x-roles", b"member"),
                   (b"accept", b"a"), (b"accept", b"b"), (b"x-auth-token", b"t"),
                   (b"x-user-name", "J\u00fcrgen \u4e2d".encode("utf-8"))]
