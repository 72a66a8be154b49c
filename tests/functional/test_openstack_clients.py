"""The real openstacksdk (``block_storage`` proxy) and openstackclient (``openstack volume
...`` as a subprocess) against blockmgr's REST API served over HTTP by uvicorn on the
all-in-one stack, with no authentication.

Both clients are pointed at the endpoint with the project id in it
(``http://HOST:PORT/v3/PROJECT``): with ``auth_type=none`` keystoneauth sends no token and
no project, so the project comes from the URL, and noauth makes the caller an admin (as
Cinder's noauth does). openstacksdk: ``Connection(auth_type="none",
block_storage_endpoint_override=...)``; openstackclient: ``--os-auth-type none
--os-endpoint ... --os-volume-api-version 3.x``.

What openstackclient cannot do without Keystone: ``openstack quota show PROJECT`` resolves
the project name through the identity API (``GET /v3/projects?name=...``), which blockmgr
does not serve (a ``404``), and without a project name there is no project in a token to
fall back on; quotas are covered through openstacksdk, which takes the project id as is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

openstack = pytest.importorskip("openstack")

from keystoneauth1 import noauth as ksa_noauth           # noqa: E402
from keystoneauth1 import session as ksa_session         # noqa: E402
from openstack import exceptions as os_exc                # noqa: E402

from blockmgr.api.rest.server import ApiServer           # noqa: E402
from tests.unit.rest.conftest import stack               # noqa: E402,F401

PROJECT = "pA"
HOST = "node1@loopback"
OPENSTACK = os.path.join(os.path.dirname(sys.executable), "openstack")


@pytest.fixture
def server(stack):  # noqa: F811
    srv = ApiServer(stack.app, "127.0.0.1", 0).start()
    yield srv
    assert srv.stop()


def sdk(server, project: str = PROJECT, *, roles: str | None = None):
    """The ``block_storage`` proxy of a Connection without authentication; ``roles``
    states the caller's roles (``X-Roles``, as an authenticating front end would), else
    noauth makes it an admin."""
    endpoint = "%s/v3/%s" % (server.url, project)
    if roles is None:
        conn = openstack.connection.Connection(
            auth_type="none", block_storage_endpoint_override=endpoint,
            block_storage_api_version="3")
    else:
        session = ksa_session.Session(auth=ksa_noauth.NoAuth(endpoint=endpoint),
                                      additional_headers={"X-Roles": roles})
        conn = openstack.connection.Connection(
            session=session, block_storage_endpoint_override=endpoint,
            block_storage_api_version="3")
    return conn.block_storage


def wait_gone(get, resource_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            item = get(resource_id)
        except os_exc.NotFoundException:
            return
        assert item.status in ("deleting", "unmanaging", "available"), item.status
        assert time.monotonic() < deadline, "still %s" % item.status
        time.sleep(0.05)


def test_openstacksdk_block_storage_proxy(server, stack):  # noqa: F811
    bs = sdk(server)
    assert bs.get_endpoint() == "%s/v3/%s" % (server.url, PROJECT)

    # --- volumes ---------------------------------------------------------------------------
    vol = bs.create_volume(size=1, name="sdk-vol", description="made by openstacksdk")
    assert vol.status == "creating"
    vol = bs.wait_for_status(vol, "available", failures=["error"], wait=30, interval=0.1)
    assert vol.size == 1 and vol.volume_type == "__DEFAULT__"
    assert vol.host == HOST + "#loopback"                       # admin-only attribute
    assert [v.id for v in bs.volumes()] == [vol.id]
    assert [v.id for v in bs.volumes(name="sdk-vol")] == [vol.id]
    assert list(bs.volumes(status="error")) == []
    assert bs.find_volume("sdk-vol").id == vol.id
    bs.update_volume(vol, name="renamed")
    assert bs.get_volume(vol.id).name == "renamed"
    bs.extend_volume(vol, 2)
    vol = bs.wait_for_status(bs.get_volume(vol.id), "available", failures=["error_extending"],
                             wait=30, interval=0.1)
    assert vol.size == 2

    # --- snapshots and revert --------------------------------------------------------------
    snap = bs.create_snapshot(volume_id=vol.id, name="sdk-snap")
    snap = bs.wait_for_status(snap, "available", failures=["error"], wait=30, interval=0.1)
    assert snap.volume_id == vol.id and snap.size == 2
    assert [s.id for s in bs.snapshots()] == [snap.id]
    assert bs.find_snapshot("sdk-snap").id == snap.id
    bs.revert_volume_to_snapshot(vol, snap)
    vol = bs.wait_for_status(bs.get_volume(vol.id), "available", failures=["error"],
                             wait=30, interval=0.1)
    bs.delete_snapshot(snap)
    wait_gone(bs.get_snapshot, snap.id)

    # --- types, zones ----------------------------------------------------------------------
    assert [t.name for t in bs.types()] == ["__DEFAULT__"]
    gold = bs.create_type(name="gold", extra_specs={"volume_backend_name": "loopback"})
    assert bs.get_type(gold.id).extra_specs == {"volume_backend_name": "loopback"}
    assert sorted(t.name for t in bs.types()) == ["__DEFAULT__", "gold"]
    typed = bs.create_volume(size=1, name="gold-vol", volume_type="gold")
    typed = bs.wait_for_status(typed, "available", failures=["error"], wait=30, interval=0.1)
    assert typed.volume_type == "gold"
    assert [(z.name, z.state) for z in bs.availability_zones()] == [
        ("nova", {"available": True})]
    with pytest.raises(os_exc.BadRequestException):
        bs.create_volume(size=1, availability_zone="nowhere")

    # --- services, pools, limits, quotas (admin) -------------------------------------------
    services = {(s.binary, s.host): s for s in bs.services()}
    assert services[("blockmgr-volume", HOST)].state == "up"
    assert ("blockmgr-scheduler", "node1") in services
    pools = list(bs.backend_pools())
    assert [p.name for p in pools] == [HOST + "#loopback"]
    limits = bs.get_limits()
    assert limits.absolute.total_volumes_used == 2
    assert limits.absolute.total_gigabytes_used == 3
    quota = bs.get_quota_set(PROJECT, usage=True)
    assert quota.usage["volumes"] == 2 and quota.volumes == 10
    bs.update_quota_set(PROJECT, volumes=5)
    assert bs.get_quota_set(PROJECT).volumes == 5
    bs.revert_quota_set(PROJECT)
    assert bs.get_quota_set(PROJECT).volumes == 10

    # --- manage / unmanage -----------------------------------------------------------------
    bs.unmanage_volume(typed)
    wait_gone(bs.get_volume, typed.id)
    # openstacksdk sends no microversion for manageable listings (3.8+), which are
    # therefore a 404 naming 3.8; managing itself (/os-volume-manage) is at every version.
    with pytest.raises(os_exc.NotFoundException, match="3.8"):
        list(bs.manageable_volumes(host=HOST))
    adopted = bs.manage_volume(host=HOST, ref={"source-name": "unmanaged-volume-" + typed.id},
                               name="adopted")
    adopted = bs.wait_for_status(adopted, "available", failures=["error_managing"], wait=30,
                                 interval=0.1)
    assert adopted.size == 1

    # --- errors and delete -----------------------------------------------------------------
    with pytest.raises(os_exc.NotFoundException):
        bs.get_volume("8a1f0c1e-0000-4000-8000-000000000000")
    with pytest.raises(os_exc.BadRequestException):
        bs.create_volume(size=0)
    for volume in (vol, adopted):
        bs.delete_volume(volume)
    for volume in (vol, adopted):
        wait_gone(bs.get_volume, volume.id)
    bs.delete_type(gold)
    assert [t.name for t in bs.types()] == ["__DEFAULT__"]
    assert list(bs.volumes()) == []


def test_openstacksdk_sees_one_project_only(server):
    mine, theirs = sdk(server, "pA", roles="member"), sdk(server, "pB", roles="member")
    vol = mine.create_volume(size=1)
    assert list(theirs.volumes()) == []
    with pytest.raises(os_exc.NotFoundException):
        theirs.get_volume(vol.id)
    with pytest.raises(os_exc.ForbiddenException):               # admin only
        list(theirs.services())
    mine.wait_for_status(vol, "available", failures=["error"], wait=30, interval=0.1)
    mine.delete_volume(vol)
    wait_gone(mine.get_volume, vol.id)


def osc(server, *args, version: str = "3.71", check: bool = True):
    """``openstack --os-auth-type none --os-endpoint URL ARGS -f json`` (when listing or
    showing); returns the parsed JSON, or the completed process when ``check`` is false."""
    cmd = [OPENSTACK, "--os-auth-type", "none", "--os-endpoint",
           "%s/v3/%s" % (server.url, PROJECT), "--os-volume-api-version", version, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OS_CLOUD="", HOME=os.environ.get(
                                "HOME", "/tmp")))
    if not check:
        return result
    assert result.returncode == 0, (cmd, result.stdout, result.stderr)
    return json.loads(result.stdout) if "-f" in args else result.stdout


def osc_wait(server, kind: str, name: str, statuses=("available",), timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        shown = osc(server, kind, "show", name, "-f", "json") if kind == "volume" else \
            osc(server, "volume", "snapshot", "show", name, "-f", "json")
        if shown["status"] in statuses:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def test_openstackclient_volume_commands(server):
    created = osc(server, "volume", "create", "--size", "1", "--description", "from osc",
                  "osc-vol", "-f", "json")
    assert created["status"] == "creating" and created["size"] == 1
    shown = osc_wait(server, "volume", "osc-vol")
    assert shown["type"] == "__DEFAULT__"
    listed = osc(server, "volume", "list", "-f", "json")
    assert [(v["Name"], v["Status"], v["Size"]) for v in listed] == [
        ("osc-vol", "available", 1)]
    osc(server, "volume", "set", "--name", "osc-renamed", "osc-vol")
    osc(server, "volume", "set", "--size", "2", "osc-renamed")
    assert osc_wait(server, "volume", "osc-renamed")["size"] == 2

    osc(server, "volume", "snapshot", "create", "--volume", "osc-renamed", "osc-snap",
        "-f", "json")
    osc_wait(server, "snapshot", "osc-snap")
    snaps = osc(server, "volume", "snapshot", "list", "-f", "json")
    assert [s["Name"] for s in snaps] == ["osc-snap"]

    osc(server, "volume", "type", "create", "--property", "volume_backend_name=loopback",
        "silver", "-f", "json")
    types = osc(server, "volume", "type", "list", "-f", "json")
    assert sorted(t["Name"] for t in types) == ["__DEFAULT__", "silver"]
    zones = osc(server, "availability", "zone", "list", "--volume", "-f", "json")
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones] == [("nova", "available")]
    services = osc(server, "volume", "service", "list", "-f", "json")
    assert {(s["Binary"], s["Host"], s["State"]) for s in services} == {
        ("blockmgr-scheduler", "node1", "up"), ("blockmgr-volume", HOST, "up")}
    limits = {row["Name"]: row["Value"]
              for row in osc(server, "limits", "show", "--absolute", "-f", "json")}
    assert limits["total_volumes_used"] == 1 and limits["total_gigabytes_used"] == 4  # volume + snapshot

    # A name resolved through Keystone's API, which blockmgr does not serve.
    refused = osc(server, "quota", "show", PROJECT, check=False)
    assert refused.returncode != 0 and "/projects" in refused.stderr

    osc(server, "volume", "snapshot", "delete", "osc-snap")
    deadline = time.monotonic() + 30
    while osc(server, "volume", "snapshot", "list", "-f", "json"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    osc(server, "volume", "delete", "osc-renamed")
    refused = osc(server, "volume", "show", "no-such-volume", check=False)
    assert refused.returncode != 0 and "No Volume found for no-such-volume" in refused.stderr
    while osc(server, "volume", "list", "-f", "json"):
        assert time.monotonic() < deadline + 30
        time.sleep(0.2)
    osc(server, "volume", "type", "delete", "silver")
    assert [t["Name"] for t in osc(server, "volume", "type", "list", "-f", "json")] == [
        "__DEFAULT__"]


def test_openstacksdk_groups_and_their_reset(server):
    bs = sdk(server)
    group = bs.create_group(name="sdk-group", group_type="any", volume_types=["__DEFAULT__"])
    group = bs.wait_for_status(group, "available", failures=["error"], wait=30, interval=0.1)
    vol = bs.create_volume(size=1, group_id=group.id)
    bs.wait_for_status(vol, "available", failures=["error"], wait=30, interval=0.1)
    gsnap = bs.create_group_snapshot(group_id=group.id, name="sdk-gsnap")
    gsnap = bs.wait_for_status(gsnap, "available", failures=["error"], wait=30,
                               interval=0.1)
    bs.reset_group_snapshot_status(gsnap, "error")
    assert bs.get_group_snapshot(gsnap.id).status == "error"
    bs.reset_group_status(group, "error")
    assert bs.get_group(group.id).status == "error"
    bs.reset_group_status(group, "available")
    bs.delete_group_snapshot(gsnap)
    wait_gone(bs.get_group_snapshot, gsnap.id)
    bs.delete_group(group, delete_volumes=True)
    wait_gone(bs.get_group, group.id)
    assert list(bs.volumes()) == []
