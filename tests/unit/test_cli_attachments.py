"""``blockmgr attachment ...`` and the admin commands ``volume|snapshot reset-state``,
``force-delete``, ``volume force-detach`` against the real HTTP server of the in-process
stack (loopback backend)."""

from __future__ import annotations

import json

from blockmgr.db import models
from blockmgr.db import repository
from tests.unit.rest.conftest import stack  # noqa: F401  (the fixture)
from tests.unit.test_cli import Cli
from tests.unit.test_cli import blockmgr  # noqa: F401  (the fixture)
from tests.unit.test_cli import server  # noqa: F401  (the fixture)


def test_attach_complete_and_detach(blockmgr):  # noqa: F811
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    created = blockmgr.json("attachment", "create", volume["id"], "--connector",
                            json.dumps({"host": "cli-host"}))
    assert created["status"] == "attaching"
    assert created["connection_info"]["driver_volume_type"] == "local"
    assert blockmgr.json("attachment", "complete", created["id"])["status"] == "attached"
    assert blockmgr.json("volume", "show", volume["id"])["status"] == "in-use"
    listed = blockmgr.json("attachment", "list", "--volume", volume["id"])
    assert [a["id"] for a in listed] == [created["id"]]
    refused = blockmgr("volume", "delete", volume["id"])
    assert refused.code != 0 and "attached or reserved" in refused.err
    detached = blockmgr.json("attachment", "delete", created["id"], "--wait")
    assert detached["status"] == "available"
    bad = blockmgr("attachment", "create", volume["id"], "--connector", "[1]")
    assert bad.code != 0 and "JSON object" in bad.err


def test_admin_reset_state_force_detach_and_force_delete(blockmgr, server, stack):  # noqa: F811
    admin = Cli(server.url, "pA", "--admin")
    volume = blockmgr.json("volume", "create", "--size", "1", "--wait")
    with stack.db.writer() as session:
        repository.transition(session, models.Volume, volume["id"], "extending")
        repository.transition(session, models.Volume, volume["id"], "error_extending")
    refused = blockmgr("volume", "reset-state", volume["id"], "--state", "available")
    assert refused.code != 0 and "admin" in refused.err
    reset = admin.json("volume", "reset-state", volume["id"], "--state", "available")
    assert reset["status"] == "available"

    attachment = blockmgr.json("attachment", "create", volume["id"], "--connector",
                               json.dumps({"host": "cli-host"}))
    detached = admin.json("volume", "force-detach", volume["id"], "--attachment",
                          attachment["id"], "--wait")
    assert detached["status"] == "available"

    snapshot = blockmgr.json("snapshot", "create", volume["id"], "--wait")
    assert admin.json("snapshot", "reset-state", snapshot["id"], "--state",
                      "error")["status"] == "error"
    assert admin("snapshot", "force-delete", snapshot["id"], "--wait").code == 0
    assert admin("volume", "force-delete", volume["id"], "--wait").code == 0
    assert blockmgr("volume", "show", volume["id"]).code != 0
