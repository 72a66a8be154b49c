"""The user CLI ``blockmgr`` driven through :func:`blockmgr.cmd.cli.main` against a real HTTP
server (uvicorn on a free port) serving the in-process stack: client library, scheduler,
volume worker with a loopback backend, SQLite. Nothing between the CLI and the driver is a
double; only the ``--wait`` timeout and the fault parser are also checked on their own."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket

import httpx
import pytest

from blockmgr.cli import errors
from blockmgr.cli import http as cli_http
from blockmgr.cli import wait as cli_wait
from blockmgr.api.rest import server as rest_server
from blockmgr.cmd import cli
from tests.unit.rest.conftest import stack  # noqa: F401  (the fixture)

PROJECT = "pA"
HOST = "node1@loopback#loopback"


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        assert self.code == 0, self.err
        return json.loads(self.out)

    def __repr__(self):
        return "Result(code=%r, out=%r, err=%r)" % (self.code, self.out, self.err)


class Cli:
    """Runs ``blockmgr <globals> <argv>`` in-process, capturing stdout, stderr and the code."""

    def __init__(self, url: str, project: str = PROJECT, *extra: str):
        self.base = ["--url", url, "--project", project, "--user", "u-" + project,
                     "--wait-timeout", "60", *extra]

    def __call__(self, *argv: str) -> Result:
        return run([*self.base, *argv])

    def json(self, *argv: str):
        return self("--format", "json", *argv).json()


def run(argv) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def server(stack):  # noqa: F811
    """The stack's REST app served over real HTTP on 127.0.0.1:<free port>."""
    with rest_server.ApiServer(stack.app, "127.0.0.1", 0) as api:
        yield api


@pytest.fixture
def blockmgr(server) -> Cli:
    return Cli(server.url)


def _table_row(table: str, field: str) -> str:
    """The value of ``field`` in a Field/Value table."""
    match = re.search(r"^\| %s\s+\| (.*?)\s*\|$" % re.escape(field), table, re.MULTILINE)
    assert match, "no %s row in\n%s" % (field, table)
    return match.group(1)


# --- volumes --------------------------------------------------------------------------------

def test_volume_life_cycle_in_tables_and_json(blockmgr):
    created = blockmgr("volume", "create", "--size", "1", "--name", "v1", "--wait")
    assert created.code == 0, created
    assert _table_row(created.out, "status") == "available"
    assert _table_row(created.out, "size") == "1"
    volume_id = _table_row(created.out, "id")
    # progress on stderr: each status with the time elapsed, ending available
    assert re.search(r"volume %s: available \(\d+\.\d s\)" % volume_id, created.err)

    listed = blockmgr("volume", "list")
    assert listed.code == 0, listed
    assert re.search(r"^\| ID\s+\| Name\s+\| Status\s+\| Size", listed.out, re.MULTILINE)
    row = next(line for line in listed.out.splitlines() if volume_id in line)
    assert [c.strip() for c in row.strip("|").split("|")][:4] == [volume_id, "v1",
                                                                   "available", "1"]
    assert [v["id"] for v in blockmgr.json("volume", "list")] == [volume_id]

    shown = blockmgr.json("volume", "show", volume_id)
    assert (shown["id"], shown["name"], shown["status"], shown["size"]) == (
        volume_id, "v1", "available", 1)
    assert shown["os-vol-tenant-attr:tenant_id"] == PROJECT
    assert shown["user_id"] == "u-" + PROJECT

    extended = blockmgr.json("volume", "extend", volume_id, "--size", "2", "--wait")
    assert (extended["status"], extended["size"]) == ("available", 2)

    deleted = blockmgr("volume", "delete", volume_id, "--wait")
    assert deleted.code == 0, deleted
    assert "volume %s: deleted" % volume_id in deleted.err
    gone = blockmgr("volume", "show", volume_id)
    assert gone.code == errors.EXIT_API_ERROR
    assert "HTTP 404 itemNotFound" in gone.err and volume_id in gone.err
    assert blockmgr.json("volume", "list") == []


