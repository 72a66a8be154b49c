"""Revert to snapshot with the real python-cinderclient (microversion 3.40): its library call
and its CLI command ``revert-to-snapshot`` against blockmgr served over HTTP, on the
all-in-one stack with the loopback backend."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("cinderclient")

from cinderclient import exceptions as cinder_exc          # noqa: E402

from tests.functional.test_cinderclient import cinder, cinder_cli, server, wait  # noqa: E402,F401
from tests.unit.rest.conftest import stack                 # noqa: E402,F401


def _path(stack, volume_id):  # noqa: F811
    return os.path.join(str(stack.conf.state_path), "volumes", "loopback",
                        "volume-" + volume_id)


def _write(stack, volume_id, data):  # noqa: F811
    with open(_path(stack, volume_id), "r+b") as f:
        f.write(data)


def _read(stack, volume_id, length):  # noqa: F811
    with open(_path(stack, volume_id), "rb") as f:
        return f.read(length)


def test_cinderclient_reverts_a_volume_to_its_latest_snapshot(server, stack):  # noqa: F811
    c = cinder(server, "pA", version="3.40")
    vol = wait(c.volumes.get, c.volumes.create(1, name="r").id)
    _write(stack, vol.id, b"first")
    old = wait(c.volume_snapshots.get, c.volume_snapshots.create(vol.id).id)
    _write(stack, vol.id, b"later")
    snap = wait(c.volume_snapshots.get, c.volume_snapshots.create(vol.id).id)
    _write(stack, vol.id, b"third")

    with pytest.raises(cinder_exc.BadRequest, match="not the latest"):
        c.volumes.revert_to_snapshot(vol, old)
    c.volumes.revert_to_snapshot(vol, snap)
    assert wait(c.volumes.get, vol.id).status == "available"
    assert _read(stack, vol.id, 5) == b"later"
    assert c.volume_snapshots.get(snap.id).status == "available"


def test_cinder_cli_revert_to_snapshot(server, stack):  # noqa: F811
    c = cinder(server, "pA", version="3.40")
    vol = wait(c.volumes.get, c.volumes.create(1, name="cli-r").id)
    _write(stack, vol.id, b"kept")
    snap = wait(c.volume_snapshots.get, c.volume_snapshots.create(vol.id, name="cli-s").id)
    _write(stack, vol.id, b"lost")
    cinder_cli(server, "revert-to-snapshot", "cli-s", version="3.40")
    assert wait(c.volumes.get, vol.id).status == "available"
    assert _read(stack, vol.id, 4) == b"kept"
    assert snap.id in cinder_cli(server, "snapshot-list", version="3.40")
