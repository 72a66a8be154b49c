"""``blockmgr serve``'s REST port carries what the distributed daemons serve on their own:
every metric family ``docs/metrics.md`` lists, and a ``/healthcheck`` that covers the
volume worker's backends."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from blockmgr import metrics
from blockmgr.cmd import serve

from tests.unit.rest.conftest import stack  # noqa: F401  (fixture)
from tests.unit.rest.conftest import Api

DOC = "docs/metrics.md"


def documented_families() -> set[str]:
    """The blockmgr_* names of the table in docs/metrics.md (sample names as scraped)."""
    import pathlib

    text = (pathlib.Path(__file__).parents[2] / DOC).read_text()
    table = [line for line in text.splitlines() if line.startswith("| `blockmgr_")]
    return {name for line in table for name in re.findall(r"`(blockmgr_[a-z_]+)`",
                                                          line.split("|")[1])}


def scraped_names(text: str) -> set[str]:
    """Sample names, and the names of families declared without a sample yet (a counter
    with labels has none until its first increment: ``# TYPE <name> counter``)."""
    names = {sample.name for family in text_string_to_metric_families(text)
             for sample in family.samples}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name if kind != "counter" or name.endswith("_total") else name + "_total")
    return names


def test_serve_exports_every_documented_family(stack):  # noqa: F811
    stack.conf.set_override("enabled", True, group="metrics")
    collectors = []
    try:
        collectors = serve.instrument(stack.conf, stack)
        with TestClient(stack.app) as client:
            api = Api(client, "pA")
            volume = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
            api.wait("volumes/%s" % volume["id"], "volume", {"available"})
            stack.volumes.backends[0].publish_capabilities()
            stack.scheduler.reconciler.run()
            text = client.get("/metrics", follow_redirects=False).text
    finally:
        registry = metrics.get().registry
        for collector in collectors:
            registry.unregister(collector)
        stack.conf.clear_override("enabled", group="metrics")
    documented = documented_families()
    assert {"blockmgr_pool_total_bytes", "blockmgr_api_requests_total",
            "blockmgr_quota_reservations_outstanding"} <= documented
    missing = documented - scraped_names(text)
    assert not missing, missing


def test_serve_healthcheck_covers_the_backends(stack):  # noqa: F811
    serve.instrument(stack.conf, stack)
    with TestClient(stack.app) as client:
        answer = client.get("/healthcheck", headers={"Accept": "application/json"})
        assert answer.status_code == 200
        assert answer.json()["reasons"] == ["database: OK", "broker: OK", "backends: OK"]
        backend = stack.volumes.backends[0]
        backend.ready.clear()
        backend.setup_error = "driver setup failed (attempt 2): disk gone"
        try:
            stack.app.state.health.max_age = 0
            answer = client.get("/healthcheck")
        finally:
            backend.ready.set()
            backend.setup_error = None
    assert answer.status_code == 503
    assert answer.text.endswith("backends: down: node1@loopback: driver setup failed "
                                "(attempt 2): disk gone")
