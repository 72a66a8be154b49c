"""Health checks: the checks themselves, the daemons' endpoint next to ``/metrics`` and the
REST API's ``/healthcheck`` (oslo.middleware), healthy and unhealthy."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from blockmgr import health
from blockmgr import metrics
from blockmgr.db.session import Database

from tests.conftest import require_service
from tests.unit.rest.conftest import stack  # noqa: F401  (fixture)

RABBIT = "rabbit://guest:guest@127.0.0.1:5672/"


def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dead_database():
    # max_retries=0: oslo.db would otherwise retry the first connection for 100 s.
    db = Database("mysql+pymysql://root@127.0.0.1:%d/blockmgr" % _closed_port(),
                  max_retries=0)
    yield db
    db.dispose()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


class _Backend:
    def __init__(self, host, ready, setup_error=None):
        self.host = host
        self.ready = threading.Event()
        if ready:
            self.ready.set()
        self.setup_error = setup_error


# --- the checks -------------------------------------------------------------------------------

def test_database_check_answers_and_names_an_unreachable_server(sqlite_database,
                                                                dead_database):
    assert health.DatabaseCheck(sqlite_database).check() == (True, "SELECT 1 answered")
    (result,) = health.HealthChecks([health.DatabaseCheck(dead_database)]).run()
    assert not result.ok and result.name == "database"
    assert "Can't connect" in result.detail and "127.0.0.1" in result.detail


def test_broker_check(conf):
    assert health.BrokerCheck(conf, "inprocess://x").check()[0]
    ok, detail = health.BrokerCheck(conf, "rabbit://guest:guest@127.0.0.1:%d/"
                                    % _closed_port(), timeout=2).check()
    assert not ok and detail.startswith("unreachable (127.0.0.1:")
    require_service("rabbitmq")   # under CI=true a failure, never a skip
    assert health.BrokerCheck(conf, RABBIT).check() == (True, "127.0.0.1:5672 reachable")
    ok, detail = health.BrokerCheck(conf, "rabbit://guest:wrong@127.0.0.1:5672/").check()
    assert not ok and "127.0.0.1:5672" in detail


def test_backends_check_fails_while_one_backend_is_down():
    backends = [_Backend("n1@fast", True)]
    check = health.BackendsCheck(lambda: backends)
    assert check.check() == (True, "serving: n1@fast")
    backends.append(_Backend("n1@lvm", False, "driver setup failed (attempt 3): no VG"))
    ok, detail = check.check()
    assert not ok and detail == "down: n1@lvm: driver setup failed (attempt 3): no VG"
    backends[1].setup_error = None
    assert check.check() == (False, "down: n1@lvm: starting (driver setup or recovery)")


def test_a_check_that_hangs_fails_after_the_timeout_and_is_not_started_twice():
    release = threading.Event()
    calls = []

    class Hanging:
        name = "slow"

        def check(self):
            calls.append(1)
            release.wait(10)
            return True, "late"

    checks = health.HealthChecks([Hanging()], timeout=0.2, max_age=0)
    started = time.monotonic()
    (result,) = checks.run()
    assert not result.ok and result.detail == "no answer within 0.2 s"
    assert time.monotonic() - started < 2
    checks.run()
    assert len(calls) == 1          # the first run was still going: waited for, not repeated
    release.set()
    deadline = time.monotonic() + 5
    while not checks.run()[0].ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checks.run()[0].ok


def test_answers_are_reused_for_max_age():
    calls = []

    class Counting:
        name = "c"

        def check(self):
            calls.append(1)
            return True, "fine"

    checks = health.HealthChecks([Counting()], max_age=60)
    checks.run()
    checks.run()
    assert len(calls) == 1


# --- the daemons' endpoint --------------------------------------------------------------------

def test_daemon_endpoint_next_to_metrics(sqlite_database, dead_database, conf):
    backends = [_Backend("n1@lvm", True)]
    good = health.HealthChecks([health.DatabaseCheck(sqlite_database),
                                health.BrokerCheck(conf, "inprocess://x"),
                                health.BackendsCheck(lambda: backends)], max_age=0)
    server = metrics.MetricsServer(metrics.Metrics().registry, "127.0.0.1", 0,
                                   apps={health.PATH: health.wsgi_app(good)})
    try:
        status, body = get(server.url_of("/healthcheck"))
        assert status == 200 and body["status"] == "ok" and body["failed"] == []
        assert body["checks"]["backends"] == {"ok": True, "detail": "serving: n1@lvm"}
        with urllib.request.urlopen(server.url, timeout=10) as answer:   # still /metrics
            assert answer.status == 200 and b"process_" in answer.read()
        backends[0].ready.clear()
        backends[0].setup_error = "driver setup failed (attempt 1): no VG"
        status, body = get(server.url_of("/healthcheck"))
        assert status == 503 and body["failed"] == ["backends"]
        assert "no VG" in body["checks"]["backends"]["detail"]
    finally:
        server.stop()
    bad = health.HealthChecks([health.DatabaseCheck(dead_database),
                               health.BrokerCheck(conf, "rabbit://guest:guest@127.0.0.1:%d/"
                                                  % _closed_port(), timeout=2)])
    server = metrics.MetricsServer(metrics.Metrics().registry, "127.0.0.1", 0,
                                   apps={health.PATH: health.wsgi_app(bad)})
    try:
        status, body = get(server.url_of("/healthcheck"))
        assert status == 503 and body["status"] == "failed"
        assert body["failed"] == ["database", "broker"]
    finally:
        server.stop()


def test_serve_adds_health_when_given(conf, sqlite_database):
    conf.set_override("enabled", True, group="metrics")
    conf.set_override("volume_port", 0, group="metrics")
    checks = health.HealthChecks([health.DatabaseCheck(sqlite_database)])
    server = metrics.serve(conf, "volume_port", metrics=metrics.Metrics(), health=checks)
    try:
        assert get(server.url_of("/healthcheck"))[0] == 200
    finally:
        server.stop()


# --- the REST API -----------------------------------------------------------------------------

def _app(stack, db=None, **kwargs):  # noqa: F811
    from blockmgr.api.rest import app as rest_app

    return rest_app.create_app(stack.conf, client=stack.client, db=db or stack.db,
                               quota=stack.quota, **kwargs)


def test_api_healthcheck_healthy_and_unhealthy(stack, dead_database):  # noqa: F811
    with TestClient(_app(stack)) as client:
        answer = client.get("/healthcheck")
        assert answer.status_code == 200 and answer.text == "database: OK\nbroker: OK"
        assert client.head("/healthcheck").status_code == 204
        answer = client.get("/healthcheck", headers={"Accept": "application/json"})
        assert answer.json()["reasons"] == ["database: OK", "broker: OK"]
        assert "/healthcheck" not in client.get("/openapi.json").text
    with TestClient(_app(stack, dead_database)) as client:
        answer = client.get("/healthcheck")
        assert answer.status_code == 503
        assert answer.text.startswith("database: ") and "Can't connect" in answer.text
        assert answer.text.endswith("broker: OK")
        assert client.head("/healthcheck").status_code == 503


def test_api_healthcheck_needs_no_token_under_keystone(stack):  # noqa: F811
    pytest.importorskip("keystonemiddleware.auth_token")
    from tests.unit.rest.test_auth import factory

    stack.conf.set_override("auth_strategy", "keystone", group="api")
    try:
        app = _app(stack, auth_protocol_factory=factory())
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/v3/pA/limits").status_code == 401
            assert client.get("/healthcheck").status_code == 200
    finally:
        stack.conf.clear_override("auth_strategy", group="api")


def test_process_checks_reach_the_configured_broker(conf, sqlite_database):
    """blockmgr-api's and the daemons' transport is a broker: its login is part of the check."""
    conf.set_override("transport_url", "rabbit://guest:guest@127.0.0.1:%d/" % _closed_port())
    checks = health.process_checks(conf, sqlite_database, max_age=0)
    results = {r.name: r for r in checks.run()}
    assert results["database"].ok and not results["broker"].ok
    assert "127.0.0.1" in results["broker"].detail


def test_a_good_broker_login_is_reused_longer_than_a_failed_one():
    calls = []

    class Broker:
        name = "broker"
        ok_max_age = 60.0
        ok = True

        def check(self):
            calls.append(1)
            return self.ok, "answer %d" % len(calls)

    broker = Broker()
    checks = health.HealthChecks([broker], max_age=0.01)
    checks.run()
    time.sleep(0.05)
    assert checks.run()[0].detail == "answer 1"      # reused: it succeeded
    assert len(calls) == 1
    uncached = health.HealthChecks([broker], max_age=0)
    broker.ok = False
    assert not uncached.run()[0].ok and len(calls) == 2
    failing = health.HealthChecks([broker], max_age=0.01)
    failing.run()
    time.sleep(0.05)
    failing.run()
    assert len(calls) == 4                            # a failure is retried