def test_api_refusal_exits_1_with_the_servers_message_and_changes_nothing(blockmgr):
    volume = blockmgr.json("volume", "create", "--size", "2", "--wait")
    shrink = blockmgr("volume", "extend", volume["id"], "--size", "1", "--wait")
    assert shrink.code == errors.EXIT_API_ERROR
    assert shrink.out == ""
    assert re.search(r"^blockmgr: error: .*\bsize\b.*\(HTTP 400 badRequest", shrink.err,
                     re.MULTILINE), shrink.err
    assert blockmgr.json("volume", "show", volume["id"])["size"] == 2

    unknown = blockmgr("volume", "delete", "00000000-0000-4000-8000-000000000000")
    assert unknown.code == errors.EXIT_API_ERROR
    assert "HTTP 404 itemNotFound" in unknown.err


def test_list_paging_next_page_hint_and_all_projects(blockmgr, server):
    ids = [blockmgr.json("volume", "create", "--size", "1", "--name", "p%d" % i)["id"]
           for i in range(3)]
    first = blockmgr("--format", "json", "volume", "list", "--limit", "2",
                     "--sort", "name:asc")
    page = first.json()
    assert [v["name"] for v in page] == ["p0", "p1"]
    assert "repeat with --marker %s" % page[-1]["id"] in first.err
    rest = blockmgr.json("volume", "list", "--limit", "2", "--sort", "name:asc",
                         "--marker", page[-1]["id"])
    assert [v["name"] for v in rest] == ["p2"]
    # another project's volume: not in pA's list; an admin sees both with --all-projects
    other = Cli(server.url, "pB").json("volume", "create", "--size", "1", "--name", "theirs")
    assert other["id"] not in blockmgr("volume", "list").out
    everyone = Cli(server.url, PROJECT, "--admin")("volume", "list", "--all-projects")
    assert everyone.code == 0, everyone
    assert re.search(r"^\| %s .*\| pB\s+\|$" % other["id"], everyone.out, re.MULTILINE)
    for volume_id in ids:
        assert blockmgr("volume", "delete", volume_id, "--wait").code == 0


# --- snapshots ------------------------------------------------------------------------------

def test_snapshot_create_list_delete(blockmgr):
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    snapshot = blockmgr.json("snapshot", "create", volume["id"], "--name", "s1", "--wait")
    assert (snapshot["status"], snapshot["volume_id"], snapshot["name"]) == (
        "available", volume["id"], "s1")
    listed = blockmgr("snapshot", "list")
    assert snapshot["id"] in listed.out and "s1" in listed.out, listed

    busy = blockmgr("volume", "delete", volume["id"])     # has a snapshot: refused
    assert busy.code == errors.EXIT_API_ERROR
    assert "blockmgr: error:" in busy.err and "HTTP 4" in busy.err

    deleted = blockmgr("snapshot", "delete", snapshot["id"], "--wait")
    assert deleted.code == 0, deleted
    assert blockmgr("snapshot", "show", snapshot["id"]).code == errors.EXIT_API_ERROR
    clone = blockmgr.json("volume", "create", "--source-volume", volume["id"], "--wait")
    assert (clone["size"], clone["source_volid"]) == (1, volume["id"])
    assert blockmgr("volume", "delete", volume["id"], "--wait").code == 0


# --- manage / unmanage ----------------------------------------------------------------------

def _loopback_dir(stack) -> str:  # noqa: F811
    from blockmgr.drivers.loopback import options

    raw = stack.conf["loopback"].loopback_directory
    return raw.replace(options.BACKEND_PLACEHOLDER, "loopback")


@pytest.fixture
def admin(server) -> Cli:
    """Manage, unmanage and manageable listings are admin calls (as in Cinder)."""
    return Cli(server.url, PROJECT, "--admin")


def test_manage_is_refused_without_the_admin_role(blockmgr):
    refused = blockmgr("volume", "manage", "--host", HOST, "--ref", "source-name=x")
    assert refused.code == errors.EXIT_API_ERROR
    assert "HTTP 403 forbidden" in refused.err


