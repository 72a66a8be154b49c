"""Benchmark: cluster mode's cost per persisted flow, and how fast a peer takes over.

In one process, on a SQLite file database (WAL) and a real Redis (127.0.0.1:6379, keys under
``blockmgr:bench-*``, removed afterwards), with the in-memory fake driver and the real quota
engine:

1. **Flow cost, jobboard off and on.** ``--flows`` create_volume flows through a
   ``VolumeManager`` whose flows persist in the database, once with the plain runner and
   in-process locks (a backend without ``cluster``) and once as a cluster member: job posted
   claimed, claim renewed in the background, tooz locks on Redis, job consumed. Prints the
   median/p95 wall time and the CPU time (``time.process_time``) per flow.
2. **Takeover.** Member A starts ``--takeover`` creates whose driver call never returns,
   then "dies" (stops renewing its claims; its tooz locks are dropped). Prints the time from
   the death until member B's conductor has finished every flow, and that time minus the
   claim TTL (the takeover latency proper: expiry detection + resume).

Never a timed test: figures go to docs/benchmarks.md ("Cluster mode").

    .venv/bin/python bench/bench_cluster.py [--flows 200] [--takeover 10] [--ttl 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REDIS_URL = os.environ.get("BLOCKMGR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _conf(tmp: str, url: str, ttl: int):
    from blockmgr import conf as bm_conf

    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", tmp)
    conf.set_override("host", "bench")
    conf.set_override("connection", url, group="database")
    conf.set_override("jobboard_url", REDIS_URL, group="cluster")
    conf.set_override("claim_ttl", ttl, group="cluster")
    conf.set_override("claim_renew_interval", max(0.2, ttl / 4), group="cluster")
    conf.set_override("takeover_poll_interval", 0.2, group="cluster")
    return conf


def _manager(conf, db, driver, member=None, host="bench@fake"):
    from blockmgr.notifications import MemoryNotifier
    from blockmgr.quota import QuotaEngine
    from blockmgr.volume.manager import VolumeManager

    extra = {}
    if member is not None:
        extra = {"runner": member.runner, "locks": member.locks, "host": member.cluster_host}
    quota = QuotaEngine(db, conf)
    for resource in ("volumes", "gigabytes"):
        quota.set_limit("bench", resource, -1)
    return VolumeManager(conf, "fake", db=db, driver=driver, quota=quota,
                         notifier=MemoryNotifier(), **extra)


def _volume(manager):
    from blockmgr.db import models
    from blockmgr.db import repository

    with manager.db.writer() as session:
        row = repository.create(session, models.Volume, status="creating", size=1,
                                host=manager.host + "#pool", project_id="bench")
        manager.quota.consume(session, "bench", volumes=1, gigabytes=1)
        return row.id


def _measure(manager, flows: int) -> tuple[list[float], float]:
    from blockmgr import context as bm_context

    ctx = bm_context.RequestContext(project_id="bench", user_id="u")
    for _ in range(10):   # warm-up: pools, statement caches, scripts
        manager.create_volume(ctx, _volume(manager))
    ids = [_volume(manager) for _ in range(flows)]
    walls = []
    cpu0 = time.process_time()
    for vid in ids:
        t0 = time.perf_counter()
        manager.create_volume(ctx, vid)
        walls.append(time.perf_counter() - t0)
    return walls, (time.process_time() - cpu0) / flows


def _report(label: str, walls: list[float], cpu: float) -> None:
    walls = sorted(walls)
    p95 = walls[int(len(walls) * 0.95) - 1]
    print("%-34s median %6.2f ms  p95 %6.2f ms  cpu %6.2f ms/flow" % (
        label, statistics.median(walls) * 1e3, p95 * 1e3, cpu * 1e3))


def _cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match="blockmgr:%s*" % prefix))
    if keys:
        client.delete(*keys)
    client.close()


def flow_cost(tmp: str, flows: int, ttl: int) -> None:
    from blockmgr.cluster import member as cluster_member
    from blockmgr.db.session import Database
    from blockmgr.testing.fake_driver import FakeDriver

    for mode in ("off", "on"):
        url = "sqlite:///%s" % os.path.join(tmp, "cost-%s.sqlite" % mode)
        db = Database(url)
        db.create_schema()
        conf = _conf(tmp, url, ttl)
        prefix = "bench-%s" % uuid.uuid4().hex[:8]
        member = None
        if mode == "on":
            member = cluster_member.open_member(conf, "%s@fake" % prefix, "bench@fake", db)
        try:
            manager = _manager(conf, db, FakeDriver(None, "fake", host="bench@fake"), member)
            walls, cpu = _measure(manager, flows)
            _report("create_volume, jobboard %s" % mode, walls, cpu)
        finally:
            if member is not None:
                member.stop()
                _cleanup(prefix)
            db.dispose()


def takeover(tmp: str, count: int, ttl: int) -> None:
    from blockmgr import context as bm_context
    from blockmgr.cluster import member as cluster_member
    from blockmgr.db.session import Database
    from blockmgr.testing.fake_driver import FakeDriver

    class Stuck(FakeDriver):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.entered = threading.Semaphore(0)
            self.gate = threading.Event()

        def create_volume(self, volume):
            self.entered.release()
            self.gate.wait()
            return super().create_volume(volume)

    url = "sqlite:///%s" % os.path.join(tmp, "takeover.sqlite")
    db = Database(url)
    db.create_schema()
    conf = _conf(tmp, url, ttl)
    prefix = "bench-%s" % uuid.uuid4().hex[:8]
    chost = "%s@fake" % prefix
    a = cluster_member.open_member(conf, chost, "a@fake", db, on_lost=lambda *_: None)
    b = cluster_member.open_member(conf, chost, "b@fake", db)
    try:
        stuck = Stuck(None, "fake", host=chost)
        manager_a = _manager(conf, db, stuck, a)
        manager_b = _manager(conf, db, FakeDriver(None, "fake", host=chost), b)
        ctx = bm_context.RequestContext(project_id="bench", user_id="u")
        # A runs one create at a time per thread; the fake driver serialises calls under
        # its own lock, so A's flows queue on it like a stuck backend call.
        for vid in [_volume(manager_a) for _ in range(count)]:
            threading.Thread(target=manager_a.create_volume, args=(ctx, vid),
                             daemon=True).start()
        deadline = time.monotonic() + 30
        while len(a.keeper.held()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        held = len(a.keeper.held())
        conductor = b.start_conductor(manager_b)
        cpu0 = time.process_time()
        died = time.perf_counter()
        a.keeper.stop()                       # A dies: no renewals ...
        a.coordinator._acquired_locks.clear()  # ... and no lock heartbeats
        while len(conductor.taken_over) < held and time.perf_counter() - died < ttl + 60:
            time.sleep(0.01)
        elapsed = time.perf_counter() - died
        cpu = time.process_time() - cpu0
        print("takeover of %d flow(s), ttl %d s: all finished %.2f s after death "
              "(%.2f s after the TTL); cpu %.1f ms (both members, this process)"
              % (len(conductor.taken_over), ttl, elapsed, elapsed - ttl, cpu * 1e3))
        print("  outcomes: %s" % sorted({m for _f, m in conductor.taken_over}))
    finally:
        b.stop()
        a.stop()
        _cleanup(prefix)
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--takeover", type=int, default=10)
    parser.add_argument("--ttl", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        flow_cost(tmp, args.flows, args.ttl)
        takeover(tmp, args.takeover, args.ttl)


if __name__ == "__main__":
    main()
