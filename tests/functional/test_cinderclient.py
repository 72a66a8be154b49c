"""The real python-cinderclient, in noauth mode, against blockmgr's REST API served over
HTTP by uvicorn (:class:`blockmgr.api.rest.server.ApiServer`) on the all-in-one stack:
version discovery, volume create / list / show / rename / extend / delete, snapshot
create / delete, manage / unmanage of a volume and of a snapshot, and error mapping.

noauth makes a caller that states no roles an admin, as Cinder's noauth does (that is
what cinderclient's noauth plugin and CLI send); the project clients here state
``X-Roles: member`` through their keystoneauth session, as a deployment behind an
authenticating proxy would, so that project isolation and admin-only calls are exercised.
The CLI is also run as a subprocess against ``--os-endpoint http://HOST:PORT/v3``, the URL
without a project id (microversion 3.67) that it uses in noauth mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("cinderclient")

from cinderclient import api_versions                    # noqa: E402
from cinderclient import client as cinder_client         # noqa: E402
from cinderclient import exceptions as cinder_exc        # noqa: E402
from cinderclient import utils as cinder_utils           # noqa: E402
from cinderclient.contrib import noauth                  # noqa: E402
from keystoneauth1 import session as ksa_session         # noqa: E402

from blockmgr.api.rest.server import ApiServer           # noqa: E402
from tests.unit.rest.conftest import stack               # noqa: E402,F401

HOST = "node1@loopback"
UNKNOWN = "8a1f0c1e-0000-4000-8000-000000000000"


@pytest.fixture
def server(stack):  # noqa: F811
    srv = ApiServer(stack.app, "127.0.0.1", 0).start()
    yield srv
    assert srv.stop()


def cinder(server, project: str, *, admin: bool = False, version: str = "3.14"):
    auth = noauth.CinderNoAuthPlugin("u-" + project, project, endpoint=server.url + "/v3")
    session = ksa_session.Session(
        auth=auth, additional_headers={"X-Roles": "admin" if admin else "member"})
    return cinder_client.Client(version, session=session)


def wait(get, resource_id, statuses=("available", "error"), timeout=30.0):
    """Poll until the status is in ``statuses`` (None in it: until it is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            item = get(resource_id)
        except cinder_exc.NotFound:
            if None in statuses:
                return None
            raise
        if item.status in statuses:
            return item
        assert time.monotonic() < deadline, "still %s" % item.status
        time.sleep(0.05)


def test_cinderclient_drives_volumes_snapshots_and_manage(server, stack):  # noqa: F811
    c = cinder(server, "pA")
    discovered = api_versions.discover_version(c, api_versions.APIVersion("3.14"))
    assert discovered.get_string() == "3.14"

    vol = c.volumes.create(1, name="data", description="made by cinderclient")
    assert vol.status == "creating" and vol.size == 1
    vol = wait(c.volumes.get, vol.id)
    assert vol.status == "available" and vol.name == "data" and vol.bootable == "false"
    assert vol.group_id is None                                   # 3.13+ attribute
    assert [v.id for v in c.volumes.list()] == [vol.id]
    assert [v.name for v in c.volumes.list(detailed=False)] == ["data"]
    assert cinder_utils.find_volume(c, "data").id == vol.id       # lookup by name
    assert [v.id for v in c.volumes.list(search_opts={"status": "error"})] == []

    c.volumes.update(vol, name="renamed")
    assert c.volumes.get(vol.id).name == "renamed"
    c.volumes.extend(vol, 2)
    assert wait(c.volumes.get, vol.id, ("available", "error_extending")).size == 2

    second = c.volumes.create(1, name="second")
    wait(c.volumes.get, second.id)
    paged = c.volumes.list(limit=1, sort="name:asc")
    assert [v.name for v in paged] == ["renamed"]
    assert [v.name for v in c.volumes.list(sort="name:desc")] == ["second", "renamed"]

    snap = c.volume_snapshots.create(vol.id, name="snap")
    assert wait(c.volume_snapshots.get, snap.id).status == "available"
    assert [s.id for s in c.volume_snapshots.list()] == [snap.id]
    c.volume_snapshots.delete(snap)
    assert wait(c.volume_snapshots.get, snap.id, (None, "error_deleting")) is None

    with pytest.raises(cinder_exc.NotFound):
        c.volumes.get(UNKNOWN)
    with pytest.raises(cinder_exc.BadRequest) as err:
        c.volumes.create(0)
    assert "size" in str(err.value)
    with pytest.raises(cinder_exc.Forbidden):                  # manage needs an admin
        c.volumes.list_manageable(HOST)

    # --- manage / unmanage (admin) ---------------------------------------------------------
    admin = cinder(server, "pA", admin=True)
    admin.volumes.unmanage(second)
    assert wait(c.volumes.get, second.id, (None, "error_unmanaging")) is None
    listed = admin.volumes.list_manageable(HOST, detailed=True)
    refs = {m.reference["source-name"]: m for m in listed}
    assert refs["unmanaged-volume-" + second.id].safe_to_manage is True
    adopted = admin.volumes.manage(HOST, {"source-name": "unmanaged-volume-" + second.id},
                                   name="adopted")
    adopted = wait(c.volumes.get, adopted.id, ("available", "error_managing"))
    assert adopted.status == "available" and adopted.size == 1 and adopted.name == "adopted"

    snap = c.volume_snapshots.create(adopted.id, name="to-unmanage")
    wait(c.volume_snapshots.get, snap.id)
    admin.volume_snapshots.unmanage(snap)
    assert wait(c.volume_snapshots.get, snap.id, (None, "error_deleting")) is None
    snaps = admin.volume_snapshots.list_manageable(HOST, detailed=False)
    (entry,) = snaps
    assert entry.source_reference == {"source-name": "volume-" + adopted.id}
    managed = admin.volume_snapshots.manage(adopted.id, entry.reference, name="back")
    assert wait(c.volume_snapshots.get, managed.id).status == "available"

    # --- delete (cascade through the API) ------------------------------------------------
    c.volumes.delete(adopted, cascade=True)
    c.volumes.delete(vol)
    for volume_id in (adopted.id, vol.id):
        assert wait(c.volumes.get, volume_id, (None, "error_deleting")) is None
    assert c.volumes.list() == []
    directory = os.path.join(str(stack.conf.state_path), "volumes", "loopback")
    assert not [n for n in os.listdir(directory) if n.startswith(("volume-", "snapshot-"))]


def test_another_project_cannot_see_or_touch_volumes(server):
    mine, theirs = cinder(server, "pA"), cinder(server, "pB")
    vol = mine.volumes.create(1)
    with pytest.raises(cinder_exc.NotFound):
        theirs.volumes.get(vol.id)
    with pytest.raises(cinder_exc.NotFound):
        theirs.volumes.delete(vol.id)
    assert theirs.volumes.list() == []
    wait(mine.volumes.get, vol.id)
    mine.volumes.delete(vol)
    wait(mine.volumes.get, vol.id, (None,))


def test_api_server_reports_a_busy_port_at_start(server, stack):  # noqa: F811
    with pytest.raises(OSError):
        ApiServer(stack.app, "127.0.0.1", server.port).start()


def cinder_cli(server, *args: str, project: str = "pA", version: str | None = None) -> str:
    """Run the ``cinder`` CLI in noauth mode against ``server``'s project-less endpoint;
    its stdout (the test fails with stderr when it exits non-zero)."""
    command = [os.path.join(os.path.dirname(sys.executable), "cinder"),
               "--os-auth-type", "noauth", "--os-user-id", "u-" + project,
               "--os-project-id", project, "--os-endpoint", server.url + "/v3"]
    if version:
        command += ["--os-volume-api-version", version]
    result = subprocess.run(command + list(args), capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, OS_AUTH_URL=""))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_cinder_cli_against_the_project_less_endpoint(server):
    created = cinder_cli(server, "create", "--name", "cli-vol", "1")
    assert "cli-vol" in created
    c = cinder(server, "pA")
    (vol,) = c.volumes.list()
    assert vol.name == "cli-vol"
    wait(c.volumes.get, vol.id)
    assert "cli-vol" in cinder_cli(server, "list")
    assert vol.id in cinder_cli(server, "show", "cli-vol")
    # noauth without roles is an admin: the operator's calls work from the CLI.
    services = cinder_cli(server, "service-list")
    assert "blockmgr-volume" in services and HOST in services
    pools = cinder_cli(server, "get-pools", "--detail")
    assert HOST + "#" in pools and "total_capacity_gb" in pools
    assert "nova" in cinder_cli(server, "availability-zone-list")
    assert "cli-vol" not in cinder_cli(server, "manageable-list", HOST)
    cinder_cli(server, "delete", vol.id)
    assert wait(c.volumes.get, vol.id, (None, "error_deleting")) is None


