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
