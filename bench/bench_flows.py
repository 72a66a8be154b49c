"""Benchmark: manage_existing and create_volume flows, persistence off and on.

No-op driver, SQLite file database (WAL), real quota engine. Prints ops/s, median and p95
latency and DB commits per flow (SQLAlchemy ``commit`` events on every engine involved).
Never a timed test: figures go to docs/benchmarks.md.

    /work/venv/bin/python bench/bench_flows.py [--flows 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import sqlalchemy as sa

from blockmgr import conf as bm_conf
from blockmgr import context as bm_context
from blockmgr.db import models, repository
from blockmgr.db.session import Database
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager


class NoopDriver:
    """Answers instantly; only what the two flows call."""

    def manage_existing_get_size(self, volume, ref):
        return 1

    def manage_existing(self, volume, ref):
        return {"provider_location": "noop"}

    def unmanage(self, volume):
        return None

    def create_volume(self, volume):
        return None

    def delete_volume(self, volume):
        return None


def run(op: str, persistence: str, flows: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="bm-bench-")
    url = "sqlite:///%s/bench.sqlite" % tmp
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", tmp)
    conf.set_override("host", "bench")
    conf.set_override("connection", url, group="database")
    if persistence == "off":
        conf.set_override("persistence_connection", "memory", group="flows")
    db = Database(url)
    db.create_schema()
    manager = VolumeManager(conf, "noop", db=db, driver=NoopDriver(),
                            quota=QuotaEngine(db, conf), notifier=MemoryNotifier())
    commits = [0]
    engines = {id(db.engine): db.engine}
    backend_engine = getattr(manager.runner.backend, "engine", None)
    if backend_engine is not None:
        engines[id(backend_engine)] = backend_engine
    for engine in engines.values():
        sa.event.listen(engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    ctx = bm_context.RequestContext(project_id="bench")
    status = "managing" if op == "manage_existing" else "creating"
    with db.writer() as session:
        ids = [repository.create(session, models.Volume, status=status, size=1,
                                 host=manager.host + "#pool", project_id="bench").id
               for _ in range(flows + 20)]
    call = ((lambda vid: manager.manage_existing(ctx, vid, {"source-name": "x"}))
            if op == "manage_existing" else (lambda vid: manager.create_volume(ctx, vid)))
    for vid in ids[:20]:   # warm-up: imports, statement caches, pool
        call(vid)
    latencies = []
    before = commits[0]
    start = time.perf_counter()
    for vid in ids[20:]:
        t0 = time.perf_counter()
        call(vid)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"op": op, "persistence": persistence, "ops_s": flows / elapsed,
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "commits": (commits[0] - before) / flows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300)
    args = parser.parse_args()
    print("%-16s %-11s %8s %10s %8s %14s" % ("flow", "persistence", "ops/s", "median ms",
                                              "p95 ms", "commits/flow"))
    for op in ("manage_existing", "create_volume"):
        for persistence in ("off", "on"):
            r = run(op, persistence, args.flows)
            print("%-16s %-11s %8.1f %10.1f %8.1f %14.1f" % (
                r["op"], r["persistence"], r["ops_s"], r["median_ms"], r["p95_ms"],
                r["commits"]))


if __name__ == "__main__":
    main()
