"""Start-up path of ``blockmgr-volume``: native threads only, database pool sized to the
daemon's concurrency."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from blockmgr import conf as bm_conf
from blockmgr.volume import service as volume_service


def test_daemon_process_runs_without_eventlet():
    """In a fresh interpreter (the choice is process-wide): after use_native_threads() the
    daemon's whole import graph loads without eventlet, on oslo.service's threading
    backend; without cotyledon nothing is changed."""
    script = textwrap.dedent("""
        import importlib.util, sys
        from blockmgr.cmd import volume
        chosen = volume.use_native_threads()
        import oslo_messaging
        from oslo_service import backend
        from blockmgr.volume import service, manager, endpoint
        has_cotyledon = importlib.util.find_spec("cotyledon") is not None
        assert chosen is has_cotyledon, (chosen, has_cotyledon)
        if chosen:
            assert sys.modules["eventlet"] is None
            assert backend.get_backend_type() == backend.BackendType.THREADING
            assert not [m for m in sys.modules if m.startswith("eventlet.")]
        print("ok", chosen)
    """)
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = importlib.util.find_spec("cotyledon") is not None
    assert result.stdout.split() == ["ok", str(expected)]


def test_use_native_threads_leaves_an_eventlet_process_alone(monkeypatch):
    from blockmgr.cmd import volume

    monkeypatch.setitem(sys.modules, "eventlet", object())   # already loaded by someone
    assert volume.use_native_threads() is False
    assert sys.modules["eventlet"] is not None


def _conf(tmp_path, **database):
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("connection", database.pop("connection",
                                                  "mysql+pymysql://u@127.0.0.1/x"),
                      group="database")
    for name, value in database.items():
        conf.set_override(name, value, group="database")
    return conf


def test_pool_is_raised_to_the_worker_threads_within_the_configured_cap(tmp_path):
    conf = _conf(tmp_path)            # oslo.db defaults: pool 5, overflow 50
    conf.set_override("rpc_worker_threads", 16)
    assert volume_service.pool_options(conf) == {"max_pool_size": 20, "max_overflow": 35}


def test_pool_never_exceeds_the_operators_connection_cap(tmp_path):
    conf = _conf(tmp_path, max_pool_size=4, max_overflow=6)
    conf.set_override("rpc_worker_threads", 16)
    assert volume_service.pool_options(conf) == {"max_pool_size": 10, "max_overflow": 0}


@pytest.mark.parametrize("database", [
    {"max_pool_size": 64},                                     # already large enough
    {"connection": "sqlite:////tmp/x.sqlite"},                 # SQLite: own pooling
])
def test_pool_left_alone(tmp_path, database):
    assert volume_service.pool_options(_conf(tmp_path, **database)) == {}
