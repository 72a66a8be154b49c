"""The console programs as an operator runs them: a node's shared configuration file,
``--version``, and nothing but their own output on stderr (no eventlet warning)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from oslo_config import cfg

import blockmgr
from blockmgr import exception
from blockmgr.cmd import scheduler as scheduler_cmd
from tests.conftest import require_service

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

#: What a node's shared file looks like (docs/serve.md): the backends its volume workers
#: serve, with driver options, next to everything else.
SHARED_CONFIG = """\
[DEFAULT]
enabled_backends = lvm-1, loop-1
transport_url = rabbit://guest:guest@127.0.0.1:5672/

[database]
connection = sqlite:///{state}/blockmgr.sqlite

[lvm-1]
volume_driver = lvm
volume_backend_name = lvm
reserved_percentage = 5

[loop-1]
volume_driver = loopback
"""


def _run(*argv, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)


@pytest.fixture
def shared_config(tmp_path) -> pathlib.Path:
    path = tmp_path / "blockmgr.conf"
    path.write_text(SHARED_CONFIG.format(state=tmp_path))
    return path


@pytest.fixture
def global_conf():
    yield cfg.CONF
    cfg.CONF.reset()
    cfg.CONF.clear()


# --- blockmgr-scheduler and the node's shared file ------------------------------------------

def test_scheduler_accepts_a_shared_file_with_backend_sections(shared_config, global_conf):
    conf = scheduler_cmd._config(["--config-file", str(shared_config)])
    assert conf.enabled_backends == ["lvm-1", "loop-1"]
    assert conf.database.connection.startswith("sqlite:///")


def test_scheduler_still_rejects_a_section_no_backend_list_names(shared_config, global_conf):
    shared_config.write_text(shared_config.read_text() + "\n[lvm-2]\nvolume_driver = lvm\n")
    with pytest.raises(exception.ConfigurationError) as info:
        scheduler_cmd._config(["--config-file", str(shared_config)])
    assert info.value.kwargs["section"] == "lvm-2"
    assert "enabled_backends" in str(info.value)


def test_scheduler_still_rejects_a_bad_value_outside_the_backends(shared_config, global_conf):
    shared_config.write_text(shared_config.read_text().replace(
        "[database]\n", "[database]\nmax_retries = many\n"))
    with pytest.raises(exception.ConfigurationError) as info:
        scheduler_cmd._config(["--config-file", str(shared_config)])
    assert (info.value.kwargs["section"], info.value.kwargs["option"]) == (
        "database", "max_retries")


@pytest.mark.slow
def test_scheduler_process_gets_past_the_shared_file(shared_config, tmp_path):
    """The whole program: with the shared file it passes configuration (the metrics port,
    taken on purpose, is the first thing after it that stops it: exit 2 naming
    ``scheduler_port``, not the backend sections)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shared_config.write_text(shared_config.read_text().replace(
            "transport_url = rabbit://guest:guest@127.0.0.1:5672/\n",
            "transport_url = rabbit://guest:guest@127.0.0.1:1/\n")
            + "\n[metrics]\nenabled = true\nscheduler_port = %d\n" % port)
        result = _run(BIN / "blockmgr-scheduler", "--config-file", shared_config)
    output = result.stdout + result.stderr     # the log goes to stdout without log_file
    assert result.returncode == 2, result
    assert "unknown section" not in output
    assert "scheduler_port" in output, output
    assert "Eventlet" not in output


# --- --version --------------------------------------------------------------------------------

@pytest.mark.parametrize("program", ["blockmgr", "blockmgr-manage", "blockmgr-scheduler",
                                     "blockmgr-volume", "blockmgr-api"])
def test_version(program):
    result = _run(BIN / program, "--version")
    assert result.returncode == 0, result
    assert result.stdout.split()[-1] == blockmgr.__version__, result
    assert result.stderr == ""


# --- no eventlet warning ----------------------------------------------------------------------

def test_manage_prints_no_eventlet_warning(tmp_path):
    config = tmp_path / "blockmgr.conf"
    config.write_text("[database]\nconnection = sqlite:///%s/bm.sqlite\n" % tmp_path)
    result = _run(BIN / "blockmgr-manage", "--config-file", config, "db", "version")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert "head:" in result.stdout