def test_manage_failure_ends_wait_with_the_drivers_reason(admin):
    failed = admin("volume", "manage", "--host", HOST, "--ref", "source-name=no-such-file",
                      "--wait")
    assert failed.code == errors.EXIT_API_ERROR
    assert re.search(r"^blockmgr: error: volume \S+ is error_managing: .*no-such-file",
                     failed.err, re.MULTILINE), failed.err


def test_manageable_list_manage_and_unmanage(admin, stack):  # noqa: F811
    path = os.path.join(_loopback_dir(stack), "imported")
    with open(path, "wb") as handle:
        handle.truncate(1024 * 1024)
    listed = admin("manageable", "list", "volumes", "--host", HOST)
    assert listed.code == 0, listed
    row = next(line for line in listed.out.splitlines() if "source-name=imported" in line)
    assert "| true" in row
    volume = admin.json("volume", "manage", "--host", HOST, "--ref",
                           "source-name=imported", "--name", "imp", "--wait")
    assert (volume["status"], volume["size"], volume["name"]) == ("available", 1, "imp")
    assert not os.path.exists(path)
    unmanaged = admin("volume", "unmanage", volume["id"], "--wait")
    assert unmanaged.code == 0, unmanaged
    assert "no longer managed" in unmanaged.err
    # the data stayed on the backend, manageable again under a new name
    again = admin.json("manageable", "list", "volumes", "--host", HOST)
    assert [e["size"] for e in again
            if volume["id"] in e["reference"]["source-name"]] == [1], again


def test_snapshot_unmanage_then_manage_back(blockmgr, admin):
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    snapshot = blockmgr.json("snapshot", "create", volume["id"], "--wait")
    unmanaged = admin("snapshot", "unmanage", snapshot["id"], "--wait")
    assert unmanaged.code == 0, unmanaged
    assert blockmgr.json("snapshot", "list") == []
    candidates = admin.json("manageable", "list", "snapshots", "--host", HOST)
    (entry,) = [e for e in candidates if snapshot["id"] in e["reference"]["source-name"]]
    table = admin("manageable", "list", "snapshots", "--host", HOST).out
    assert "source-name=" + entry["reference"]["source-name"] in table
    managed = admin.json("snapshot", "manage", volume["id"], "--ref",
                         "source-name=" + entry["reference"]["source-name"], "--name", "back",
                         "--wait")
    assert (managed["status"], managed["volume_id"], managed["name"]) == (
        "available", volume["id"], "back")


# --- groups ---------------------------------------------------------------------------------

def test_group_and_group_snapshot(blockmgr):
    group = blockmgr.json("group", "create", "--name", "g1", "--wait")
    assert (group["status"], group["name"]) == ("available", "g1")
    member = blockmgr.json("volume", "create", "--size", "1", "--group", group["id"],
                           "--wait")
    assert member["group_id"] == group["id"]
    gsnap = blockmgr.json("group", "snapshot", "create", group["id"], "--name", "gs1",
                          "--wait")
    assert (gsnap["status"], gsnap["group_id"]) == ("available", group["id"])
    listed = blockmgr("group-snapshot", "list")          # the alias spelling
    assert gsnap["id"] in listed.out, listed
    renamed = blockmgr.json("group", "update", group["id"], "--name", "g2", "--wait")
    assert renamed["name"] == "g2"
    assert blockmgr("group", "snapshot", "delete", gsnap["id"], "--wait").code == 0
    deleted = blockmgr("group", "delete", group["id"], "--delete-volumes", "--wait")
    assert deleted.code == 0, deleted
    assert blockmgr.json("group", "list") == []
    assert blockmgr.json("volume", "list") == []


# --- no server, bad command lines -----------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_exits_3_and_says_what_to_start():
    result = run(["--url", "http://127.0.0.1:%d" % _closed_port(), "volume", "list"])
    assert result.code == errors.EXIT_UNREACHABLE == 3
    assert "cannot reach the blockmgr API" in result.err
    assert "blockmgr serve" in result.err
    assert result.out == ""


