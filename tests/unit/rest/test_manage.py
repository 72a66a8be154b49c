"""Manageable listings and manage-existing for volumes and snapshots (admin only), against
files dropped into the loopback backend's directory; bad input refused, nothing written."""

from __future__ import annotations

import os

from tests.unit.rest.conftest import Api
from tests.unit.rest.test_volume_actions import available
from tests.unit.rest.test_volumes import DONE, UNKNOWN, fault
from tests.unit.test_api import state_of

GiB = 1024 ** 3
HOST = "node1@loopback"


def backend_dir(stack) -> str:
    return os.path.join(str(stack.conf.state_path), "volumes", "loopback")


def drop_file(stack, name: str, size: int) -> None:
    with open(os.path.join(backend_dir(stack), name), "wb") as f:
        f.truncate(size)


def test_list_and_manage_a_volume_and_a_snapshot(api, stack):
    admin = Api(api.http, "pA", admin=True, version="3.8")
    drop_file(stack, "legacy-a", GiB + 1)
    drop_file(stack, "legacy-b", 1)
    drop_file(stack, "empty", 0)

    listed = admin.get("manageable_volumes?host=" + HOST).json()["manageable-volumes"]
    assert {e["reference"]["source-name"]: (e["size"], e["safe_to_manage"])
            for e in listed} == {"legacy-a": (2, True), "legacy-b": (1, True),
                                 "empty": (0, False)}
    assert "reason_not_safe" not in listed[0]
    detail = admin.get("manageable_volumes/detail?host=%s&sort=size:asc" % HOST).json()
    entries = detail["manageable-volumes"]
    assert [e["size"] for e in entries] == [0, 1, 2]
    assert entries[0]["reason_not_safe"] == "the file is empty"
    page = admin.get("manageable_volumes?host=%s&sort=reference:asc&limit=2" % HOST).json()
    assert [e["reference"]["source-name"] for e in page["manageable-volumes"]] == [
        "empty", "legacy-a"]
    nxt = page["manageable-volumes_links"][0]["href"].split("?", 1)[1]
    assert "marker=legacy-a" in nxt
    rest = admin.get("manageable_volumes?" + nxt).json()["manageable-volumes"]
    assert [e["reference"]["source-name"] for e in rest] == ["legacy-b"]
    legacy = admin.get("os-volume-manage?host=" + HOST).json()["manageable-volumes"]
    assert len(legacy) == 3

    response = admin.post("os-volume-manage", {"volume": {
        "host": HOST, "ref": {"source-name": "legacy-a"}, "name": "adopted",
        "description": "from before", "bootable": True, "volume_type": None,
        "availability_zone": None, "metadata": None}})
    assert response.status_code == 202, response.text
    volume = response.json()["volume"]
    assert volume["status"] == "managing" and volume["name"] == "adopted"
    managed = api.wait("volumes/" + volume["id"], "volume", ("available", "error_managing"))
    assert managed["status"] == "available" and managed["size"] == 2
    assert managed["bootable"] == "true"
    assert "legacy-a" not in os.listdir(backend_dir(stack))

    # a snapshot-like file of that volume appears in the snapshot listing
    drop_file(stack, "volume-%s@old-snap" % volume["id"], GiB)
    snaps = admin.get("manageable_snapshots/detail?host=" + HOST).json()
    (entry,) = snaps["manageable-snapshots"]
    assert entry["reference"] == {"source-name": "volume-%s@old-snap" % volume["id"]}
    assert entry["source_reference"] == {"source-name": "volume-" + volume["id"]}
    assert entry["safe_to_manage"] is True
    response = admin.post("os-snapshot-manage", {"snapshot": {
        "volume_id": volume["id"], "ref": entry["reference"], "name": "old",
        "description": None, "metadata": {}}})
    assert response.status_code == 202, response.text
    snap = response.json()["snapshot"]
    assert api.wait("snapshots/" + snap["id"], "snapshot", DONE)["status"] == "available"
    assert admin.get("manageable_snapshots?host=" + HOST).json()[
        "manageable-snapshots"] == []


