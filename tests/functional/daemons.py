"""Real blockmgr daemons for end-to-end tests: config files, processes, readiness, teardown.

A :class:`Cluster` is one deployment on a shared broker and a fresh database: one
``blockmgr-scheduler`` and any number of ``blockmgr-volume`` hosts (each with its own
``host`` name, its own loopback directory and its own log file), all on one
``control_exchange`` unique to the cluster, so concurrent test runs on the same RabbitMQ
never see each other's messages. The schema comes from ``blockmgr-manage db sync``, as an
operator would do it.

``control_exchange`` alone does not keep deployments apart on one broker: oslo.messaging's
rabbit driver names the shared topic queues (``blockmgr-scheduler``) and the fanout exchanges
(``blockmgr-scheduler_fanout``) after the topic only, so every scheduler on the vhost would
consume every deployment's requests and reports. :func:`private_vhost` gives the tests a vhost
of their own.

Readiness is judged the way an operator judges it: from the service heartbeats in the
``services`` table (``blockmgr-manage service list``), not from log lines.

Use it as a context manager: every process it started is SIGKILLed on exit, whatever
happened (a daemon a failing test left behind would keep consuming the next test's work).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from blockmgr import conf as bm_conf
from blockmgr import services
from blockmgr.db.session import Database

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
RABBIT_URL = os.environ.get("BLOCKMGR_TEST_RABBIT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
RABBIT_USER = "guest"
FLAKY_DRIVER = "tests.functional.e2e_driver.FlakyLoopbackDriver"


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` ends
    (the last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def rabbitmqctl(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, "rabbitmqctl %s failed:\n%s%s" % (
        " ".join(args), result.stdout, result.stderr)
    return result


@contextlib.contextmanager
def private_vhost():
    """A RabbitMQ vhost of its own on the local broker, deleted afterwards; yields its
    transport URL. With ``BLOCKMGR_TEST_RABBIT_URL`` set (a broker elsewhere), that URL is
    yielded unchanged: use a dedicated vhost in it."""
    if "BLOCKMGR_TEST_RABBIT_URL" in os.environ or not shutil.which("rabbitmqctl"):
        yield RABBIT_URL
        return
    vhost = "bm-e2e-%s" % uuid.uuid4().hex[:10]
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, RABBIT_USER, ".*", ".*", ".*")
        yield RABBIT_URL.rstrip("/") + "/" + vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


class DaemonProcess:
    """One daemon process (``blockmgr-volume`` or ``blockmgr-scheduler``) on a config file."""

    def __init__(self, binary: str, config: Path, log: Path, env: dict | None = None):
        self.binary, self.config, self.log = binary, config, log
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.output = log.with_suffix(".out")

    def start(self) -> "DaemonProcess":
        env = dict(os.environ, PYTHONPATH=str(REPO), **(self.env or {}))
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / self.binary), "--config-file", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=str(REPO))
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or the OOM killer."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc is None:
            return None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def log_text(self, tail: int = 6000) -> str:
        text = ""
        for path in (self.output, self.log):
            if path.exists():
                text += "==> %s <==\n%s\n" % (path.name, path.read_text(errors="replace"))
        return text[-tail:]


class Cluster:
    """A scheduler and volume hosts on one database, broker exchange and tmp directory.

    :param hosts: ``{host name suffix: {option: value}}`` -- extra options of each volume
        host's backend section ``lb`` (e.g. ``reserved_percentage``).
    :param default_opts: extra ``[DEFAULT]`` options for every process.
    :param scheduler_opts: extra ``[scheduler]`` options.
    :param prefill_gib: ``{host name suffix: GiB}`` -- a sparse file of that apparent size,
        named like a volume, put in the host's directory before it starts: the backend
        reports that much more provisioned capacity (it is fuller for the weigher).
    """

    BACKEND = "lb"

    def __init__(self, tmp_path: Path, db_url: str, *, hosts: dict[str, dict],
                 rabbit_url: str = RABBIT_URL, default_opts: dict | None = None,
                 scheduler_opts: dict | None = None, prefill_gib: dict | None = None):
        self.tmp = tmp_path
        self.db_url = db_url
        self.rabbit_url = rabbit_url
        self.tag = uuid.uuid4().hex[:10]
        self.exchange = "bm-e2e-%s" % self.tag
        self.default_opts = {
            "report_interval": 1, "service_down_time": 10,
            "backend_stats_polling_interval": 3, "graceful_shutdown_timeout": 5,
            "rpc_response_timeout": 30, "driver_setup_retry_interval": 0.2,
            "driver_setup_retry_max_interval": 1, "rpc_worker_threads": 8,
            **(default_opts or {})}
        # 4 missed heartbeats (of report_interval = 1 s) before a worker is suspect: a
        # loaded build machine can delay a heartbeat by a few seconds.
        self.scheduler_opts = {"startup_wait": 15, "scheduler_max_attempts": 3,
                               "suspect_missed_heartbeats": 4, **(scheduler_opts or {})}
        self.host_opts = hosts
        self.hosts = {name: "e2e-%s-%s" % (name, self.tag) for name in hosts}
        self.processes: dict[str, DaemonProcess] = {}
        for name, gib in (prefill_gib or {}).items():
            self.directory(name).mkdir(parents=True, exist_ok=True)
            filler = self.directory(name) / ("volume-%s" % uuid.UUID(int=0))
            with open(filler, "wb") as f:
                f.truncate(gib * 1024 ** 3)
        self.db = Database(db_url)
        self.client_config = self._write_config("client", "e2e-api-%s" % self.tag, None)

    # --- configuration --------------------------------------------------------------------

    def backend(self, name: str) -> str:
        """``host@backend`` of volume host ``name`` (its RPC server and services row)."""
        return "%s@%s" % (self.hosts[name], self.BACKEND)

    def directory(self, name: str) -> Path:
        return self.tmp / ("volumes-%s" % name)

    def fail_flag(self, name: str) -> Path:
        """While this file exists, creates on host ``name`` fail (FlakyLoopbackDriver)."""
        return self.tmp / ("fail-create-%s" % name)

    def _write_config(self, role: str, host: str, backend_opts: dict | None) -> Path:
        lines = ["[DEFAULT]", "host = %s" % host, "transport_url = %s" % self.rabbit_url,
                 "control_exchange = %s" % self.exchange,
                 "state_path = %s" % (self.tmp / ("state-" + role)),
                 "log_file = %s" % (self.tmp / ("%s.log" % role))]
        lines += ["%s = %s" % kv for kv in self.default_opts.items()]
        if backend_opts is not None:
            lines.append("enabled_backends = %s" % self.BACKEND)
        # No [oslo_messaging_rabbit] amqp_durable_queues here: blockmgr's default (true,
        # blockmgr/conf/rpc.py) is what the broker-restart test proves.
        lines += ["", "[database]", "connection = %s" % self.db_url,
                  "", "[scheduler]"] + ["%s = %s" % kv for kv in self.scheduler_opts.items()]
        if backend_opts is not None:
            opts = {"volume_driver": FLAKY_DRIVER, "loopback_attach": "file",
                    "loopback_directory": self.directory(role),
                    "e2e_fail_create_flag": self.fail_flag(role), **backend_opts}
            lines += ["", "[%s]" % self.BACKEND] + ["%s = %s" % kv for kv in opts.items()]
        path = self.tmp / ("%s.conf" % role)
        path.write_text("\n".join(lines) + "\n")
        return path

    def client_conf(self):
        """A private config for the API side in the test process (the client library)."""
        return bm_conf.new_config(args=["--config-file", str(self.client_config)],
                                  validate=False)

    # --- processes ------------------------------------------------------------------------

    def db_sync(self) -> None:
        result = subprocess.run([str(BIN / "blockmgr-manage"), "--config-file",
                                 str(self.client_config), "db", "sync"],
                                capture_output=True, text=True, timeout=180,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, "db sync failed:\n%s\n%s" % (result.stdout,
                                                                    result.stderr)

    def start_scheduler(self) -> DaemonProcess:
        config = self._write_config("scheduler", "e2e-sched-%s" % self.tag, None)
        proc = DaemonProcess("blockmgr-scheduler", config, self.tmp / "scheduler.log")
        self.processes["scheduler"] = proc.start()
        return proc

    def start_volume(self, name: str, env: dict | None = None) -> DaemonProcess:
        config = self._write_config(name, self.hosts[name], self.host_opts[name])
        proc = DaemonProcess("blockmgr-volume", config, self.tmp / ("%s.log" % name),
                             env=env)
        self.processes[name] = proc.start()
        return proc

    def start(self, timeout: float = 90) -> "Cluster":
        """db sync, scheduler, every volume host; returns when all heartbeat."""
        self.db_sync()
        self.start_scheduler()
        for name in self.host_opts:
            self.start_volume(name)
        self.wait_up(list(self.host_opts), timeout=timeout, scheduler=True)
        return self

    def services(self) -> dict[str, services.ServiceState]:
        with self.db.reader() as session:
            rows = services.list_services(session, self.default_opts["service_down_time"])
        return {(r.binary, r.host): r for r in rows}

    def is_up(self, name: str, after=None) -> bool:
        """Volume host ``name`` heartbeats (and did so after ``after``, a naive UTC time)."""
        row = self.services().get((services.VOLUME_BINARY, self.backend(name)))
        return bool(row and row.up and (after is None or row.heartbeat_at > after))

    def wait_up(self, names, *, timeout: float = 90, scheduler: bool = False,
                after=None) -> None:
        def ready():
            if any(not p.alive for p in self.processes.values()):
                return True   # reported below
            rows = self.services()
            if any((r.disabled_reason or "").startswith("start failed") for r in rows.values()):
                return True   # a backend gave up starting: reported below
            sched = [r for (b, _h), r in rows.items()
                     if b == services.SCHEDULER_BINARY and r.up]
            return (not scheduler or sched) and all(self.is_up(n, after) for n in names)

        wait_for(ready, timeout, 0.1)
        dead = [n for n, p in self.processes.items() if not p.alive]
        assert not dead, "daemon(s) %s exited:\n%s" % (dead, self.logs())
        missing = [n for n in names if not self.is_up(n, after)]
        assert not missing, "volume host(s) %s not up after %.0f s; services: %s\n%s" % (
            missing, timeout, self.services(), self.logs())

    def logs(self) -> str:
        return "\n".join("---- %s ----\n%s" % (n, p.log_text())
                         for n, p in self.processes.items())

    def close(self) -> None:
        """Kill every process (SIGKILL: fast, and a teardown must not hang), drop pools."""
        for proc in self.processes.values():
            try:
                proc.kill()
            except Exception:   # keep killing the others
                pass
        self.db.dispose()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(cluster: "Cluster", tmp_path: Path, *, extra: str = "",
              env: dict | None = None) -> tuple["DaemonProcess", str]:
    """``blockmgr-api`` on the cluster's client config (plus ``extra`` lines) on a free
    port, started and answering version discovery; returns it and its base URL."""
    import httpx

    port = free_port()
    config = tmp_path / "api.conf"
    config.write_text(cluster.client_config.read_text().replace(
        str(tmp_path / "client.log"), str(tmp_path / "api.log"))
        + "\n[api]\nbind_port = %d\n" % port + extra)
    api = DaemonProcess("blockmgr-api", config, tmp_path / "api.log", env=env)
    cluster.processes["api"] = api.start()
    url = "http://127.0.0.1:%d" % port

    def answers():
        if not api.alive:
            return True
        try:
            # Version discovery answers 300 Multiple Choices, as Cinder's does.
            return httpx.get(url + "/", timeout=2).status_code == 300
        except httpx.TransportError:
            return False

    assert wait_for(answers, 60, 0.1) and api.alive, api.log_text()
    return api, url