def test_cinderclient_library_against_the_project_less_endpoint(server):
    from keystoneauth1 import token_endpoint

    session = ksa_session.Session(
        auth=token_endpoint.Token(server.url + "/v3", "u-pA:pA"),
        additional_headers={"X-Roles": "member"})
    bare = cinder_client.Client("3.14", session=session)
    vol = bare.volumes.create(1, name="bare")
    assert [v.id for v in cinder(server, "pA").volumes.list()] == [vol.id]
    assert bare.volumes.get(vol.id).name == "bare"
    wait(bare.volumes.get, vol.id)
    bare.volumes.delete(vol)
    assert wait(bare.volumes.get, vol.id, (None, "error_deleting")) is None


def test_cinderclient_at_the_latest_microversion(server):
    c = cinder(server, "pA", version="3.71")
    assert api_versions.discover_version(
        c, api_versions.APIVersion("3.71")).get_string() == "3.71"
    vol = wait(c.volumes.get, c.volumes.create(1, name="latest").id)
    assert vol.consumes_quota is True and vol.shared_targets is False
    snap = c.volume_snapshots.create(vol.id, name="s")          # no force needed (3.66)
    assert wait(c.volume_snapshots.get, snap.id).user_id == "u-pA"
    summary = c.volumes.summary(all_tenants=False)["volume-summary"]
    assert summary["total_count"] == 1 and summary["total_size"] == 1
    filters = {f.resource: f.filters for f in c.resource_filters.list()}
    assert "availability_zone" in filters["volume"]
    assert [z.zoneName for z in c.availability_zones.list()] == ["nova"]
    admin = cinder(server, "pA", admin=True, version="3.71")
    (pool,) = admin.pools.list(detailed=True)
    assert pool.name.startswith(HOST + "#") and pool.total_capacity_gb
    services = admin.services.list(binary="blockmgr-volume")
    assert [s.backend_state for s in services] == ["up"]
    c.volume_snapshots.delete(snap)
    wait(c.volume_snapshots.get, snap.id, (None,))
    c.volumes.delete(vol)
    wait(c.volumes.get, vol.id, (None,))


