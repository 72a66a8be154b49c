"""``blockmgr serve`` as a user runs it: a subprocess on a state directory, driven with the
``blockmgr`` CLI and with python-cinderclient, stopped with Ctrl-C, restarted, and killed in
the middle of a flow.

Everything is real: the process migrates its SQLite database, runs the scheduler and a
loopback volume worker over the in-process transport, and serves the REST API with uvicorn.
The ports are picked by the kernel (``--port 0``) and read back from the ready line.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
import pytest

from blockmgr import conf as bm_conf
from blockmgr import quota as bm_quota
from blockmgr.cmd import serve as serve_cmd
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.db.session import Database
from blockmgr.flows import faults

pytestmark = [pytest.mark.functional]

REPO = Path(__file__).resolve().parents[2]
PROJECT = "p-serve"
HEADERS = {"X-User-Id": "u-serve", "X-Project-Id": PROJECT}
#: Safety net against a hung process, not a speed requirement.
PROCESS_TIMEOUT = 60


class Serve:
    """One ``blockmgr serve`` subprocess (through the ``blockmgr`` console entry point's
    ``main``, as ``blockmgr serve`` runs it)."""

    def __init__(self, state_dir: Path, *args: str, env: dict | None = None):
        self.state_dir = state_dir
        self.stderr_path = state_dir.parent / ("serve-%d.err" % time.monotonic_ns())
        self.args = ["--state-dir", str(state_dir), *args]
        if "--port" not in args:
            self.args += ["--port", "0"]
        self.env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.ready = ""
        self.url = ""

    def start(self, wait_ready: bool = True) -> "Serve":
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "blockmgr.cmd.cli", "serve", *self.args],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=self.env,
                cwd=str(REPO), text=True)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Read stdout until the ready block (its last line is the ``try:`` hint); a
        thread reads, so that a process that hangs before printing cannot hang the test."""
        lines: queue.Queue = queue.Queue()

        def reader(stream):
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, args=(self.proc.stdout,), daemon=True).start()
        got = []
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            got.append(line)
            if line.strip().startswith("try:"):
                break
        self.ready = "".join(got)
        assert got and got[0].startswith(serve_cmd.READY_PREFIX), (
            "no ready line; exit %s\nstdout:\n%s\nstderr:\n%s"
            % (self.proc.poll(), self.ready, self.stderr()))
        self.url = got[0][len(serve_cmd.READY_PREFIX):].split()[0]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-8000:]

    def signal(self, signum: int) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(PROCESS_TIMEOUT)

    def wait(self) -> int:
        return self.proc.wait(PROCESS_TIMEOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT)


@pytest.fixture
def serves():
    """Start :class:`Serve` processes; any still running at the end is killed."""
    started = []

    def start(state_dir, *args, **kwargs) -> Serve:
        node = Serve(state_dir, *args, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blockmgr.cmd.cli", "--url", url, "--project", PROJECT,
         "--format", "json", *args],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT, cwd=str(REPO),
        stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))


def cinder(url: str):
    """python-cinderclient in noauth mode, as its documentation sets it up."""
    from cinderclient import client as cinder_client
    from cinderclient.contrib import noauth
    from keystoneauth1 import session as ks_session

    auth = noauth.CinderNoAuthPlugin(user_id="u-cinder", project_id=PROJECT,
                                     endpoint=url + "/v3")
    return cinder_client.Client("3.0", session=ks_session.Session(auth=auth))


def wait_status(http: httpx.Client, url: str, volume_id: str, statuses,
                timeout: float = PROCESS_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get("%s/v3/%s/volumes/%s" % (url, PROJECT, volume_id),
                            headers=HEADERS)
        if response.status_code == 404 and None in statuses:
            return {}
        assert response.status_code == 200, response.text
        volume = response.json()["volume"]
        if volume["status"] in statuses:
            return volume
        assert time.monotonic() < deadline, "volume still %s" % volume["status"]
        time.sleep(0.05)


def quota_drift(state_dir: Path) -> list:
    """Usage rows that disagree with the resources in ``state_dir``'s database (the
    process is stopped)."""
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(state_dir))
    db = Database.from_config(conf)
    try:
        return bm_quota.QuotaEngine(db, conf).check()
    finally:
        db.dispose()
        conf.reset()


