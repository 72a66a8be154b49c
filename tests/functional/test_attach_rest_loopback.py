"""Attach a volume through the REST API of the in-process stack (scheduler, loopback volume
worker, SQLite) and consume it with os-brick's LOCAL connector, as a compute host would:
write through the device, extend it while attached (3.42: the loop device sees the new size),
refuse to delete it while attached, detach, and delete it.

With root the loopback backend attaches a loop device; without root it hands out the volume
file (``loopback_attach = file``), which the LOCAL connector consumes the same way.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from fastapi.testclient import TestClient

from tests.unit.rest.conftest import Api
from tests.unit.rest.conftest import stack  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.functional]

GiB = 1024 ** 3
V = {"OpenStack-API-Version": "volume 3.44"}


def _size(path: str) -> int:
    if path.startswith("/dev/"):
        out = subprocess.run(["blockdev", "--getsize64", path], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        return int(out.strip())
    return os.path.getsize(path)


def test_attach_with_os_brick_local_connector_extend_and_detach(stack):  # noqa: F811
    connector_mod = pytest.importorskip("os_brick.initiator.connector")
    local = connector_mod.InitiatorConnector.factory("LOCAL", root_helper=None)
    with TestClient(stack.app, raise_server_exceptions=False) as http:
        api = Api(http, "pA", version="3.44")
        volume = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
        vid = volume["id"]
        api.wait("volumes/" + vid, "volume", ("available",))

        props = {"host": "compute-1", "initiator": "iqn.2026-12.example:compute-1",
                 "multipath": False, "platform": "x86_64", "os_type": "linux"}
        response = api.post("attachments", {"attachment": {
            "volume_uuid": vid, "instance_uuid": "6a3b1e0c-1d2f-4e5a-8b7c-9d0e1f2a3b4c",
            "connector": props}}, headers=V)
        assert response.status_code == 200, response.text
        attachment = response.json()["attachment"]
        info = attachment["connection_info"]
        assert info["driver_volume_type"] == "local"
        device = local.connect_volume(info["data"])
        path = device["path"]
        try:
            assert path == info["data"]["device_path"]
            assert api.post("attachments/%s/action" % attachment["id"],
                            {"os-complete": None}, headers=V).status_code == 204
            assert api.get("volumes/" + vid).json()["volume"]["status"] == "in-use"

            with open(path, "r+b") as dev:
                dev.write(b"blockmgr attached data")
                dev.flush()
                os.fsync(dev.fileno())
            assert _size(path) == GiB

            # Nothing destructive while attached.
            response = api.delete("volumes/" + vid)
            assert response.status_code == 400
            assert "attached or reserved" in response.json()["badRequest"]["message"]

            # Online extend: the consumer's device sees the new size.
            response = api.post("volumes/%s/action" % vid, {"os-extend": {"new_size": 2}})
            assert response.status_code == 202, response.text
            body = api.wait("volumes/" + vid, "volume", ("in-use", "error_extending"))
            assert body["status"] == "in-use" and body["size"] == 2
            assert _size(path) == 2 * GiB
            with open(path, "rb") as dev:
                assert dev.read(22) == b"blockmgr attached data"
        finally:
            local.disconnect_volume(info["data"], device)
            response = api.delete("attachments/" + attachment["id"], headers=V)
            assert response.status_code == 200, response.text
        assert api.wait("volumes/" + vid, "volume", ("available",))["status"] == "available"
        if path.startswith("/dev/loop"):
            listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME"],
                                    check=True, capture_output=True, text=True,
                                    timeout=60).stdout.split()
            assert path not in listed
        assert api.delete("volumes/" + vid).status_code == 202
        api.wait("volumes/" + vid, "volume", (None,))