@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["volume", "frobnicate"], "invalid choice"),
    (["volume", "create"], "needs --size"),
    (["volume", "create", "--size", "0"], "at least 1"),
    (["volume", "create", "--size", "big"], "not a whole number"),
    (["volume", "create", "--size", "1", "--snapshot", "a", "--source-volume", "b"],
     "not allowed with"),
    (["volume", "manage", "--host", HOST, "--ref", "no-equals-sign"], "KEY=VALUE"),
    (["volume", "list", "--format", "xml"], "invalid choice"),
    (["--timeout", "-1", "volume", "list"], "more than 0"),
    (["--url", "127.0.0.1:8776", "volume", "list"], "http://"),
    (["group", "update", "g"], "at least one of"),
    (["volume", "extend", "v"], "required"),
])
def test_usage_errors_exit_2_with_a_message(argv, message):
    result = run(["--url", "http://127.0.0.1:%d" % _closed_port(), *argv])
    assert result.code == errors.EXIT_USAGE == 2, result
    assert message in result.err, result


def test_help_on_every_command_exits_0():
    for argv in (["--help"], ["volume", "--help"], ["volume", "extend", "--help"],
                 ["group", "snapshot", "create", "--help"], ["manageable", "list", "--help"]):
        result = run(argv)
        assert result.code == 0, (argv, result)
        assert "usage: blockmgr" in result.out
    assert "--wait-timeout" in run(["volume", "create", "--help"]).out