def test_scheduler_config_error_is_the_only_output(tmp_path):
    config = tmp_path / "blockmgr.conf"
    config.write_text("[nosuchsection]\nx = 1\n")
    result = _run(BIN / "blockmgr-scheduler", "--config-file", config)
    assert result.returncode == 2, result
    assert result.stderr.startswith("blockmgr-scheduler: "), result.stderr
    assert "Eventlet" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_config_generator_prints_no_eventlet_warning(tmp_path):
    output = tmp_path / "blockmgr.conf.sample"
    result = _run(sys.executable, "-m", "blockmgr.cmd.genconfig", "--config-file",
                  REPO_ROOT / "etc" / "blockmgr" / "blockmgr-config-generator.conf",
                  "--output-file", output, timeout=120)
    assert result.returncode == 0, result
    assert result.stderr == ""
    text = output.read_text()
    assert "[database]" in text and "[oslo_messaging_rabbit]" in text


# --- systemd readiness and the daemon's health endpoint ---------------------------------------


@pytest.mark.slow
def test_scheduler_tells_systemd_it_is_ready_and_serves_its_health(shared_config, tmp_path):
    """``Type=notify``: READY=1 arrives on ``$NOTIFY_SOCKET`` once the scheduler consumes;
    ``GET /healthcheck`` next to ``/metrics`` answers 200 with the database and the broker
    checked; SIGTERM then stops it with status 0."""
    import json
    import os
    import re
    import signal
    import socket
    import threading
    import urllib.request

    require_service("rabbitmq")   # under CI=true a failure, never a skip
    shared_config.write_text(shared_config.read_text()
                             + "\n[metrics]\nenabled = true\nscheduler_port = 0\n")
    synced = _run(BIN / "blockmgr-manage", "--config-file", shared_config, "db", "sync")
    assert synced.returncode == 0, synced
    notify_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(60)
        process = subprocess.Popen(
            [str(BIN / "blockmgr-scheduler"), "--config-file", str(shared_config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
            env=dict(os.environ, NOTIFY_SOCKET=notify_path))
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        try:
            assert notify.recv(4096) == b"READY=1", lines
            found = None
            for _ in range(100):
                found = re.search(r"health on (http://\S+/healthcheck)", "".join(lines))
                if found:
                    break
                threading.Event().wait(0.1)
            assert found, lines
            with urllib.request.urlopen(found.group(1), timeout=30) as answer:
                body = json.loads(answer.read())
            assert answer.status == 200 and body["status"] == "ok", body
            assert set(body["checks"]) == {"database", "broker"}
        finally:
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
    assert status == 0, lines


def test_volume_worker_is_ready_for_systemd_once_a_backend_serves_or_failed(tmp_path,
                                                                          monkeypatch):
    """READY=1 once every backend serves, or as soon as one's driver setup has failed (the
    process is up and retrying; systemd must not kill it for a slow start)."""
    import socket
    import threading

    from blockmgr.cmd import volume as volume_cmd

    class Backend:
        host, setup_error = "n1@lvm", None

    class Daemon:
        backends = [Backend()]
        serving = threading.Event()

        def wait_ready(self, timeout=None):
            return self.serving.wait(min(timeout, 0.05))

    for failed in (True, False):
        path = str(tmp_path / ("notify-%s.sock" % failed))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(path)
            notify.settimeout(0.5)
            monkeypatch.setenv("NOTIFY_SOCKET", path)
            daemon, stop = Daemon(), threading.Event()
            daemon.serving = threading.Event()
            Backend.setup_error = None
            thread = threading.Thread(target=volume_cmd._report_ready,
                                      args=(daemon, 0.0, stop), daemon=True)
            thread.start()
            with pytest.raises(socket.timeout):
                notify.recv(64)          # still starting: not ready
            if failed:
                Backend.setup_error = "driver setup failed (attempt 1): no VG"
            else:
                daemon.serving.set()
            notify.settimeout(10)
            assert notify.recv(64) == b"READY=1"
            stop.set()
            thread.join(5)
            assert not thread.is_alive()
