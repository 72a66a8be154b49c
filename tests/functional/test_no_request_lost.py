"""No accepted request is lost when a daemon stops: the request ledger (blockmgr.ledger).

The deployment as an operator runs it: ``blockmgr-api``, ``blockmgr-scheduler`` and
``blockmgr-volume`` as processes on RabbitMQ (a private vhost) and a real database. Creates
go through the REST API while a daemon is stopped -- SIGTERM (graceful) or SIGKILL -- half a
second into the burst, then restarted. Every create the API accepted must end
``available``: none may be lost with a message the daemon had taken, none may end ``error``
because a process stopped. Afterwards the ledger holds no open request and quota is exact.

Repeat it to gain confidence (each run takes 20-40 s)::

    for i in $(seq 10); do .venv/bin/python -m pytest -q \\
        tests/functional/test_no_request_lost.py || break; done
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest
import sqlalchemy as sa

from blockmgr.db import models
from blockmgr.db import requests as db_requests
from blockmgr.flows import faults
from tests.conftest import require_service
from tests.functional.daemons import Cluster
from tests.functional.daemons import private_vhost
from tests.functional.daemons import start_api
from tests.functional.daemons import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.slow]

PROJECT = "p-ledger"
HEADERS = {"X-User-Id": "u-ledger", "X-Project-Id": PROJECT}
CREATES = 60


def _start_api(cluster: Cluster, tmp_path, env: dict | None = None) -> str:
    """The API with unlimited quota; returns its base URL for the test project."""
    _api, url = start_api(cluster, tmp_path, env=env,
                          extra="\n[quota]\nvolumes = -1\ngigabytes = -1\n")
    return "%s/v3/%s" % (url, PROJECT)


def _burst(base_url: str, count: int, concurrency: int = 10) -> list[str]:
    """``count`` creates through REST, ``concurrency`` at a time; the ids accepted."""
    def create(i):
        with httpx.Client(base_url=base_url, headers=HEADERS, timeout=60) as http:
            response = http.post("/volumes", json={"volume": {"size": 1, "name": "v%d" % i}})
            assert response.status_code == 202, response.text
            return response.json()["volume"]["id"]

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(create, range(count)))


def _statuses(cluster: Cluster, ids) -> dict[str, str]:
    with cluster.db.reader() as session:
        return dict(session.execute(sa.select(models.Volume.id, models.Volume.status)
                                    .where(models.Volume.id.in_(list(ids)))).all())


def _open_requests(cluster: Cluster) -> list:
    with cluster.db.reader() as session:
        return session.execute(sa.select(models.Request.id, models.Request.state,
                                         models.Request.target).where(
            models.Request.state.in_(db_requests.OPEN))).all()


def _quota_in_use(cluster: Cluster) -> dict:
    with cluster.db.reader() as session:
        return dict(session.execute(sa.select(models.QuotaUsage.resource,
                                              models.QuotaUsage.in_use).where(
            models.QuotaUsage.project_id == PROJECT)).all())


@pytest.mark.parametrize("db_backend", ["mysql", "postgresql"])
@pytest.mark.parametrize("victim,how", [("a", signal.SIGTERM), ("a", signal.SIGKILL),
                                        ("scheduler", signal.SIGKILL)],
                         ids=["worker-sigterm", "worker-kill", "scheduler-kill"])
def test_every_accepted_create_ends_available_when_a_daemon_stops(db_backend, db_url,
                                                                  tmp_path, victim, how):
    require_service("rabbitmq")
    with private_vhost() as vhost, Cluster(
            tmp_path, db_url, hosts={"a": {"e2e_create_delay": 0.05}}, rabbit_url=vhost,
            default_opts={"rpc_worker_threads": 4},
            scheduler_opts={"startup_wait": 5}) as cluster:
        cluster.start()
        base_url = _start_api(cluster, tmp_path)
        with concurrent.futures.ThreadPoolExecutor(1) as runner:
            burst = runner.submit(_burst, base_url, CREATES)
            time.sleep(0.5)
            process = cluster.processes[victim]
            process.proc.send_signal(how)
            process.proc.wait(60)
            ids = burst.result(timeout=180)
        if victim == "scheduler":
            cluster.start_scheduler()
        else:
            cluster.start_volume(victim)
        assert len(ids) == CREATES

        def settled():
            statuses = _statuses(cluster, ids)
            return all(s not in ("creating",) for s in statuses.values()) and statuses

        final = wait_for(settled, 120, 0.2)
        assert final, ("still creating", {s: sum(1 for v in _statuses(cluster, ids).values()
                                                 if v == s) for s in ("creating",)},
                       cluster.logs())
        counts = {s: sum(1 for v in final.values() if v == s) for s in set(final.values())}
        assert counts == {"available": CREATES}, (counts, cluster.logs())
        assert wait_for(lambda: not _open_requests(cluster), 30, 0.2), _open_requests(cluster)
        usage = _quota_in_use(cluster)
        assert (usage.get("volumes"), usage.get("gigabytes")) == (CREATES, CREATES), usage


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_a_worker_killed_between_its_claim_and_the_flow_loses_nothing(db_backend, db_url,
                                                                     tmp_path):
    """The crash boundary just after a worker's claim committed (a create's claim is
    written with its flow's first write): the restarted worker takes its dead
    predecessor's claim back and finishes the request."""
    require_service("rabbitmq")
    with private_vhost() as vhost, Cluster(tmp_path, db_url, hosts={"a": {}},
                                           rabbit_url=vhost) as cluster:
        cluster.db_sync()
        cluster.start_scheduler()
        worker = cluster.start_volume(
            "a", env={faults.ENV_VAR: "after:ledger.claimed"})
        cluster.wait_up(["a"], scheduler=True)
        base_url = _start_api(cluster, tmp_path)
        [vid] = _burst(base_url, 1, 1)
        assert worker.proc.wait(60) == faults.EXIT_CODE, worker.log_text()
        with cluster.db.reader() as session:
            [(state, claimed_by)] = session.execute(sa.select(
                models.Request.state, models.Request.claimed_by).where(
                models.Request.resource_id == vid)).all()
        assert state == "claimed" and claimed_by.startswith(cluster.backend("a") + "/")
        cluster.start_volume("a")
        assert wait_for(lambda: _statuses(cluster, [vid])[vid] == "available", 60, 0.1), \
            cluster.logs()
        assert wait_for(lambda: not _open_requests(cluster), 30, 0.2)


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_an_api_killed_between_its_commit_and_the_cast_loses_nothing(db_backend, db_url,
                                                                    tmp_path):
    """The crash boundary after the API's accepting transaction committed and before its
    cast: nobody is told, yet the scheduler's sweep finds the request and it is served."""
    require_service("rabbitmq")
    with private_vhost() as vhost, Cluster(
            tmp_path, db_url, hosts={"a": {}}, rabbit_url=vhost) as cluster:
        cluster.start()
        base_url = _start_api(cluster, tmp_path,
                              env={faults.ENV_VAR: "after:ledger.recorded"})
        with httpx.Client(base_url=base_url, headers=HEADERS, timeout=30) as http:
            with pytest.raises(httpx.TransportError):
                http.post("/volumes", json={"volume": {"size": 1, "name": "orphan"}})
        assert cluster.processes["api"].proc.wait(30) == faults.EXIT_CODE
        with cluster.db.reader() as session:
            [vid] = session.execute(sa.select(models.Volume.id).where(
                models.Volume.display_name == "orphan")).scalars().all()
        # the scheduler's periodic sweep (sweep_interval, 10 s) rings it
        assert wait_for(lambda: _statuses(cluster, [vid])[vid] == "available", 60, 0.2), \
            cluster.logs()
        assert not _open_requests(cluster)


