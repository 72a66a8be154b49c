"""Benchmark: create_volume end to end through RabbitMQ to a real ``blockmgr-volume`` daemon.

What it does, in order (everything it creates it removes again, also on Ctrl-C):

1. Creates a fresh database on MariaDB (``--db mysql``, default) or PostgreSQL, named
   ``bm_bench_<random>``, and runs ``blockmgr-manage db sync`` on it.
2. Writes a config: loopback backend ``lb`` in a temporary directory on the local
   filesystem (sparse files, no attach), ``transport_url = rabbit://...`` with a control
   exchange and host name unique to this run.
3. Starts ``blockmgr-volume`` as a subprocess and measures **start-to-ready** twice: from
   ``Popen`` to the first heartbeat row the benchmark sees (polled every 10 ms), and the
   daemon's own figure from its ``ready`` log line (kernel process start -> serving,
   interpreter start-up included).
4. Inserts N volume rows (``creating``, size 1, host ``<host>@lb#lb``) -- what the API
   client library and the scheduler would have written -- then casts N ``create_volume``
   requests with :class:`blockmgr.volume.rpcapi.VolumeAPI` straight to the backend,
   keeping ``--in-flight`` requests outstanding. **The scheduler is not in the hot path**:
   rows are inserted with their host already set, as after placement.
5. Polls the database with ONE query per poll interval for the statuses of all outstanding
   ids; a volume is done when ``available`` (or ``error``, counted as an error). Latency is
   cast -> the poll that saw the final status (so it includes up to one poll interval).
6. Samples the daemon's RSS (``/proc/<pid>/status`` ``VmRSS``, and ``VmHWM`` at the end) and
   CPU time, and the CPU time of the database server, the broker and the benchmark itself
   over the measured run (whole-system CPU per create), prints the figures, stops the
   daemon (SIGTERM), drops the database.

Never a timed test: figures go to ``docs/benchmarks.md`` (section "End-to-end (RPC)").

    .venv/bin/python bench/bench_e2e.py [--requests 1000] [--in-flight 200]
        [--db mysql|postgresql] [--worker-threads 16] [--profile out.txt]
        [--daemons N [--cluster]] [--no-ledger]

``--daemons N`` starts N daemons (processes), each with its own backend (``bench-<tag>-<i>@lb``,
own directory), and spreads the rows over them in turn, as the scheduler would over N
backends; with ``--cluster`` the N daemons are members of ONE cluster backend
(``bench-<tag>@lb``: shared loopback directory, Redis jobboard at ``BLOCKMGR_TEST_REDIS_URL``,
``docs/cluster.md``) and RabbitMQ hands the shared queue's requests to them in turn. CPU is
then summed over the daemons, RSS is the largest daemon's, ``--profile`` records the first.
MariaDB goes through mysqlclient when it is installed (the ``[mysql]`` extra), else PyMySQL;
``BLOCKMGR_TEST_MYSQL_URL`` picks another (``mysql+pymysql://root@127.0.0.1:3306``).

Every request is a row of the request ledger (``blockmgr.ledger``), inserted with its volume
and handed off to its backend, and the cast rings it, as after placement by the scheduler;
``--no-ledger`` casts bare requests instead, to measure the ledger's cost by difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

BIN = Path(sys.executable).parent
ADMIN_URLS = {
    "mysql": os.environ.get("BLOCKMGR_TEST_MYSQL_URL",
                            "mysql+%s://root@127.0.0.1:3306" % (
                                # mysqlclient (the [mysql] extra) when installed, as
                                # blockmgr.db.session.preferred_mysql_driver chooses
                                "mysqldb" if importlib.util.find_spec("MySQLdb") else "pymysql")),
    "postgresql": os.environ.get("BLOCKMGR_TEST_PG_URL",
                                 "postgresql+psycopg2://root@127.0.0.1:5432"),
}
RABBIT_URL = os.environ.get("BLOCKMGR_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BLOCKMGR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
READY_LINE = re.compile(r"ready: .* serving ([0-9.]+) s after process start")


# --- database -----------------------------------------------------------------------------

class ScratchDatabase:
    """A uniquely named empty database on the server, dropped by :meth:`drop`."""

    def __init__(self, backend: str):
        self.backend = backend
        self.name = "bm_bench_%s" % uuid.uuid4().hex[:10]
        admin_db = "test" if backend == "mysql" else "postgres"
        self._admin = sa.create_engine("%s/%s" % (ADMIN_URLS[backend], admin_db),
                                       isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            suffix = " CHARACTER SET utf8mb4" if backend == "mysql" else ""
            conn.exec_driver_sql("CREATE DATABASE %s%s" % (self.name, suffix))
        self.url = "%s/%s" % (ADMIN_URLS[backend], self.name)
        if backend == "mysql":
            self.url += "?charset=utf8mb4"

    def drop(self) -> None:
        with self._admin.connect() as conn:
            force = " WITH (FORCE)" if self.backend == "postgresql" else ""
            conn.exec_driver_sql("DROP DATABASE IF EXISTS %s%s" % (self.name, force))
        self._admin.dispose()


# --- daemon -------------------------------------------------------------------------------

def node_config(*, host: str, tag: str, home: Path, volumes: Path, db_url: str,
                worker_threads: int, report_interval: int, stats_interval: int,
                defaults: str = "", database: str = "", sections: str = "") -> str:
    """The config file of one benchmark node (also ``bench_rest.py``'s): its ``[DEFAULT]``
    (plus ``defaults``), ``[database]`` (plus ``database``), the loopback backend ``lb``
    on ``volumes``, and ``sections`` (whole sections) before it."""
    return """\
[DEFAULT]
host = {host}
transport_url = {rabbit}
control_exchange = bm-bench-{tag}
enabled_backends = lb
state_path = {home}/state
rpc_worker_threads = {threads}
report_interval = {report}
backend_stats_polling_interval = {stats}
graceful_shutdown_timeout = 5
{defaults}
[database]
connection = {db_url}
{database}
{sections}[lb]
volume_driver = loopback
loopback_directory = {volumes}
loopback_attach = file
""".format(host=host, rabbit=RABBIT_URL, tag=tag, home=home, threads=worker_threads,
           report=report_interval, stats=stats_interval, defaults=defaults, db_url=db_url,
           database=database, sections=sections, volumes=volumes)


def write_config(tmp: Path, db_url: str, worker_threads: int,
                 db_pool_size: int | None = None, *, tag: str, index: int = 0,
                 cluster: bool = False) -> tuple[Path, str]:
    """Config of daemon ``index`` of the run ``tag`` in its own directory under ``tmp``;
    returns (path, the RPC host its backend serves without ``@lb``). Every daemon has its
    own ``host``; with ``cluster`` they are members of one cluster (``bench-<tag>``) on a
    shared loopback directory and serve ``bench-<tag>@lb`` together (Redis jobboard)."""
    node = "bench-%s-%d" % (tag, index)
    home = tmp / ("daemon-%d" % index)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "blockmgr.conf"
    volumes = tmp / "volumes" if cluster else home / "volumes"
    cluster_lines = ""
    if cluster:
        cluster_lines = "cluster = bench-%s\n\n[cluster]\njobboard_url = %s\n" % (tag, REDIS_URL)
    pool = "max_pool_size = %d\n" % db_pool_size if db_pool_size else ""
    path.write_text(node_config(
        host=node, tag=tag, home=home, volumes=volumes, db_url=db_url,
        worker_threads=worker_threads, report_interval=10, stats_interval=60,
        defaults="log_file = %s/volume.log\n" % home, database=pool) + cluster_lines)
    return path, ("bench-%s" % tag if cluster else node)


class Daemon:
    """One ``blockmgr-volume`` of the run: its config, process and log."""

    def __init__(self, conf_path: Path, rpc_host: str):
        self.conf_path, self.rpc_host = conf_path, rpc_host
        self.log = conf_path.parent / "volume.log"
        self.proc = None
        self.self_reported: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(BIN / "blockmgr-volume"), "--config-file",
                                      str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def wait_ready_line(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.self_reported is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("blockmgr-volume exited with %s:\n%s"
                                 % (self.proc.returncode, tail(self.log)))
            try:
                match = READY_LINE.search(self.log.read_text())
            except OSError:
                match = None
            self.self_reported = float(match.group(1)) if match else None
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RssSampler(threading.Thread):
    """Samples VmRSS and CPU time of ``pid`` every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval = pid, interval
        self.max_rss_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            rss = proc_status(self.pid).get("VmRSS")
            if rss:
                self.max_rss_kib = max(self.max_rss_kib, rss)

    def stop(self) -> None:
        self._halt.set()
        self.join(1)


def proc_status(pid: int) -> dict[str, int]:
    """``Vm*`` fields of /proc/<pid>/status in KiB ({} once the process is gone)."""
    fields = {}
    try:
        with open("/proc/%d/status" % pid) as status:
            for line in status:
                if line.startswith("Vm"):
                    key, _, value = line.partition(":")
                    fields[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far, threads included."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The processes whose CPU the benchmark adds to the daemon's, by ``/proc/<pid>/comm``:
#: the database server (MariaDB: one process; PostgreSQL: one per connection) and the broker.
SYSTEM_PROCESSES = {"database": ("mariadbd", "mysqld", "postgres"),
                    "broker": ("beam.smp",)}


def system_cpu() -> dict[str, float]:
    """CPU seconds so far of the database server, the broker and this process (the load
    generator: casting, polling), for the whole-system CPU per create. Processes that exit
    during the run (a PostgreSQL backend of a closed connection) take their CPU with them:
    the database figure is then a lower bound."""
    totals = {"database": 0.0, "broker": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as comm:
                name = comm.read().strip()
            for role, names in SYSTEM_PROCESSES.items():
                if name in names:
                    totals[role] += cpu_seconds(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    usage = os.times()
    totals["client"] = usage.user + usage.system
    return totals


def wait_ready(db_engine, host: str, proc, log: Path, timeout: float = 60.0) -> float:
    """Seconds from now-``started`` until the first heartbeat row of ``host`` appears."""
    query = sa.text("SELECT heartbeat_at FROM services WHERE host = :host "
                    "AND heartbeat_at IS NOT NULL")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("blockmgr-volume exited with %s:\n%s"
                             % (proc.returncode, tail(log)))
        with db_engine.connect() as conn:
            if conn.execute(query, {"host": host}).first() is not None:
                return time.monotonic()
        time.sleep(0.01)
    raise SystemExit("blockmgr-volume not ready after %.0f s:\n%s" % (timeout, tail(log)))


def delete_broker_objects(tag: str, backend_hosts) -> None:
    """Remove this run's server queues and control exchange from RabbitMQ (oslo.messaging
    declares them non-auto-delete). The shared topic queue ``blockmgr-volume`` stays."""
    import urllib.parse

    import amqp

    url = urllib.parse.urlsplit(RABBIT_URL)
    try:
        with amqp.Connection("%s:%d" % (url.hostname, url.port or 5672),
                             userid=urllib.parse.unquote(url.username or "guest"),
                             password=urllib.parse.unquote(url.password or "guest"),
                             virtual_host=urllib.parse.unquote(url.path[1:]) or "/") as conn:
            channel = conn.channel()
            for backend_host in backend_hosts:
                channel.queue_delete("blockmgr-volume.%s" % backend_host)
            channel.exchange_delete("bm-bench-%s" % tag)
    except Exception as exc:   # cleanup only: report, do not fail the run
        print("  (could not remove the run's RabbitMQ queue/exchange: %s)" % exc)


def delete_redis_keys(tag: str) -> None:
    """Remove a cluster run's jobboard and lock keys (they all name ``bench-<tag>``)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match="*bench-%s*" % tag, count=1000))
        if keys:
            client.delete(*keys)
    except Exception as exc:   # cleanup only
        print("  (could not remove the run's Redis keys: %s)" % exc)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- load ---------------------------------------------------------------------------------

def insert_volumes(db_engine, backend_hosts: list[str], count: int,
                   ledger: bool = True) -> dict[str, str]:
    """``count`` rows ``creating`` spread over ``backend_hosts`` in turn, as the scheduler
    would have placed them, each with its request in the ledger handed off to its backend
    (unless ``ledger`` is False); returns id -> backend host (in insertion order)."""
    import json

    from blockmgr.db import models

    hosts = {str(uuid.uuid4()): backend_hosts[i % len(backend_hosts)] for i in range(count)}
    now = models.utcnow()
    rows = [{"id": vid, "status": "creating", "size": 1, "host": host + "#lb",
             "project_id": "bench", "user_id": "bench", "created_at": now, "deleted": False}
            for vid, host in hosts.items()]
    context = json.dumps({"project_id": "bench", "user_id": "bench"})
    requests = [{"id": vid, "kind": "volume", "resource_id": vid, "action": "create_volume",
                 "arguments": json.dumps(request_arguments(vid)), "context": context,
                 "target": host, "state": "pending", "attempts": 0, "created_at": now}
                for vid, host in hosts.items()]
    with db_engine.begin() as conn:
        conn.execute(models.Volume.__table__.insert(), rows)
        if ledger:
            conn.execute(models.Request.__table__.insert(), requests)
    return hosts


def request_arguments(volume_id: str) -> dict:
    return {"volume_id": volume_id, "request_spec": {}, "filter_properties": {},
            "allow_reschedule": True}


def run_load(conf_path: Path, db_engine, hosts: dict[str, str], in_flight: int,
             poll_interval: float, stall_timeout: float = 60.0, ledger: bool = True) -> dict:
    """Cast every id of ``hosts`` (id -> backend host; at most ``in_flight`` outstanding),
    as the ring of its ledger request (the request id is the volume id here) or, without
    ``ledger``, as a bare cast; returns latencies and counts."""
    from blockmgr import conf as bm_conf
    from blockmgr import context as bm_context
    from blockmgr import rpc
    from blockmgr.db import models
    from blockmgr.volume import rpcapi

    conf = bm_conf.new_config(args=["--config-file", str(conf_path)], validate=False)
    transport = rpc.get_transport(conf)
    api = rpcapi.VolumeAPI(transport)
    ctx = bm_context.RequestContext(project_id="bench", user_id="bench")
    vol = models.Volume.__table__
    status_query = sa.select(vol.c.id, vol.c.status).where(
        vol.c.id.in_(sa.bindparam("ids", expanding=True)))
    # Warm the client (connection to RabbitMQ, exchange declaration) outside the clock.
    for host in set(hosts.values()):
        api._client(host)
    pending = list(reversed(hosts))
    cast_at: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    done_at: list[float] = []
    started = last_progress = time.monotonic()
    polls = 0
    while pending or cast_at:
        while pending and len(cast_at) < in_flight:
            vid = pending.pop()
            cast_at[vid] = time.monotonic()
            if ledger:
                api.ring(ctx, hosts[vid], "create_volume", request_arguments(vid), vid)
            else:
                api.create_volume(ctx, hosts[vid], vid, {}, {})
        time.sleep(poll_interval)
        with db_engine.connect() as conn:
            rows = conn.execute(status_query, {"ids": list(cast_at)}).all()
        polls += 1
        now = time.monotonic()
        for vid, status in rows:
            if status in ("available", "error"):
                latencies.append(now - cast_at.pop(vid))
                done_at.append(now - started)
                if status == "error":
                    errors.append(vid)
        if rows and any(status in ("available", "error") for _vid, status in rows):
            last_progress = now
        elif now - last_progress > stall_timeout:
            # e.g. the broker was restarted (shared machine) and took the casts with it
            raise SystemExit("no request finished for %.0f s (%d outstanding, %d done): "
                             "giving up" % (stall_timeout, len(cast_at), len(latencies)))
    transport.cleanup()
    return {"elapsed": time.monotonic() - started, "latencies": latencies, "errors": errors,
            "done_at": done_at, "polls": polls}


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(pct / 100 * len(sorted_values))) - 1))
    return sorted_values[index]


def sustained_rate(done_at: list[float]) -> float:
    """Completions per second between the 10th and the 90th percentile completion
    (leaves out the ramp-up and the tail)."""
    if len(done_at) < 10:
        return float("nan")
    done = sorted(done_at)
    lo, hi = done[len(done) // 10], done[len(done) * 9 // 10]
    return (len(done) * 8 // 10) / (hi - lo) if hi > lo else float("nan")


# --- main ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--db", choices=("mysql", "postgresql"), default="mysql")
    parser.add_argument("--worker-threads", type=int, default=16,
                        help="the daemon's rpc_worker_threads (default: its default, 16)")
    parser.add_argument("--db-pool-size", type=int,
                        help="[database] max_pool_size for the daemon (default: not set)")
    parser.add_argument("--poll-interval", type=float, default=0.01,
                        help="seconds between status polls (latency resolution)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="creates run (and not counted) before the measured ones")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the daemon with py-spy during the measured run "
                             "(flamegraph SVG, or raw/speedscope by suffix .txt/.json)")
    parser.add_argument("--daemons", type=int, default=1,
                        help="volume daemons (processes); requests go to them in turn")
    parser.add_argument("--cluster", action="store_true",
                        help="the daemons serve ONE backend as a cluster (Redis jobboard, "
                             "shared loopback directory) instead of one backend each")
    parser.add_argument("--no-ledger", action="store_true",
                        help="cast bare requests without a request-ledger row (the worker "
                             "then claims nothing): the ledger's own cost, by difference")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (config, daemon log)")
    args = parser.parse_args()

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the daemon and database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bm-bench-e2e-"))
    scratch = ScratchDatabase(args.db)
    tag = uuid.uuid4().hex[:10]
    daemons: list[Daemon] = []
    samplers: list[RssSampler] = []
    spy = None
    db_engine = sa.create_engine(scratch.url, pool_size=2)
    try:
        for index in range(args.daemons):
            daemons.append(Daemon(*write_config(
                tmp, scratch.url, args.worker_threads, args.db_pool_size, tag=tag,
                index=index, cluster=args.cluster)))
        subprocess.run([str(BIN / "blockmgr-manage"), "--config-file",
                        str(daemons[0].conf_path), "db", "sync"],
                       check=True, stdout=subprocess.DEVNULL)
        backend_hosts = sorted({d.rpc_host + "@lb" for d in daemons})
        launched = time.monotonic()
        for daemon in daemons:
            daemon.start()
        for daemon in daemons:
            wait_ready(db_engine, daemon.rpc_host + "@lb", daemon.proc, daemon.log)
            daemon.wait_ready_line()
        ready_seen = time.monotonic() - launched
        rss_idle = max(proc_status(d.proc.pid).get("VmRSS", 0) for d in daemons)

        hosts = insert_volumes(db_engine, backend_hosts, args.requests + args.warmup,
                               ledger=not args.no_ledger)
        ids = list(hosts)
        if args.warmup:
            run_load(daemons[0].conf_path, db_engine, {i: hosts[i] for i in ids[:args.warmup]},
                     args.in_flight, args.poll_interval, ledger=not args.no_ledger)
        samplers = [RssSampler(d.proc.pid) for d in daemons]
        for sampler in samplers:
            sampler.start()
        if args.profile:
            fmt = {".txt": "raw", ".json": "speedscope"}.get(Path(args.profile).suffix,
                                                              "flamegraph")
            spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid",
                                    str(daemons[0].proc.pid), "--rate", "100", "--nonblocking",
                                    "--format", fmt, "--output", args.profile, "--threads",
                                    "--gil"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu_before = sum(cpu_seconds(d.proc.pid) for d in daemons)
        system_before = system_cpu()
        result = run_load(daemons[0].conf_path, db_engine,
                          {i: hosts[i] for i in ids[args.warmup:]}, args.in_flight,
                          args.poll_interval, ledger=not args.no_ledger)
        cpu_used = sum(cpu_seconds(d.proc.pid) for d in daemons) - cpu_before
        system_used = {role: value - system_before[role]
                       for role, value in system_cpu().items()}
        for sampler in samplers:
            sampler.stop()
        hwm = max(proc_status(d.proc.pid).get("VmHWM", 0) for d in daemons)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)

        lat = sorted(result["latencies"])
        n = len(lat)
        shape = ("1 daemon" if args.daemons == 1 else "%d daemons, %s" % (
            args.daemons, "one cluster backend" if args.cluster else "one backend each"))
        print("blockmgr-volume end-to-end create_volume (%s, RabbitMQ, loopback driver, %s)"
              % (ADMIN_URLS[args.db].split("://", 1)[0], shape))
        print("  requests %d, in flight %d, rpc_worker_threads %d, poll %.0f ms, "
              "warm-up %d" % (args.requests, args.in_flight, args.worker_threads,
                              args.poll_interval * 1000, args.warmup))
        print("  start-to-ready      %.3f s (Popen -> every heartbeat seen); self-reported "
              "%s s (process start -> serving)"
              % (ready_seen, " / ".join("%.3f" % d.self_reported for d in daemons)))
        print("  throughput          %.1f volumes/s overall (%d in %.2f s); %.1f/s sustained "
              "(10th-90th pct completions)" % (n / result["elapsed"], n, result["elapsed"],
                                               sustained_rate(result["done_at"])))
        print("  latency cast->available  p50 %.1f ms  p95 %.1f ms  p99 %.1f ms  max %.0f ms"
              % tuple(x * 1000 for x in (percentile(lat, 50), percentile(lat, 95),
                                         percentile(lat, 99), lat[-1] if lat else 0)))
        print("  errors              %d" % len(result["errors"]))
        print("  daemon RSS          idle %.0f MiB, max under load %.0f MiB (VmHWM %.0f MiB)%s"
              % (rss_idle / 1024, max(s.max_rss_kib for s in samplers) / 1024, hwm / 1024,
                 " (largest daemon)" if len(daemons) > 1 else ""))
        print("  daemon CPU          %.2f s for %d creates = %.1f ms/volume (%.0f%% of one "
              "core%s)" % (cpu_used, n, cpu_used / max(n, 1) * 1000,
                           100 * cpu_used / result["elapsed"],
                           ", all daemons" if len(daemons) > 1 else ""))
        per = 1000.0 / max(n, 1)
        print("  system CPU per create  %.1f ms: daemon %.1f + database %.1f + broker %.1f "
              "+ load generator %.1f" % (
                  (cpu_used + sum(system_used.values())) * per, cpu_used * per,
                  system_used["database"] * per, system_used["broker"] * per,
                  system_used["client"] * per))
        return 1 if result["errors"] else 0
    finally:
        for sampler in samplers:
            if sampler.is_alive():
                sampler.stop()
        if spy is not None and spy.poll() is None:
            spy.kill()
        for daemon in daemons:
            daemon.stop()
        db_engine.dispose()
        scratch.drop()
        if daemons:
            delete_broker_objects(tag, sorted({d.rpc_host + "@lb" for d in daemons}))
            if args.cluster:
                delete_redis_keys(tag)
        if args.keep:
            print("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
