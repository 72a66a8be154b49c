"""Benchmark: the user's path -- creates through the REST API, the scheduler and the worker.

``blockmgr-api`` (noauth, project ``bench``), ``blockmgr-scheduler`` and ``blockmgr-volume`` run as separate processes on
a fresh database (MariaDB by default, or PostgreSQL) and RabbitMQ, as a deployment runs them.
The load generator POSTs ``/v3/bench/volumes`` (size 1) over keep-alive connections, keeping
``--in-flight`` creates outstanding (accepted but not yet ``available``), and polls the
database for their statuses (one query per poll interval). Latency is POST sent -> the poll
that saw ``available``.

Printed: throughput, latency percentiles, errors, and the CPU per create of each process
(API, scheduler, worker) and of the rest of the system (database server, broker, this load
generator), so the API's and the scheduler's costs are visible next to the worker's.
Never a timed test: figures go to ``docs/benchmarks.md``.

    .venv/bin/python bench/bench_rest.py [--requests 1000] [--in-flight 200]
        [--db mysql|postgresql] [--posters 4] [--poll-interval 0.01] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

import bench_e2e as e2e

ROLES = ("api", "scheduler", "volume")
BINARIES = {"api": "blockmgr-api", "scheduler": "blockmgr-scheduler",
            "volume": "blockmgr-volume"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp: Path, db_url: str, tag: str, port: int, worker_threads: int) -> Path:
    """One config file for the three processes (the shared file of docs/serve.md)."""
    path = tmp / "blockmgr.conf"
    path.write_text(e2e.node_config(
        host="bench-%s" % tag, tag=tag, home=tmp, volumes=tmp / "volumes", db_url=db_url,
        worker_threads=worker_threads, report_interval=5, stats_interval=30,
        sections="[api]\nbind_port = %d\n\n[quota]\nvolumes = -1\ngigabytes = -1\n\n"
        % port))
    return path


def start(role: str, conf: Path, tmp: Path) -> subprocess.Popen:
    log = open(tmp / ("%s.out" % role), "wb")
    return subprocess.Popen([str(e2e.BIN / BINARIES[role]), "--config-file", str(conf),
                             "--log-file", str(tmp / ("%s.log" % role))],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_ready(url: str, db_engine, host: str, procs: dict, timeout: float = 90) -> None:
    """The API answers version discovery; the worker and the scheduler heartbeat."""
    services = sa.table("services", sa.column("binary"), sa.column("host"),
                        sa.column("heartbeat_at"))
    query = sa.select(services.c.binary, services.c.host).where(
        services.c.heartbeat_at.is_not(None))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [role for role, proc in procs.items() if proc.poll() is not None]
        if dead:
            raise SystemExit("%s exited early" % ", ".join(dead))
        try:
            api_up = httpx.get(url + "/", timeout=2).status_code == 300
            with db_engine.connect() as conn:
                rows = {tuple(r) for r in conn.execute(query)}
        except (httpx.TransportError, sa.exc.DBAPIError):
            api_up, rows = False, set()
        binaries = {b for b, h in rows}
        if api_up and "blockmgr-scheduler" in binaries and (
                "blockmgr-volume", host + "@lb") in rows:
            return
        time.sleep(0.1)
    raise SystemExit("the three processes were not ready after %.0f s" % timeout)


class Load:
    """Posts creates while fewer than ``in_flight`` are outstanding; polls their status."""

    def __init__(self, url: str, db_engine, total: int, in_flight: int, posters: int,
                 poll_interval: float):
        self.url, self.db_engine = url, db_engine
        self.total, self.in_flight, self.posters = total, in_flight, posters
        self.poll_interval = poll_interval
        self.lock = threading.Condition()
        self.sent = 0
        self.answered = 0                      # POSTs that got their answer
        self.pending: dict[str, float] = {}    # volume id -> POST sent
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while True:
                with self.lock:
                    while len(self.pending) >= self.in_flight and self.sent < self.total:
                        self.lock.wait(0.05)
                    if self.sent >= self.total:
                        return
                    self.sent += 1
                started = time.monotonic()
                reply = client.post("/v3/bench/volumes", json={"volume": {"size": 1}})
                with self.lock:
                    self.answered += 1
                    if reply.status_code != 202:
                        self.errors.append("POST %d %s" % (reply.status_code, reply.text[:200]))
                    else:
                        self.pending[reply.json()["volume"]["id"]] = started

    def _poll(self, finished: threading.Event) -> None:
        query = sa.text("SELECT id, status FROM volumes WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        while True:
            with self.lock:
                ids = list(self.pending)
                done = self.answered >= self.total and not ids
            if done:
                finished.set()
                return
            if ids:
                with self.db_engine.connect() as conn:
                    rows = conn.execute(query, {"ids": ids}).all()
                now = time.monotonic()
                with self.lock:
                    for volume_id, status in rows:
                        if status in ("available", "error"):
                            started = self.pending.pop(volume_id)
                            if status == "error":
                                self.errors.append("volume %s error" % volume_id)
                            else:
                                self.latencies.append(now - started)
                    self.lock.notify_all()
            time.sleep(self.poll_interval)

    def run(self) -> float:
        finished = threading.Event()
        threads = [threading.Thread(target=self._post, daemon=True)
                   for _ in range(self.posters)]
        threads.append(threading.Thread(target=self._poll, args=(finished,), daemon=True))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        if not finished.wait(600):
            raise SystemExit("creates did not finish within 600 s")
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--db", choices=sorted(e2e.ADMIN_URLS), default="mysql")
    parser.add_argument("--posters", type=int, default=4,
                        help="load generator threads posting creates")
    parser.add_argument("--worker-threads", type=int, default=16)
    parser.add_argument("--poll-interval", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:10]
    tmp = Path(tempfile.mkdtemp(prefix="bm-bench-rest-"))
    scratch = e2e.ScratchDatabase(args.db)
    db_engine = sa.create_engine(scratch.url)
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    conf = write_config(tmp, scratch.url, tag, port, args.worker_threads)
    procs: dict[str, subprocess.Popen] = {}
    try:
        subprocess.run([str(e2e.BIN / "blockmgr-manage"), "--config-file", str(conf), "db",
                        "sync"], check=True, capture_output=True)
        for role in ("volume", "scheduler", "api"):
            procs[role] = start(role, conf, tmp)
        wait_ready(url, db_engine, "bench-%s" % tag, procs)
        if args.warmup:
            Load(url, db_engine, args.warmup, args.in_flight, 1, args.poll_interval).run()
        cpu_before = {role: e2e.cpu_seconds(proc.pid) for role, proc in procs.items()}
        system_before = e2e.system_cpu()
        load = Load(url, db_engine, args.requests, args.in_flight, args.posters,
                    args.poll_interval)
        elapsed = load.run()
        cpu = {role: e2e.cpu_seconds(proc.pid) - cpu_before[role]
               for role, proc in procs.items()}
        system = {role: value - system_before[role]
                  for role, value in e2e.system_cpu().items()}
        rss = {role: e2e.proc_status(proc.pid).get("VmHWM", 0) / 1024
               for role, proc in procs.items()}

        lat = sorted(load.latencies)
        n = len(lat)
        per = 1000.0 / max(n, 1)
        print("blockmgr REST create (POST /v3/bench/volumes -> available; %s, RabbitMQ, loopback; "
              "api + scheduler + volume processes)" % e2e.ADMIN_URLS[args.db].split("://")[0])
        print("  requests %d, in flight %d, posters %d, rpc_worker_threads %d, poll %.0f ms"
              % (args.requests, args.in_flight, args.posters, args.worker_threads,
                 args.poll_interval * 1000))
        print("  throughput          %.1f volumes/s (%d in %.2f s)" % (n / elapsed, n, elapsed))
        print("  latency POST->available  p50 %.0f ms  p95 %.0f ms  p99 %.0f ms" % tuple(
            e2e.percentile(lat, p) * 1000 for p in (50, 95, 99)))
        print("  errors              %d%s" % (len(load.errors),
                                            (" (first: %s)" % load.errors[0])
                                            if load.errors else ""))
        print("  CPU per create      api %.1f + scheduler %.1f + volume %.1f ms"
              % tuple(cpu[role] * per for role in ROLES))
        print("  system CPU per create  %.1f ms: processes %.1f + database %.1f + broker %.1f "
              "+ load generator %.1f" % (
                  (sum(cpu.values()) + sum(system.values())) * per, sum(cpu.values()) * per,
                  system["database"] * per, system["broker"] * per, system["client"] * per))
        print("  peak RSS            api %.0f, scheduler %.0f, volume %.0f MiB"
              % tuple(rss[role] for role in ROLES))
        return 1 if load.errors else 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        db_engine.dispose()
        scratch.drop()
        e2e.delete_broker_objects(tag, ["bench-%s@lb" % tag])
        if args.keep:
            print("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
