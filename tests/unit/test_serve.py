"""The pieces of ``blockmgr serve`` and ``blockmgr-api`` that can be checked in-process:
embedded defaults, start-up refusals, recovery of requests that were never placed.
(The processes themselves: tests/functional/test_serve.py.)"""

from __future__ import annotations

import time

import contextlib
import socket

import pytest

from blockmgr import allinone
from blockmgr import conf as bm_conf
from blockmgr import exception
from blockmgr.cmd import api as api_cmd
from blockmgr.cmd import listen
from blockmgr.cmd import serve as serve_cmd
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db.session import Database


def _conf(tmp_path, config_text: str | None = None):
    files = []
    if config_text is not None:
        path = tmp_path / "blockmgr.conf"
        path.write_text(config_text)
        files.append(str(path))
    conf = bm_conf.new_config(config_files=files, validate=False)
    conf.set_override("state_path", str(tmp_path / "state"))
    return conf


# --- embedded defaults ----------------------------------------------------------------------

def test_embedded_config_uses_the_in_process_transport_not_oslo_messagings_rabbit_default(
        tmp_path):
    conf = allinone.embedded_config(_conf(tmp_path))
    assert conf.transport_url == allinone.EMBEDDED_TRANSPORT
    assert conf.enabled_backends == [allinone.EMBEDDED_BACKEND]
    assert conf.loopback.volume_driver == "loopback"
    assert conf.database.connection == "sqlite:///%s/blockmgr.sqlite" % (tmp_path / "state")


def test_embedded_config_keeps_what_the_operator_configured(tmp_path):
    conf = allinone.embedded_config(_conf(tmp_path, "[DEFAULT]\n"
                                                    "transport_url = rabbit://u:p@mq:5672/bm\n"))
    assert conf.transport_url == "rabbit://u:p@mq:5672/bm"


def test_embedded_config_state_dir_wins_and_is_created(tmp_path):
    conf = allinone.embedded_config(_conf(tmp_path), str(tmp_path / "elsewhere"))
    assert conf.state_path == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere").is_dir()


def test_serve_load_config_reads_only_the_files_given(tmp_path):
    path = tmp_path / "serve.conf"
    path.write_text("[api]\nbind_port = 9999\n[DEFAULT]\ngraceful_shutdown_timeout = 3\n")
    args = serve_cmd.build_parser().parse_args(
        ["--state-dir", str(tmp_path / "s"), "--config-file", str(path)])
    conf = serve_cmd.load_config(args)
    try:
        assert conf.api.bind_port == 9999
        assert conf.graceful_shutdown_timeout == 3
        assert conf.state_path == str(tmp_path / "s")
        assert conf.use_stderr   # stdout is for the ready line
    finally:
        conf.clear()


def test_serve_bad_config_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "bad.conf"
    path.write_text("[DEFAULT]\nno_such_option = 1\n")
    assert serve_cmd.main(["--state-dir", str(tmp_path / "s"),
                           "--config-file", str(path)]) == 2
    assert "no_such_option" in capsys.readouterr().err


# --- start-up refusals ----------------------------------------------------------------------

def test_bind_socket_port_taken_says_what_to_do():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(exception.ServiceStartError) as info:
            listen.bind_socket("127.0.0.1", port, "blockmgr serve")
    message = str(info.value)
    assert message.startswith("blockmgr serve cannot start: cannot listen on 127.0.0.1:%d"
                              % port)
    assert "--port" in message and "another process already listens" in message


def test_bind_socket_unknown_host_and_foreign_address():
    with pytest.raises(exception.ServiceStartError, match="does not resolve"):
        listen.bind_socket("no-such-host.invalid", 0, "x")
    with pytest.raises(exception.ServiceStartError, match="not one of this machine's"):
        listen.bind_socket("192.0.2.1", 0, "x")


def test_bind_socket_port_zero_and_client_url():
    sock = listen.bind_socket("127.0.0.1", 0, "x")
    try:
        port = sock.getsockname()[1]
        assert port > 0
    finally:
        sock.close()
    assert listen.client_url("0.0.0.0", 8776) == "http://127.0.0.1:8776"
    assert listen.client_url("::", 8776) == "http://[::1]:8776"


def test_state_dir_lock_is_exclusive_and_names_the_holder(tmp_path):
    held = serve_cmd.lock_state_dir(str(tmp_path))
    try:
        with pytest.raises(exception.ServiceStartError, match="in use by another blockmgr "
                                                              "serve \\(pid \\d+\\)"):
            serve_cmd.lock_state_dir(str(tmp_path))
    finally:
        held.close()
    serve_cmd.lock_state_dir(str(tmp_path)).close()   # free again once released


def test_api_refuses_an_in_process_transport(tmp_path, capsys):
    path = tmp_path / "api.conf"
    path.write_text("[DEFAULT]\ntransport_url = inprocess://x\n")
    assert api_cmd.main(["--config-file", str(path)]) == 2
    assert "blockmgr serve" in capsys.readouterr().err


def test_api_refuses_an_unmigrated_database(tmp_path):
    db = Database("sqlite:///%s" % (tmp_path / "empty.sqlite"))
    try:
        with pytest.raises(exception.ServiceStartError, match="db sync"):
            api_cmd.check_schema(db)
    finally:
        db.dispose()


# --- AllInOne -------------------------------------------------------------------------------

def _tables(path) -> set[str]:
    import sqlite3

    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_construction_creates_no_schema_start_migrates(tmp_path):
    conf = allinone.embedded_config(_conf(tmp_path))
    conf.set_override("transport_url", allinone.private_transport_url())
    node = allinone.AllInOne(conf)
    path = tmp_path / "state" / "blockmgr.sqlite"
    assert "volumes" not in _tables(path)
    try:
        assert node.start(ready_timeout=30)
        assert {"volumes", "logbooks"} <= _tables(path)
    finally:
        assert node.stop(grace=5)


def test_a_request_a_previous_run_accepted_but_never_placed_runs_at_start(tmp_path):
    """serve killed after the API accepted a create and before its scheduler took the
    message (gone with the in-process broker): the request is in the ledger, pending; the
    next start places and creates the volume."""
    from blockmgr import context as bm_context
    from blockmgr.db import requests as db_requests

    conf = allinone.embedded_config(_conf(tmp_path))
    conf.set_override("transport_url", allinone.private_transport_url())
    node = allinone.AllInOne(conf)
    node._migrate()
    with node.db.writer() as session:
        vid = repository.create(session, models.Volume, size=1, status="creating",
                                project_id="p", attach_status="detached").id
        db_requests.add(session, kind="volume", resource_id=vid, action="create_volume",
                        arguments={"volume_id": vid, "request_spec": {"size": 1,
                                                                      "volume_id": vid},
                                   "filter_properties": {}},
                        context=bm_context.RequestContext(project_id="p").to_dict(),
                        target=db_requests.SCHEDULER)
    try:
        assert node.start(ready_timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with node.db.reader() as session:
                status = repository.get(session, models.Volume, vid).status
            if status != "creating":
                break
            time.sleep(0.05)
        assert status == "available"
    finally:
        node.stop(grace=5)
