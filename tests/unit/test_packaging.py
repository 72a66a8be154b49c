"""What the wheel and the sdist carry besides the code: the licence, the sample and
generator configurations and the systemd units (``setup.py`` ``DATA_FILES``, ``MANIFEST.in``),
the units themselves, and what ``make run`` / ``make test`` install."""

from __future__ import annotations

import configparser
import pathlib
import runpy
import shutil
import subprocess
import sys
import tomllib

import pytest

from blockmgr.cmd import listen

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
UNITS = ("blockmgr-api", "blockmgr-scheduler", "blockmgr-volume")
OPERATOR_FILES = ("etc/blockmgr/blockmgr.conf.sample",
                  "etc/blockmgr/blockmgr-config-generator.conf",
                  *("etc/systemd/%s.service" % unit for unit in UNITS))


@pytest.fixture
def setup_kwargs(monkeypatch) -> dict:
    """The keyword arguments setup.py gives setuptools, from the repository root as a build
    runs it (nothing is built)."""
    import setuptools

    recorded = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: recorded.update(kwargs))
    monkeypatch.chdir(REPO_ROOT)
    runpy.run_path(str(REPO_ROOT / "setup.py"), run_name="__main__")
    return recorded


def test_license_is_the_apache_2_text():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_wheel_installs_the_operator_files_under_share_blockmgr(setup_kwargs):
    installed = {}
    for target, sources in setup_kwargs["data_files"]:
        for source in sources:
            assert (REPO_ROOT / source).is_file(), source
            installed[source] = target
    assert installed == {
        "etc/blockmgr/blockmgr.conf.sample": "share/blockmgr",
        "etc/blockmgr/blockmgr-config-generator.conf": "share/blockmgr",
        **{"etc/systemd/%s.service" % unit: "share/blockmgr/systemd" for unit in UNITS}}
    assert "blockmgr.migrations" in setup_kwargs["packages"]


def test_sdist_manifest_includes_the_licence_and_operator_files(monkeypatch):
    from setuptools._distutils.filelist import FileList

    monkeypatch.chdir(REPO_ROOT)
    files = FileList()
    files.findall(".")
    for line in (REPO_ROOT / "MANIFEST.in").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            files.process_template_line(line)
    included = set(files.files)
    for path in ("LICENSE", "README.md", "docs/cli.md", "docs/metrics.md",
                 "migrations/env.py", *OPERATOR_FILES):
        assert path in included, path


# --- systemd units ----------------------------------------------------------------------------

def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str        # systemd keys are case-sensitive
    parser.read_string((REPO_ROOT / "etc" / "systemd" / ("%s.service" % name)).read_text())
    return parser


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_its_program_and_restarts_on_failure_only(name):
    service = _unit(name)["Service"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program = pathlib.PurePosixPath(service["ExecStart"].split()[0]).name
    assert program == name and program in scripts
    assert "--config-file /etc/blockmgr/blockmgr.conf" in service["ExecStart"]
    # Each daemon sends READY=1 when it serves (tests/unit/test_entry_points.py).
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    # exit status 2 is a configuration error: restarting cannot fix it
    assert service["RestartPreventExitStatus"] == "2"
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert _unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_stop_timeouts_cover_the_graceful_stops():
    """systemd must not SIGKILL a daemon that is still inside its own graceful stop."""
    from blockmgr.conf import rpc as rpc_conf

    grace = next(opt.default for opt in rpc_conf.list_opts()[0][1]
                 if opt.name == "graceful_shutdown_timeout")
    assert int(_unit("blockmgr-volume")["Service"]["TimeoutStopSec"]) > grace
    assert int(_unit("blockmgr-api")["Service"]["TimeoutStopSec"]) > listen.HTTP_SHUTDOWN_GRACE
    # the scheduler's stop: running placements (sub-second) and two timers (5 s each)
    assert int(_unit("blockmgr-scheduler")["Service"]["TimeoutStopSec"]) >= 15


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify(name, tmp_path):
    """``systemd-analyze verify`` on the unit, with ExecStart pointed at this installation's
    program (it checks that the command exists)."""
    text = (REPO_ROOT / "etc" / "systemd" / ("%s.service" % name)).read_text()
    installed = pathlib.Path(sys.executable).parent / name
    unit = tmp_path / ("%s.service" % name)
    unit.write_text(text.replace("/usr/local/bin/%s" % name, str(installed)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert name not in result.stderr, result.stderr


# --- make run / make test -----------------------------------------------------------------------

def _make_dry_run(target: str, tmp_path) -> str:
    venv = tmp_path / "venv"
    result = subprocess.run(["make", "-n", target, "VENV=%s" % venv, "MYSQL_EXTRA="],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_the_runtime_dependencies_only(tmp_path):
    commands = _make_dry_run("run", tmp_path)
    assert "pip install --no-input -e '.'" in commands
    assert "[test" not in commands
    assert "blockmgr serve" in commands


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_the_test_extra(tmp_path):
    commands = _make_dry_run("test", tmp_path)
    assert "pip install --no-input -e '.[test]'" in commands
    assert "pytest" in commands


def test_every_console_script_resolves_to_a_function():
    import importlib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"blockmgr", "blockmgr-manage", "blockmgr-volume", "blockmgr-scheduler",
            "blockmgr-api", "blockmgr-config-generator"} <= set(scripts)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