class _FastSweeps(Cluster):
    """Daemons that sweep every 2 s and retry an unsettled request after 0.5 s."""

    def _write_config(self, role, host, backend_opts):
        path = super()._write_config(role, host, backend_opts)
        with open(path, "a") as f:
            f.write("\n[requests]\nsweep_interval = 2\nretry_delay = 0.5\n")
        return path


def _kill_sessions(db_backend: str, db_url: str) -> int:
    """Kill every session of the test database but this one (as a DBA would, or a
    failover): MariaDB ``KILL``, PostgreSQL ``pg_terminate_backend``."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    name = sa.engine.make_url(db_url).database
    try:
        with engine.connect() as conn:
            if db_backend == "mysql":
                ids = conn.execute(sa.text(
                    "SELECT id FROM information_schema.processlist WHERE db = :db "
                    "AND id <> CONNECTION_ID()"), {"db": name}).scalars().all()
                for session_id in ids:
                    try:
                        conn.execute(sa.text("KILL %d" % int(session_id)))
                    except sa.exc.DBAPIError:
                        pass   # ended meanwhile
                return len(ids)
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db "
                "AND pid <> pg_backend_pid()"), {"db": name}).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_backend", ["mysql", "postgresql"])
def test_database_sessions_killed_under_load_leave_nothing_stranded(db_backend, db_url,
                                                                    tmp_path):
    """Every database session of the service killed three times during a burst of creates
    and extends: the API answers 202 or 503 (with Retry-After), never 500; afterwards no
    resource is transitional, no request is open and quota matches the tables."""
    from blockmgr import conf as bm_conf
    from blockmgr import quota as bm_quota
    from blockmgr.db.session import Database

    require_service("rabbitmq")
    with private_vhost() as vhost, _FastSweeps(
            tmp_path, db_url, hosts={"a": {"e2e_create_delay": 0.02}}, rabbit_url=vhost,
            default_opts={"rpc_worker_threads": 4}) as cluster:
        cluster.start()
        base_url = _start_api(cluster, tmp_path)
        codes: list[int] = []

        def create_and_extend(i):
            with httpx.Client(base_url=base_url, headers=HEADERS, timeout=60) as http:
                response = http.post("/volumes", json={"volume": {"size": 1}})
                codes.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers.get("Retry-After"), response.headers
                if response.status_code != 202:
                    return
                vid = response.json()["volume"]["id"]
                for _ in range(200):
                    got = http.get("/volumes/%s" % vid)
                    codes.append(got.status_code)
                    if got.status_code == 200 and got.json()["volume"]["status"] != "creating":
                        break
                    time.sleep(0.05)
                extend = http.post("/volumes/%s/action" % vid,
                                   json={"os-extend": {"new_size": 2}})
                codes.append(extend.status_code)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(create_and_extend, i) for i in range(40)]
            killed = 0
            for _ in range(3):
                time.sleep(0.7)
                killed += _kill_sessions(db_backend, db_url)
            for future in futures:
                future.result(timeout=300)
        print("\n[%s] %d sessions killed; answers: %s" % (
            db_backend, killed, {c: codes.count(c) for c in set(codes)}))
        assert killed > 0
        assert 500 not in codes and all(c < 500 or c == 503 for c in codes), codes

        def settled():
            with cluster.db.reader() as session:
                busy = session.execute(sa.select(models.Volume.id, models.Volume.status)
                                       .where(models.Volume.deleted.is_(False),
                                              models.Volume.status.in_(
                                                  ["creating", "extending", "deleting"]))
                                       ).all()
            return not busy and not _open_requests(cluster)

        assert wait_for(settled, 120, 0.5), (_open_requests(cluster), cluster.logs())
        conf = bm_conf.new_config(args=[])
        db = Database(db_url)
        try:
            assert bm_quota.QuotaEngine(db, conf).check() == []
        finally:
            db.dispose()
