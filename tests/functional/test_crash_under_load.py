"""Crash-safety under load through the real daemons (``crash_load.py`` has the machinery).

Every task boundary of every flow is injected, plus random SIGKILLs, while a mixed workload
runs; then the invariants are checked and the summary table printed (``-s`` shows it).

CI cost: each point costs a worker restart and the time for its operation to come round
(about a second), so CI spreads the points over the three databases -- every point runs on
one of them, each database gets a third plus three random kills. ``BLOCKMGR_CRASH_LOAD_ALL=1``
runs every point on every database (about 3x longer), as does ``python -m
tests.functional.crash_load --db URL`` by hand; ``BLOCKMGR_CRASH_LOAD_ONLY=<text>`` runs only
the points whose spec contains the text.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import DB_BACKENDS
from tests.conftest import require_service
from tests.functional import crash_load
from tests.functional.daemons import private_vhost

pytestmark = [pytest.mark.functional, pytest.mark.slow]

RANDOM_KILLS = 3


@pytest.fixture(scope="module")
def vhost_url():
    require_service("rabbitmq")
    with private_vhost() as url:
        yield url


def _points_for(db_backend: str) -> list:
    points = crash_load.injection_points()
    only = os.environ.get("BLOCKMGR_CRASH_LOAD_ONLY")
    if only:    # by hand: the points whose spec contains this text, on every database
        return [p for p in points if only in p[1]]
    if os.environ.get("BLOCKMGR_CRASH_LOAD_ALL") == "1":
        return points
    index = DB_BACKENDS.index(db_backend)
    return points[index::len(DB_BACKENDS)]


def test_injection_points_cover_every_boundary_of_every_flow():
    points = crash_load.injection_points()
    flows = crash_load.flow_tables()
    from blockmgr.flows import faults

    for op, flow in flows.items():
        for spec in faults.boundaries(flow):
            when, _sep, task = spec.partition(":")
            assert any(p[1] == "%s:%s/%s" % (when, flow.name, task) for p in points), spec
    spread = [p for backend in DB_BACKENDS for p in _points_for(backend)]
    assert sorted(spread) == sorted(points)


@pytest.mark.timeout(900)
def test_killing_the_worker_at_every_boundary_under_load_loses_nothing(
        db_backend, db_url, tmp_path, vhost_url):
    with crash_load.CrashLoad(tmp_path, db_url, vhost_url) as run:
        report = run.run(_points_for(db_backend), RANDOM_KILLS, db_backend)
        logs = run.cluster.logs() if report.failures else ""
    print("\n" + report.table())
    assert report.failures == [], "%s\n%s" % (report.failures, logs)