# --- the README's promise -------------------------------------------------------------------

def test_serve_with_cli_and_cinderclient_then_ctrl_c_and_restart(tmp_path, serves):
    state = tmp_path / "state"
    node = serves(state).start()
    assert "state directory: %s" % state in node.ready
    assert "database:        sqlite:///%s" % (state / "blockmgr.sqlite") in node.ready
    assert str(state / "volumes" / "loopback") in node.ready
    assert "loop devices:" in node.ready
    assert (state / "blockmgr.sqlite").exists()

    # The "done" criterion: `blockmgr volume create --size 1 --wait` -> available.
    created = cli(node.url, "volume", "create", "--size", "1", "--name", "from-cli", "--wait")
    assert created.returncode == 0, created.stdout + created.stderr
    volume = json.loads(created.stdout)
    assert volume["status"] == "available" and volume["size"] == 1
    assert (state / "volumes" / "loopback" / ("volume-%s" % volume["id"])).exists()
    listed = cli(node.url, "volume", "list")
    assert listed.returncode == 0, listed.stderr
    assert volume["id"] in [v["id"] for v in json.loads(listed.stdout)]

    # python-cinderclient, noauth: create, list, show, delete.
    client = cinder(node.url)
    made = client.volumes.create(1, name="from-cinderclient")
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while client.volumes.get(made.id).status == "creating":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shown = client.volumes.get(made.id)
    assert (shown.status, shown.name, shown.size) == ("available", "from-cinderclient", 1)
    assert {v.id for v in client.volumes.list()} == {volume["id"], made.id}
    client.volumes.delete(made.id)
    with httpx.Client(timeout=10) as http:
        wait_status(http, node.url, made.id, {None})

    # Ctrl-C: exit 0, the port is released.
    assert node.signal(signal.SIGINT) == 0, node.stderr()
    assert "stopped (clean)" in node.stderr()

    # As if the process had died after accepting a request and before the scheduler took
    # it: a row `creating` with no host and its request pending in the ledger (the
    # in-process queue is gone with the process).
    unplaced = _unplaced_volume(state)

    # Restart on the same state directory: the volume is still there and usable; the
    # never-placed request runs now.
    again = serves(state).start()
    assert "Running upgrade" not in again.stderr(), "the schema was migrated twice"
    shown = cli(again.url, "volume", "show", volume["id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "available"
    with httpx.Client(timeout=10) as http:
        shown = wait_status(http, again.url, unplaced, {"available", "error"})
    assert shown["status"] == "available", shown
    deleted = cli(again.url, "volume", "delete", unplaced, "--wait")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    deleted = cli(again.url, "volume", "delete", volume["id"], "--wait")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert again.signal(signal.SIGTERM) == 0, again.stderr()
    assert quota_drift(state) == []


def _unplaced_volume(state_dir: Path) -> str:
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(state_dir))
    db = Database.from_config(conf)
    try:
        with db.writer() as session:
            volume_id = repository.create(session, models.Volume, size=1, status="creating",
                                          project_id=PROJECT, user_id="u",
                                          attach_status="detached").id
            bm_quota.QuotaEngine(db, conf).consume(session, PROJECT, volumes=1, gigabytes=1)
            db_requests.add(session, kind="volume", resource_id=volume_id,
                            action="create_volume",
                            arguments={"volume_id": volume_id,
                                       "request_spec": {"size": 1, "volume_id": volume_id},
                                       "filter_properties": {}},
                            context={"project_id": PROJECT, "user_id": "u"},
                            target=db_requests.SCHEDULER)
    finally:
        db.dispose()
        conf.reset()
    return volume_id


# --- crash in the middle of a flow ----------------------------------------------------------

CREATE = "blockmgr.flows.create_volume."


# One boundary, the one with a side effect and no recorded outcome: the file exists, the
# status was not written. (Every boundary of every flow is crash-tested in-process by
# tests/functional/test_flow_crash*.py; this proves serve's start-up runs that recovery.)
@pytest.mark.parametrize("boundary", ["after:" + CREATE + "CreateVolumeFromSpecTask"])
def test_flow_cut_by_a_crash_is_resolved_at_next_start(tmp_path, serves, boundary):
    state = tmp_path / "state"
    doomed = serves(state, env={faults.ENV_VAR: boundary}).start()
    with httpx.Client(timeout=10) as http:
        response = http.post("%s/v3/%s/volumes" % (doomed.url, PROJECT), headers=HEADERS,
                             json={"volume": {"size": 1, "name": "cut"}})
        assert response.status_code == 202, response.text
        volume_id = response.json()["volume"]["id"]
        assert doomed.wait() == faults.EXIT_CODE, doomed.stderr()

        node = serves(state).start()
        volume = wait_status(http, node.url, volume_id, {"available", "error"})
        assert volume["status"] in {"available", "error"}
        if volume["status"] == "available":
            assert (state / "volumes" / "loopback" / ("volume-%s" % volume_id)).exists()
        assert re.search(r"recovered: (1 flow\(s\) resumed|0 flow\(s\) resumed, 1 reverted)",
                         node.stderr()), node.stderr()
        # The node serves new work after the recovery.
        response = http.post("%s/v3/%s/volumes" % (node.url, PROJECT), headers=HEADERS,
                             json={"volume": {"size": 1}})
        assert response.status_code == 202, response.text
        wait_status(http, node.url, response.json()["volume"]["id"], {"available"})
    assert node.signal(signal.SIGINT) == 0, node.stderr()
    assert quota_drift(state) == []


# --- start-up refusals ----------------------------------------------------------------------

def test_port_in_use_and_state_dir_in_use_exit_1_with_a_message(tmp_path, serves):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = serves(tmp_path / "a", "--port", str(port)).start(wait_ready=False)
        assert refused.wait() == 1
        message = refused.stderr()
        assert "cannot listen on 127.0.0.1:%d" % port in message, message
        assert "another process already listens on that port" in message, message
        assert "--port" in message
    # Nothing was set up before the refusal.
    assert not (tmp_path / "a" / "blockmgr.sqlite").exists()

    node = serves(tmp_path / "b").start()
    second = serves(tmp_path / "b").start(wait_ready=False)
    assert second.wait() == 1
    assert "in use by another blockmgr serve (pid %d)" % node.proc.pid in second.stderr(), \
        second.stderr()
    assert node.signal(signal.SIGINT) == 0


def test_kill_9_under_load_then_restart_runs_every_accepted_request(tmp_path, serves):
    """serve killed (SIGKILL) 0.6 s into a burst of 60 creates, then restarted on the same
    state directory: every create it answered 202 ends ``available``."""
    import concurrent.futures

    state = tmp_path / "state"
    node = serves(state).start()
    accepted: list[str] = []

    def create(i):
        try:
            with httpx.Client(timeout=10) as http:
                response = http.post("%s/v3/%s/volumes" % (node.url, PROJECT),
                                     headers=HEADERS, json={"volume": {"size": 1}})
        except httpx.TransportError:
            return   # the process died before answering: not accepted as far as we know
        if response.status_code == 202:
            accepted.append(response.json()["volume"]["id"])

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(create, i) for i in range(60)]
        time.sleep(0.6)
        node.kill()
        for future in futures:
            future.result(timeout=60)
    assert accepted, node.stderr()
    db = Database("sqlite:///%s" % (state / "blockmgr.sqlite"))
    try:
        with db.reader() as session:
            unfinished = session.execute(sa.select(sa.func.count()).select_from(
                models.Volume).where(models.Volume.status == "creating")).scalar()
    finally:
        db.dispose()
    print("\n%d accepted, %d still creating at the kill" % (len(accepted), unfinished))
    again = serves(state).start()
    with httpx.Client(timeout=10) as http:
        for volume_id in accepted:
            volume = wait_status(http, again.url, volume_id, {"available", "error"})
            assert volume["status"] == "available", (volume, again.stderr())
    assert again.signal(signal.SIGINT) == 0, again.stderr()
    assert quota_drift(state) == []
