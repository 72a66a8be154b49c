"""``blockmgr type ...`` and ``blockmgr volume create --type`` against the real stack."""

from __future__ import annotations

from blockmgr.cli import errors
from tests.unit.rest.conftest import stack  # noqa: F401  (the fixture)
from tests.unit.test_cli import Cli
from tests.unit.test_cli import blockmgr  # noqa: F401  (the fixture)
from tests.unit.test_cli import server  # noqa: F401  (the fixture)


def test_type_create_list_show_use_and_delete(blockmgr, server):  # noqa: F811
    admin = Cli(server.url, "pA", "--admin")
    created = admin.json("type", "create", "gold", "--description", "fast",
                            "--property", "k=v", "--property", "tier=1")
    assert created["name"] == "gold" and created["is_public"] is True
    assert created["extra_specs"] == {"k": "v", "tier": "1"}
    listed = blockmgr("type", "list")
    assert listed.code == 0 and "gold" in listed.out and "__DEFAULT__" in listed.out
    assert "k=v, tier=1" in listed.out
    assert blockmgr.json("type", "show", "gold")["id"] == created["id"]
    assert blockmgr.json("type", "show", created["id"])["name"] == "gold"

    volume = blockmgr.json("volume", "create", "--size", "1", "--type", "gold", "--wait")
    assert volume["volume_type"] == "gold" and volume["status"] == "available"
    plain = blockmgr.json("volume", "create", "--size", "1")
    assert plain["volume_type"] == "__DEFAULT__"
    unknown = blockmgr("volume", "create", "--size", "1", "--type", "nope")
    assert unknown.code == errors.EXIT_API_ERROR and "does not exist" in unknown.err

    in_use = admin("type", "delete", "gold")
    assert in_use.code == errors.EXIT_API_ERROR and "used by 1 volume" in in_use.err
    assert blockmgr("volume", "delete", volume["id"], "--wait").code == 0
    deleted = admin("type", "delete", "gold")
    assert deleted.code == 0, deleted
    assert "gold" not in blockmgr("type", "list").out
    assert blockmgr("type", "show", "gold").code == errors.EXIT_API_ERROR


def test_private_types_and_admin_only_changes(blockmgr, server):  # noqa: F811
    admin = Cli(server.url, "pA", "--admin")
    secret = admin.json("type", "create", "secret", "--private")
    assert secret["is_public"] is False
    assert "secret" not in admin("type", "list").out
    assert "secret" in admin("type", "list", "--all").out
    refused = blockmgr("type", "create", "mine")
    assert refused.code == errors.EXIT_API_ERROR and "403" in refused.err
    assert "secret" not in blockmgr("type", "list").out
    assert "mine" not in admin("type", "list", "--all").out