def test_manage_calls_are_for_admins_and_bad_input_writes_nothing(api, other_api, stack):
    admin = Api(api.http, "pA", admin=True, version="3.8")
    vid = available(api)
    drop_file(stack, "legacy", GiB)
    good = {"host": HOST, "ref": {"source-name": "legacy"}}
    before = state_of(stack.db)

    for response in [api.get("manageable_volumes?host=" + HOST),
                     api.get("manageable_snapshots/detail?host=" + HOST),
                     api.post("os-volume-manage", {"volume": good}),
                     api.post("os-snapshot-manage", {"snapshot": {
                         "volume_id": vid, "ref": {"source-name": "legacy"}}})]:
        assert "role 'admin' needed" in fault(response, 403)

    for body, status, expected in [
        ({"volume": {"ref": {"source-name": "legacy"}}}, 400, "volume.host: Field required"),
        ({"volume": {"host": HOST}}, 400, "volume.ref: Field required"),
        ({"volume": dict(good, host="node1")}, 400, "host must look like host@backend"),
        ({"volume": dict(good, host=7)}, 400, "volume.host"),
        ({"volume": dict(good, host="elsewhere@lvm")}, 404, "elsewhere@lvm"),
        ({"volume": dict(good, ref="legacy")}, 400, "volume.ref"),
        ({"volume": dict(good, ref={})}, 400, "volume.ref"),
        ({"volume": dict(good, ref={"source-name": 5})}, 400, "volume.ref.source-name"),
        ({"volume": dict(good, ref={"name": "legacy"})}, 400, "source-name"),
        ({"volume": dict(good, ref={"source-name": "volume-" + vid})}, 400,
         "already managed"),
        ({"volume": dict(good, bootable="yes")}, 400, "volume.bootable"),
        ({"volume": dict(good, volume_type="gold")}, 400, "volume types are not supported"),
        ({"volume": dict(good, metadata={"a": "b"})}, 400, "metadata is not supported"),
        ({"volume": dict(good, cluster="c1")}, 400, "volume.cluster: unknown field"),
        ({"volume": dict(good, name="n" * 300)}, 400, "volume.name"),
        (good, 400, "volume: Field required"),
    ]:
        assert expected in fault(admin.post("os-volume-manage", body), status), body

    snap_ref = {"source-name": "volume-%s@x" % vid}
    for body, status, expected in [
        ({"snapshot": {"ref": snap_ref}}, 400, "snapshot.volume_id: Field required"),
        ({"snapshot": {"volume_id": "nope", "ref": snap_ref}}, 400, "snapshot.volume_id"),
        ({"snapshot": {"volume_id": UNKNOWN, "ref": snap_ref}}, 404, "could not be found"),
        ({"snapshot": {"volume_id": vid}}, 400, "snapshot.ref: Field required"),
        ({"snapshot": {"volume_id": vid, "ref": ["x"]}}, 400, "snapshot.ref"),
        ({"snapshot": {"volume_id": vid, "ref": snap_ref, "size": 1}}, 400,
         "snapshot.size: unknown field"),
    ]:
        assert expected in fault(admin.post("os-snapshot-manage", body), status), body

    for query, status, expected in [
        ("manageable_volumes", 400, "host"),
        ("manageable_volumes?host=node1", 400, "host must look like host@backend"),
        ("manageable_volumes?host=%s&sort=colour" % HOST, 400, "sort keys must be among"),
        ("manageable_volumes?host=%s&limit=-1" % HOST, 400, "limit"),
        ("manageable_volumes?host=%s&marker=no-such-file" % HOST, 400, "marker"),
        ("manageable_volumes?host=%s&cluster=c" % HOST, 400, "cannot filter"),
        ("manageable_snapshots?host=%s&offset=x" % HOST, 400, "offset"),
    ]:
        assert expected in fault(admin.get(query), status), query

    # a non-admin of another project is stopped at the admin gate, before any lookup
    intruder = Api(api.http, "pB")
    assert fault(intruder.post("os-snapshot-manage", {"snapshot": {
        "volume_id": vid, "ref": snap_ref}}), 403)
    assert state_of(stack.db) == before