def test_cinder_cli_volume_types_and_service_disable(server, stack):  # noqa: F811
    admin = cinder(server, "pA", admin=True, version="3.71")
    (pool,) = admin.pools.list(detailed=True)
    created = cinder_cli(server, "type-create", "--description", "fast disks", "gold")
    assert "gold" in created and "fast disks" in created
    cinder_cli(server, "type-key", "gold", "set",
               "volume_backend_name=%s" % pool.volume_backend_name)
    listed = cinder_cli(server, "type-list")
    assert "gold" in listed and "__DEFAULT__" in listed
    assert "volume_backend_name" in cinder_cli(server, "extra-specs-list")
    c = cinder(server, "pA", version="3.71")
    vol = c.volumes.create(1, name="typed", volume_type="gold")
    vol = wait(c.volumes.get, vol.id)
    assert vol.status == "available" and vol.volume_type == "gold"
    plain = wait(c.volumes.get, c.volumes.create(1, name="plain").id)
    assert plain.volume_type == "__DEFAULT__"
    gold = admin.volume_types.find(name="gold")
    with pytest.raises(cinder_exc.BadRequest) as err:          # in use
        admin.volume_types.delete(gold)
    assert "used by" in str(err.value)
    with pytest.raises(cinder_exc.BadRequest):
        c.volumes.create(1, volume_type="no-such-type")

    # A disabled backend gets no new volumes until it is enabled again.
    disabled = cinder_cli(server, "service-disable", "--reason", "maintenance", HOST,
                          "blockmgr-volume")
    assert "disabled" in disabled and "maintenance" in disabled
    assert "maintenance" in cinder_cli(server, "service-list")
    stack.scheduler.manager.live.get(fresh=True)
    refused = wait(c.volumes.get, c.volumes.create(1, name="refused").id)
    assert refused.status == "error"
    assert "enabled" in cinder_cli(server, "service-enable", HOST, "blockmgr-volume")
    stack.scheduler.manager.live.get(fresh=True)
    assert wait(c.volumes.get, c.volumes.create(1, name="placed").id).status == "available"

    for volume in c.volumes.list():
        c.volumes.delete(volume)
        wait(c.volumes.get, volume.id, (None,))
    cinder_cli(server, "type-delete", "gold")
    assert "gold" not in cinder_cli(server, "type-list")
