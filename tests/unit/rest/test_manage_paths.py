"""``POST /manageable_volumes`` and ``POST /manageable_snapshots``: Cinder's 3.8 paths of
``/os-volume-manage`` and ``/os-snapshot-manage`` (openstacksdk's ``manage_volume`` posts
there), a ``404`` naming 3.8 below it."""

from __future__ import annotations

from tests.unit.rest.conftest import Api
from tests.unit.rest.test_manage import HOST, GiB, drop_file


def test_manage_at_the_3_8_paths(api, stack):
    drop_file(stack, "adopt-me", GiB)
    old = Api(api.http, "pA", admin=True, version="3.7")
    body = {"volume": {"host": HOST, "ref": {"source-name": "adopt-me"}, "name": "m"}}
    refused = old.post("manageable_volumes", body)
    assert refused.status_code == 404 and "3.8" in refused.json()["itemNotFound"]["message"]

    admin = Api(api.http, "pA", admin=True, version="3.8")
    response = admin.post("manageable_volumes", body)
    assert response.status_code == 202, response.text
    volume = api.wait("volumes/" + response.json()["volume"]["id"], "volume",
                      ("available", "error_managing"))
    assert volume["status"] == "available" and volume["name"] == "m" and volume["size"] == 1

    drop_file(stack, "volume-%s@kept" % volume["id"], GiB)
    snap_body = {"snapshot": {"volume_id": volume["id"], "ref": {"source-name": "volume-%s@kept" % volume["id"]}}}
    refused = old.post("manageable_snapshots", snap_body)
    assert refused.status_code == 404
    response = admin.post("manageable_snapshots", snap_body)
    assert response.status_code == 202, response.text
    snap = api.wait("snapshots/" + response.json()["snapshot"]["id"], "snapshot",
                    ("available", "error"))
    assert snap["status"] == "available" and snap["volume_id"] == volume["id"]
