"""Benchmark: manage_existing and create_volume flows, persistence off and on.

No-op driver, SQLite file database (WAL), real quota engine (one project, so every flow of
every worker charges the same usage rows). Prints ops/s, median and p95 latency, the CPU
time the worker process(es) spent per flow, and DB commits per flow (SQLAlchemy ``commit``
events on every engine involved: the service database and the flow logbooks).
Never a timed test: figures go to docs/benchmarks.md.

    .venv/bin/python bench/bench_flows.py [--flows 300] [--workers 1 2] [--repeat 3]
        [--ops manage_existing create_volume] [--persistence off on plain]

``--persistence``: ``off`` runs the flows on TaskFlow's engine with the logbook in memory,
``on`` with the logbook in the database, ``plain`` calls the same tasks one after the other
without any engine (what the flow's own work costs; ``off`` minus ``plain`` is the engine).

``--workers N`` runs N worker processes at once, each a ``VolumeManager`` of its own backend
(``bench@noop1``, ``bench@noop2``, ...: one process per backend, as a multi-backend deployment
runs them, so no worker ever recovers another's flows) on the same SQLite file; ops/s is then
the aggregate over the common measuring window and latencies are pooled. Every listed worker
count is measured, so the single-process figure is always reported next to the aggregate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time

OPS = ("manage_existing", "create_volume")
MODES = ("off", "on", "plain")
WARMUP = 20


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


class PlainRunner:
    """Runs a flow's tasks as plain function calls, in order, with no engine and no logbook
    (``--persistence plain``): the same task code and database work as a flow, so the
    difference to ``off`` (TaskFlow's engine, logbook in memory) is what the engine itself
    costs per flow. Linear flows only; no revert (the benchmark's flows succeed)."""

    def __init__(self):
        self._flows = {}

    def close_in(self, conn, flow_id):
        return lambda: None

    def run(self, factory, *, store, runtime, kind, resource_id, factory_kwargs=None,
            flow_id=None, transient=None):
        import types
        flow = self._flows.get(factory)
        if flow is None:
            flow = self._flows[factory] = factory(**(factory_kwargs or {}))
        values = dict(store, flow_id=flow_id or resource_id, runtime=runtime,
                      **(transient or {}))
        for task in flow:
            result = task.execute(**{arg: values[name] for arg, name in task.rebind.items()
                                     if name in values})
            for name, index in task.save_as.items():
                values[name] = result if index is None else result[index]
        storage = types.SimpleNamespace(fetch=values.__getitem__)
        return types.SimpleNamespace(succeeded=True, failure=None,
                                     engine=types.SimpleNamespace(storage=storage))


def _config(tmp: str, url: str, persistence: str):
    from blockmgr import conf as bm_conf
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", tmp)
    conf.set_override("host", "bench")
    conf.set_override("connection", url, group="database")
    if persistence in ("off", "plain"):
        conf.set_override("persistence_connection", "memory", group="flows")
    return conf


def _backend_name(worker: int) -> str:
    return "noop%d" % (worker + 1)


def _prepare(url: str, op: str, flows: int, workers: int) -> list[list[str]]:
    """Create the schema and each worker's volume rows; return the ids per worker."""
    from blockmgr.db import models, repository
    from blockmgr.db.session import Database
    db = Database(url)
    db.create_schema()
    status = "managing" if op == "manage_existing" else "creating"
    ids = []
    with db.writer() as session:
        for worker in range(workers):
            host = "bench@%s#pool" % _backend_name(worker)
            ids.append([repository.create(session, models.Volume, status=status, size=1,
                                          host=host, project_id="bench").id
                        for _ in range(flows + WARMUP)])
    db.dispose()
    return ids


def _worker(tmp, url, op, persistence, worker, ids, barrier, results):
    """One worker process (or the parent when alone): warm up, wait, run, report."""
    import sqlalchemy as sa
    from blockmgr import context as bm_context
    from blockmgr.db.session import Database
    from blockmgr.notifications import MemoryNotifier
    from blockmgr.quota import QuotaEngine
    from blockmgr.volume.manager import VolumeManager

    conf = _config(tmp, url, persistence)
    db = Database(url)
    manager = VolumeManager(conf, _backend_name(worker), db=db, driver=NoopDriver(),
                            quota=QuotaEngine(db, conf), notifier=MemoryNotifier(),
                            runner=PlainRunner() if persistence == "plain" else None)
    commits = [0]
    engines = {id(db.engine): db.engine}
    backend_engine = getattr(getattr(manager.runner, "backend", None), "engine", None)
    if backend_engine is not None:
        engines[id(backend_engine)] = backend_engine
    for engine in engines.values():
        sa.event.listen(engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    ctx = bm_context.RequestContext(project_id="bench")
    call = ((lambda vid: manager.manage_existing(ctx, vid, {"source-name": "x"}))
            if op == "manage_existing" else (lambda vid: manager.create_volume(ctx, vid)))
    for vid in ids[:WARMUP]:   # imports, statement caches, pools, the flow pool
        call(vid)
    if barrier is not None:
        barrier.wait()
    latencies = []
    before = commits[0]
    cpu0 = time.process_time()
    start = time.time()
    for vid in ids[WARMUP:]:
        t0 = time.perf_counter()
        call(vid)
        latencies.append(time.perf_counter() - t0)
    end = time.time()
    result = {"start": start, "end": end, "latencies": latencies,
              "cpu": time.process_time() - cpu0, "commits": commits[0] - before}
    if results is None:
        return result
    results.put(result)
    return None


def run(op: str, persistence: str, flows: int, workers: int = 1) -> dict:
    """Measure ``flows`` flows per worker; aggregate over the workers."""
    tmp = tempfile.mkdtemp(prefix="bm-bench-")
    url = "sqlite:///%s/bench.sqlite" % tmp
    ids = _prepare(url, op, flows, workers)
    if persistence == "on":   # logbook tables first: workers upgrading at once collide
        from blockmgr.flows import engine as flow_engine
        flow_engine.open_persistence(_config(tmp, url, persistence)).close()
    if workers == 1:
        parts = [_worker(tmp, url, op, persistence, 0, ids[0], None, None)]
    else:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(workers), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(tmp, url, op, persistence, w, ids[w],
                                                   barrier, results))
                 for w in range(workers)]
        for proc in procs:
            proc.start()
        parts = [results.get() for _ in procs]
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise RuntimeError("bench worker exited with %s" % proc.exitcode)
    total = flows * workers
    elapsed = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    latencies = sorted(lat for p in parts for lat in p["latencies"])
    return {"op": op, "persistence": persistence, "workers": workers,
            "ops_s": total / elapsed,
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "cpu_ms": sum(p["cpu"] for p in parts) / total * 1000,
            "commits": sum(p["commits"] for p in parts) / total}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=300, help="measured flows per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="worker process counts to measure (e.g. 1 2)")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    parser.add_argument("--persistence", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each configuration this many times (one row each: on "
                             "a shared machine compare the lowest CPU ms/flow)")
    args = parser.parse_args()
    print("load average before: %.2f %.2f %.2f; %d CPUs" % (os.getloadavg()
                                                             + (os.cpu_count(),)))
    print("%-16s %-11s %7s %8s %10s %8s %12s %13s" % (
        "flow", "persistence", "workers", "ops/s", "median ms", "p95 ms", "CPU ms/flow",
        "commits/flow"))
    for op in args.ops:
        for persistence in args.persistence:
            for workers in [w for w in args.workers for _ in range(args.repeat)]:
                r = run(op, persistence, args.flows, workers)
                print("%-16s %-11s %7d %8.1f %10.1f %8.1f %12.1f %13.1f" % (
                    r["op"], r["persistence"], r["workers"], r["ops_s"], r["median_ms"],
                    r["p95_ms"], r["cpu_ms"], r["commits"]), flush=True)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
