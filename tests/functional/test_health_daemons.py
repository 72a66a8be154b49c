"""``/healthcheck`` of every daemon of a distributed deployment, as separate processes on
RabbitMQ (a private vhost) and MariaDB: the API's (oslo.middleware), the scheduler's and the
volume workers' next to ``/metrics``, healthy, and 503 for a volume worker whose backend
cannot set its driver up. Each daemon tells systemd it is ready (``$NOTIFY_SOCKET``)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import require_service
from tests.functional.daemons import Cluster
from tests.functional.daemons import DaemonProcess
from tests.functional.daemons import private_vhost
from tests.functional.daemons import wait_for

pytestmark = [pytest.mark.functional]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_metrics(path, **ports) -> None:
    lines = ["", "[metrics]", "enabled = true", "bind_host = 127.0.0.1"]
    lines += ["%s = %d" % kv for kv in ports.items()]
    path.write_text(path.read_text() + "\n".join(lines) + "\n")


def _health(url: str):
    try:
        return httpx.get(url + "/healthcheck", timeout=10)
    except httpx.TransportError:
        return None


@pytest.mark.parametrize("db_backend", ["mysql"])
def test_every_daemon_answers_its_health_check(db_url, tmp_path):
    require_service("rabbitmq")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with private_vhost() as vhost, Cluster(
            tmp_path, db_url, rabbit_url=vhost,
            hosts={"good": {}, "bad": {"loopback_directory": blocker / "volumes"}}) as cluster:
        cluster.db_sync()
        ports = {name: _free_port() for name in ("api", "scheduler", "good", "bad")}
        notify = {}
        for name in ports:
            notify[name] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify[name].bind(str(tmp_path / ("notify-%s.sock" % name)))
            notify[name].settimeout(90)
        try:
            env = {name: {"NOTIFY_SOCKET": str(tmp_path / ("notify-%s.sock" % name))}
                   for name in ports}
            sched_conf = cluster._write_config("scheduler", "e2e-sched-%s" % cluster.tag,
                                               None)
            _with_metrics(sched_conf, scheduler_port=ports["scheduler"])
            cluster.processes["scheduler"] = DaemonProcess(
                "blockmgr-scheduler", sched_conf, tmp_path / "scheduler.log",
                env=env["scheduler"]).start()
            for name in ("good", "bad"):
                conf = cluster._write_config(name, cluster.hosts[name],
                                             cluster.host_opts[name])
                _with_metrics(conf, volume_port=ports[name])
                cluster.processes[name] = DaemonProcess(
                    "blockmgr-volume", conf, tmp_path / ("%s.log" % name),
                    env=env[name]).start()
            api_conf = tmp_path / "api.conf"
            api_conf.write_text(cluster.client_config.read_text().replace(
                str(tmp_path / "client.log"), str(tmp_path / "api.log"))
                + "\n[api]\nbind_port = %d\n" % ports["api"])
            cluster.processes["api"] = DaemonProcess(
                "blockmgr-api", api_conf, tmp_path / "api.log", env=env["api"]).start()

            for name in ports:   # the bad worker too: it is up, retrying, its backend down
                assert notify[name].recv(64) == b"READY=1", cluster.logs()
            url = {name: "http://127.0.0.1:%d" % port for name, port in ports.items()}

            def healthy(name):
                answer = _health(url[name])
                return answer is not None and answer.status_code == 200

            for name in ("api", "scheduler", "good"):
                assert wait_for(lambda: healthy(name), 60, 0.2), (name, cluster.logs())
            api = _health(url["api"])
            assert api.text == "database: OK\nbroker: OK"
            scheduler = _health(url["scheduler"]).json()
            assert scheduler["status"] == "ok" and set(scheduler["checks"]) == {
                "database", "broker"}
            assert "reachable" in scheduler["checks"]["broker"]["detail"]
            good = _health(url["good"]).json()
            assert good["checks"]["backends"] == {
                "ok": True, "detail": "serving: %s" % cluster.backend("good")}
            bad = _health(url["bad"])
            assert bad.status_code == 503
            assert bad.json()["failed"] == ["backends"]
            detail = bad.json()["checks"]["backends"]["detail"]
            assert detail.startswith("down: %s: driver setup failed" % cluster.backend("bad"))
            assert "loopback_directory" in detail
            # /metrics still answers next to it
            assert httpx.get(url["bad"] + "/metrics", timeout=10).status_code == 200
        finally:
            for sock in notify.values():
                sock.close()
