"""The REST API over the real in-process stack: client library, scheduler, volume worker with
a loopback backend in ``tmp_path``, flows persisted in SQLite. Nothing is a double."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from blockmgr import allinone
from blockmgr import conf as bm_conf

PROJECT = "pA"
OTHER = "pB"


@pytest.fixture
def stack(tmp_path):
    """A started :class:`blockmgr.allinone.AllInOne` on embedded defaults under tmp_path."""
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("host", "node1")
    conf.set_override("transport_url", allinone.private_transport_url())
    conf.set_override("report_interval", 1)
    conf.set_override("startup_wait", 0, group="scheduler")
    allinone.embedded_config(conf)
    node = allinone.AllInOne(conf)
    assert node.start(ready_timeout=30), "the loopback backend did not come up"
    yield node
    node.stop(grace=5)
    conf.reset()


class Api:
    """A TestClient speaking as one project (noauth headers), with JSON helpers.

    A non-admin states its roles (``X-Roles: member``): without roles, noauth makes every
    caller an admin, as Cinder's does."""

    def __init__(self, client: TestClient, project: str = PROJECT, *, admin: bool = False,
                 version: str | None = None):
        self.http = client
        self.project = project
        self.headers = {"X-User-Id": "u-" + project, "X-Project-Id": project}
        self.headers["X-Roles"] = "admin,member" if admin else "member"
        if version:
            self.headers["OpenStack-API-Version"] = "volume " + version

    def url(self, path: str) -> str:
        return "/v3/%s/%s" % (self.project, path.lstrip("/"))

    def request(self, method: str, path: str, **kwargs):
        headers = dict(self.headers, **kwargs.pop("headers", {}))
        return self.http.request(method, self.url(path), headers=headers, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, json=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def wait(self, path: str, key: str, statuses, timeout: float = 30.0) -> dict:
        """Poll ``GET path`` until ``body[key]["status"]`` is in ``statuses`` (or gone, when
        ``statuses`` contains None); returns the last body."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(path)
            if response.status_code == 404 and None in statuses:
                return {}
            assert response.status_code == 200, response.text
            body = response.json()[key]
            if body["status"] in statuses:
                return body
            assert time.monotonic() < deadline, "still %s: %s" % (body["status"], body)
            time.sleep(0.05)


@pytest.fixture
def http(stack):
    with TestClient(stack.app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def api(http) -> Api:
    return Api(http, PROJECT)


@pytest.fixture
def other_api(http) -> Api:
    return Api(http, OTHER)


@pytest.fixture
def admin_api(http) -> Api:
    return Api(http, "admin", admin=True)