def test_global_options_after_the_command_and_from_the_environment(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("BLOCKMGR_URL", "http://127.0.0.1:%d" % port)
    result = run(["volume", "list", "--format", "json"])
    assert result.code == 3 and "127.0.0.1:%d" % port in result.err
    result = run(["volume", "list", "--url", "http://127.0.0.1:1"])   # after the command
    assert result.code == 3 and "127.0.0.1:1:" in result.err


def test_serve_is_handed_to_the_server_command():
    result = run(["serve", "--help"])
    assert result.code == 0
    assert "usage: blockmgr serve" in result.out


# --- the pieces on their own ----------------------------------------------------------------

class _ScriptedApi:
    """Answers ``GET`` with the given statuses in turn (the last one forever)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)

    def get(self, path):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status is None:
            raise errors.ApiRequestFailed(status=404, fault="itemNotFound", message="gone")
        return {"volume": {"id": "v1", "status": status, "status_reason": "disk on fire"}}


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _wait(statuses, target_kwargs, timeout=30.0):
    clock, notes = _Clock(), []
    target = cli_wait.Target(kind="volume", resource_id="v1", path="volumes/v1", key="volume",
                             command="volume", **target_kwargs)
    try:
        return cli_wait.wait_for(_ScriptedApi(statuses), target, timeout=timeout,
                                 note=notes.append, clock=clock, sleep=clock.sleep), notes
    except errors.CliError as exc:
        return exc, notes


def test_wait_reports_each_status_change_and_heartbeats():
    body, notes = _wait(["creating"] * 15 + ["available"], {"success": {"available"}},
                        timeout=300)
    assert body["status"] == "available"
    assert notes[0] == "volume v1: creating (0.0 s)"
    assert any(n.startswith("volume v1: still creating (") for n in notes)
    assert notes[-1].startswith("volume v1: available (")


def test_wait_timeout_is_exit_4_and_says_how_to_check():
    exc, _notes = _wait(["creating"], {"success": {"available"}}, timeout=5)
    assert isinstance(exc, errors.WaitTimedOut) and exc.exit_code == 4
    assert "still creating after 5 s" in exc.msg and "blockmgr volume show v1" in exc.msg


def test_wait_error_status_or_wrong_stable_status_fails_with_the_reason():
    exc, _ = _wait(["extending", "error_extending"], {"success": {"available"}})
    assert isinstance(exc, errors.ResourceFailed) and exc.exit_code == 1
    assert exc.msg == "volume v1 is error_extending: disk on fire"
    exc, _ = _wait(["deleting", "available"], {"gone": True})
    assert isinstance(exc, errors.ResourceFailed)
    assert "expected gone" in exc.msg and "disk on fire" in exc.msg
    body, notes = _wait(["deleting", None], {"gone": True})
    assert body is None and notes[-1].startswith("volume v1: deleted")


def test_fault_bodies_become_typed_errors_with_the_servers_message():
    err = cli_http.fault_error(httpx.Response(
        413, json={"overLimit": {"message": "Quota exceeded for gigabytes", "code": 413}},
        headers={"X-OpenStack-Request-Id": "req-1"}))
    assert (err.status, err.fault, err.msg) == (413, "overLimit",
                                                "Quota exceeded for gigabytes")
    assert err.describe() == "Quota exceeded for gigabytes (HTTP 413 overLimit, request req-1)"
    err = cli_http.fault_error(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert err.status == 502 and "Bad Gateway" in err.msg


# --- output formats and columns (openstackclient's -f / -c) ----------------------------------

def test_formats_yaml_value_csv_and_columns(blockmgr):
    import csv as csv_module

    import yaml

    volume = blockmgr.json("volume", "create", "--size", "1", "--name", "fmt", "--wait")
    vid = volume["id"]

    shown = yaml.safe_load(blockmgr("-f", "yaml", "volume", "show", vid).out)
    assert (shown["id"], shown["name"], shown["size"]) == (vid, "fmt", 1)

    value = blockmgr("volume", "show", vid, "-f", "value", "-c", "status", "-c", "size")
    assert value.code == 0, value
    assert value.out == "available\n1\n"
    assert blockmgr("volume", "show", vid, "-c", "name", "-f", "json").json() == {"name": "fmt"}
    narrow = blockmgr("volume", "show", vid, "-c", "status")
    assert _table_row(narrow.out, "status") == "available"
    assert "| size" not in narrow.out

    listed = blockmgr("volume", "list", "-f", "value", "-c", "ID", "-c", "Status")
    assert listed.out == "%s available\n" % vid
    # a field the table does not show, by its name
    by_field = blockmgr("volume", "list", "-f", "value", "-c", "name", "-c", "user_id")
    assert by_field.out == "fmt u-%s\n" % PROJECT, by_field
    rows = list(csv_module.reader(io.StringIO(
        blockmgr("volume", "list", "-f", "csv").out)))
    assert rows[0] == ["ID", "Name", "Status", "Size", "Type", "Created"]
    assert rows[1][:4] == [vid, "fmt", "available", "1"]
    assert yaml.safe_load(blockmgr("volume", "list", "-f", "yaml").out)[0]["id"] == vid
    assert blockmgr("volume", "list", "-f", "json", "-c", "ID", "-c", "size").json() == [
        {"id": vid, "size": 1}]
    assert blockmgr("volume", "delete", vid, "--wait").code == 0


def test_unknown_column_is_a_usage_error_naming_the_columns(blockmgr):
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    listed = blockmgr("volume", "list", "-c", "colour")
    assert listed.code == errors.EXIT_USAGE, listed
    assert "no column 'colour'" in listed.err and "ID, Name, Status" in listed.err
    assert listed.out == ""
    shown = blockmgr("volume", "show", volume["id"], "-c", "colour")
    assert shown.code == errors.EXIT_USAGE and "'colour'" in shown.err and "status" in shown.err
    assert blockmgr("volume", "delete", volume["id"], "--wait").code == 0


# --- lookup by name ---------------------------------------------------------------------------

def test_lookup_by_name_or_id(blockmgr):
    data = blockmgr.json("volume", "create", "--size", "1", "--name", "data", "--wait")
    assert blockmgr.json("volume", "show", "data")["id"] == data["id"]
    assert blockmgr.json("volume", "show", data["id"])["name"] == "data"
    extended = blockmgr.json("volume", "extend", "data", "--size", "2", "--wait")
    assert (extended["id"], extended["size"]) == (data["id"], 2)
    snap = blockmgr.json("snapshot", "create", "data", "--name", "nightly", "--wait")
    assert snap["volume_id"] == data["id"]
    assert blockmgr.json("snapshot", "show", "nightly")["id"] == snap["id"]
    copy = blockmgr.json("volume", "create", "--snapshot", "nightly", "--name", "copy",
                         "--wait")
    assert copy["snapshot_id"] == snap["id"]

    missing = blockmgr("volume", "show", "nosuch")
    assert missing.code == errors.EXIT_API_ERROR, missing
    assert "no volume has the id or the name 'nosuch'" in missing.err
    assert "HTTP 404 itemNotFound" in missing.err

    assert blockmgr("snapshot", "delete", "nightly", "--wait").code == 0
    assert blockmgr("volume", "delete", "copy", "data", "--wait").code == 0
    assert blockmgr.json("volume", "list") == []


def test_ambiguous_name_is_refused_with_the_ids(blockmgr):
    twins = [blockmgr.json("volume", "create", "--size", "1", "--name", "twin", "--wait")["id"]
             for _ in range(2)]
    shown = blockmgr("volume", "show", "twin")
    assert shown.code == errors.EXIT_USAGE, shown
    assert "2 volumes are named 'twin'" in shown.err
    assert all(vid in shown.err for vid in twins)
    refused = blockmgr("volume", "delete", "twin")
    assert refused.code == errors.EXIT_USAGE
    assert len(blockmgr.json("volume", "list")) == 2          # nothing deleted
    assert blockmgr("volume", "delete", *twins, "--wait").code == 0


# --- several ids per delete -------------------------------------------------------------------

def test_delete_several_looks_every_name_up_first(blockmgr):
    a = blockmgr.json("volume", "create", "--size", "1", "--name", "a", "--wait")
    b = blockmgr.json("volume", "create", "--size", "1", "--name", "b", "--wait")
    typo = blockmgr("volume", "delete", "a", "b", "c")
    assert typo.code == errors.EXIT_API_ERROR, typo
    assert "'c'" in typo.err
    assert {v["id"] for v in blockmgr.json("volume", "list")} == {a["id"], b["id"]}

    snap = blockmgr.json("snapshot", "create", "a", "--wait")      # a cannot go now
    partial = blockmgr("volume", "delete", "a", "b", "--wait")
    assert partial.code == errors.EXIT_API_ERROR, partial
    assert "volume %s:" % a["id"] in partial.err and "HTTP 4" in partial.err
    assert "1 of 2 volumes not deleted" in partial.err
    assert "volume %s: deleted" % b["id"] in partial.err
    assert [v["id"] for v in blockmgr.json("volume", "list")] == [a["id"]]

    assert blockmgr("snapshot", "delete", snap["id"], "--wait").code == 0
    done = blockmgr("volume", "delete", a["id"], a["id"])           # the same one twice
    assert done.code == 0, done
    assert done.err.count("Deletion of volume %s accepted." % a["id"]) == 1


# --- a closed pipe ----------------------------------------------------------------------------

def test_closed_stdout_ends_quietly(blockmgr, server):
    """``blockmgr --format json volume list | head``: the reader goes away before the output
    is written; no BrokenPipeError traceback, exit 141 (128 + SIGPIPE) like other tools."""
    import subprocess
    import sys

    for i in range(3):
        blockmgr.json("volume", "create", "--size", "1", "--name", "pipe%d" % i)
    read_end, write_end = os.pipe()
    os.close(read_end)                       # nobody will ever read
    try:
        result = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "blockmgr"), "--url", server.url,
             "--project", PROJECT, "--format", "json", "volume", "list"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == cli.EXIT_BROKEN_PIPE == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.stderr == ""


def test_version_option():
    result = run(["--version"])
    assert result.code == 0
    assert result.out.strip() == "blockmgr " + __import__("blockmgr").__version__
