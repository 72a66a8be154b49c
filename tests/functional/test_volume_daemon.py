"""``blockmgr-volume`` as a real process: RabbitMQ, MariaDB/PostgreSQL, the loopback driver.

Each test gets its own database (conftest), its own control exchange and host name, so its
queues cannot meet another test run's on the shared broker. (Auto-deleted queues are not
used: oslo also declares the shared topic queue ``blockmgr-volume``, and RabbitMQ refuses to
redeclare an existing queue with different arguments.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from blockmgr import context as bm_context
from blockmgr import conf as bm_conf
from blockmgr import exception
from blockmgr import rpc
from blockmgr import services
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db.session import Database
from blockmgr.volume import rpcapi
from tests.conftest import require_service
from tests.functional.daemons import private_vhost

pytestmark = [pytest.mark.functional]

BIN = Path(sys.executable).parent
CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


@pytest.fixture(scope="module")
def vhost_url():
    """A RabbitMQ vhost of this module's own (``daemons.private_vhost``), never ``/``."""
    require_service("rabbitmq")
    with private_vhost() as url:
        yield url


def _write_config(tmp_path: Path, db_url: str, loopback_directory: Path,
                  rabbit_url: str) -> tuple[Path, str]:
    tag = uuid.uuid4().hex[:10]
    host = "ft-%s" % tag
    path = tmp_path / "blockmgr.conf"
    path.write_text("""\
[DEFAULT]
host = {host}
transport_url = {rabbit}
control_exchange = bm-test-{tag}
enabled_backends = lb
state_path = {state}
report_interval = 1
service_down_time = 5
backend_stats_polling_interval = 3
graceful_shutdown_timeout = 10
driver_setup_retry_interval = 0.2
driver_setup_retry_max_interval = 0.5
log_file = {log}

[database]
connection = {db_url}

[lb]
volume_driver = loopback
loopback_directory = {volumes}
loopback_attach = file
""".format(host=host, rabbit=rabbit_url, tag=tag, state=tmp_path / "state",
           log=tmp_path / "volume.log", db_url=db_url, volumes=loopback_directory))
    return path, host


class Daemon:
    def __init__(self, config: Path, tmp_path: Path):
        self.log = tmp_path / "volume.log"
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "blockmgr-volume"), "--config-file", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _wait_for(predicate, timeout=20.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def _service(db, host):
    with db.reader() as session:
        rows = services.list_services(session, 5, binary=services.VOLUME_BINARY, host=host)
    return rows[0] if rows else None


def _client_conf(config: Path):
    conf = bm_conf.new_config(args=["--config-file", str(config)], validate=False)
    return conf


@pytest.mark.parametrize("db_backend", ["mysql", "postgresql"])
def test_daemon_serves_create_and_connection_then_stops_on_sigterm(db_backend, database,
                                                                   tmp_path, record_property,
                                                                   vhost_url):
    require_service("rabbitmq")
    config, host = _write_config(tmp_path, database.url, tmp_path / "volumes", vhost_url)
    daemon = Daemon(config, tmp_path)
    try:
        up = _wait_for(lambda: (_service(database, host + "@lb") or None)
                       and _service(database, host + "@lb").up)
        ready_s = time.monotonic() - daemon.started
        assert up, daemon.log_text()
        reported = re.search(r"ready: .* serving ([0-9.]+) s after process start",
                             _wait_for(lambda: "ready:" in daemon.log_text()
                                       and daemon.log_text()))
        record_property("start_to_ready_s", round(ready_s, 3))
        record_property("self_reported_ready_s", float(reported.group(1)))
        print("\n[%s] blockmgr-volume start-to-ready: %.3f s (heartbeat seen); self-reported "
              "%.3f s" % (db_backend, ready_s, float(reported.group(1))))

        with database.writer() as session:
            vid = repository.create(session, models.Volume, status="creating", size=1,
                                    host=host + "@lb#lb", project_id="p1").id
        conf = _client_conf(config)
        transport = rpc.get_transport(conf)
        api = rpcapi.VolumeAPI(transport, timeout=15)
        cast_at = time.monotonic()
        api.create_volume(CTX, host + "@lb#lb", vid, {}, {})

        def status():
            with database.reader() as session:
                return repository.get(session, models.Volume, vid).status
        assert _wait_for(lambda: status() == "available"), (status(), daemon.log_text())
        print("[%s] cast -> available: %.3f s" % (db_backend, time.monotonic() - cast_at))
        assert (tmp_path / "volumes" / ("volume-%s" % vid)).exists()

        info = api.initialize_connection(CTX, host + "@lb#lb", vid, {"host": "client"})
        assert info["driver_volume_type"] == "local"
        assert info["data"]["device_path"].endswith("volume-%s" % vid)
        with pytest.raises(exception.VolumeNotFound):
            api.initialize_connection(CTX, host + "@lb", "missing-volume", {"host": "c"})
        caps = api.get_capabilities(CTX, host + "@lb")
        assert caps["pools"][0]["allocated_capacity_gb"] == 1

        listing = subprocess.run([str(BIN / "blockmgr-manage"), "--config-file", str(config),
                                  "service", "list", "--host", host],
                                 capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0, listing.stderr
        assert re.search(r"blockmgr-volume\s+%s@lb\s+up\s" % re.escape(host), listing.stdout)
        transport.cleanup()

        assert daemon.stop(signal.SIGTERM) == 0
        assert "stopped (clean)" in daemon.log_text()
    finally:
        daemon.stop(signal.SIGKILL)


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_driver_setup_failure_keeps_the_backend_down_but_the_process_alive(
        db_backend, database, tmp_path, vhost_url):
    require_service("rabbitmq")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("in the way")
    config, host = _write_config(tmp_path, database.url, blocker, vhost_url)
    daemon = Daemon(config, tmp_path)
    try:
        row = _wait_for(lambda: (_service(database, host + "@lb") or None)
                        and "driver setup failed" in (_service(database, host + "@lb")
                                                      .disabled_reason or "")
                        and _service(database, host + "@lb"))
        assert row and not row.up, daemon.log_text()
        assert "loopback_directory" in row.disabled_reason and "not-a-directory" in row.disabled_reason
        time.sleep(1.0)
        assert daemon.proc.poll() is None, "a failing driver must not end the process"
        listing = subprocess.run([str(BIN / "blockmgr-manage"), "--config-file", str(config),
                                  "service", "list"], capture_output=True, text=True,
                                 timeout=30)
        assert re.search(r"%s@lb\s+down\s.*driver setup failed" % re.escape(host),
                         listing.stdout), listing.stdout
        # the operator fixes the cause: the next retry brings the backend up
        blocker.unlink()
        assert _wait_for(lambda: (_service(database, host + "@lb") or None)
                         and _service(database, host + "@lb").up), daemon.log_text()
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.stop(signal.SIGKILL)
