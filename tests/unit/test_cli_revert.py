"""``blockmgr volume revert VOLUME SNAPSHOT`` against the in-process stack over HTTP."""

from __future__ import annotations

import os

from blockmgr.cli import errors
from tests.unit.rest.conftest import stack  # noqa: F401  (the fixture)
from tests.unit.test_cli import blockmgr, server  # noqa: F401  (the fixtures)


def _volume_file(stack, volume_id):  # noqa: F811
    return os.path.join(str(stack.conf.state_path), "volumes", "loopback",
                        "volume-" + volume_id)


def test_revert_by_name_waits_until_the_volume_holds_the_snapshot(blockmgr, stack):  # noqa: F811
    volume = blockmgr.json("volume", "create", "--size", "1", "--name", "v1", "--wait")
    with open(_volume_file(stack, volume["id"]), "r+b") as f:
        f.write(b"before")
    blockmgr.json("snapshot", "create", volume["id"], "--name", "s1", "--wait")
    with open(_volume_file(stack, volume["id"]), "r+b") as f:
        f.write(b"later!")
    reverted = blockmgr.json("volume", "revert", "v1", "s1", "--wait")
    assert reverted["status"] == "available" and reverted["id"] == volume["id"]
    with open(_volume_file(stack, volume["id"]), "rb") as f:
        assert f.read(6) == b"before"


def test_revert_to_an_older_snapshot_exits_1_with_the_servers_message(blockmgr):  # noqa: F811
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    old = blockmgr.json("snapshot", "create", volume["id"], "--wait")
    blockmgr.json("snapshot", "create", volume["id"], "--wait")
    refused = blockmgr("volume", "revert", volume["id"], old["id"], "--wait")
    assert refused.code == errors.EXIT_API_ERROR and refused.out == ""
    assert "not the latest" in refused.err and "HTTP 400" in refused.err
