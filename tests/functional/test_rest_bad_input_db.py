"""Bad input through the REST API on the real databases: PostgreSQL refuses NUL in text
(its driver raises before the statement runs), so every place a string reaches a query must
refuse it first with a 400. The same requests on MariaDB, which stores them, must be 400 too.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.functional.stacks import all_in_one_on
from tests.unit.rest.conftest import Api

HOST = "node1@loopback"


@pytest.fixture(params=["postgresql", "mysql"])
def db_stack(request, tmp_path):
    with all_in_one_on(request.param, tmp_path) as node:
        yield node


def test_nul_and_huge_paging_values_are_400_not_500(db_stack):
    assert db_stack.db.dialect in ("postgresql", "mysql")
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        api = Api(http, "pA")
        admin = Api(http, "pA", admin=True)
        volume = api.post("volumes", {"volume": {"size": 1, "name": "ok"}}).json()["volume"]
        bad = [
            api.post("volumes", {"volume": {"size": 1, "name": "a\x00"}}),
            api.post("volumes", {"volume": {"size": 1, "description": "\x00"}}),
            api.post("volumes", {"volume": {"size": 1, "availability_zone": "z\x00"}}),
            api.put("volumes/" + volume["id"], {"volume": {"name": "\x00"}}),
            api.post("snapshots", {"snapshot": {"volume_id": volume["id"],
                                                "name": "\x00"}}),
            api.get("volumes?name=%00"),
            api.get("volumes/detail?availability_zone=%00"),
            api.get("volumes?marker=%00"),
            api.get("snapshots?name=%00"),
            api.get("snapshots?marker=%00"),
            api.get("volumes?offset=%d" % 2 ** 63),
            api.get("volumes?limit=%d" % 2 ** 64),
            admin.post("os-volume-manage", {"volume": {"host": HOST,
                                                       "ref": {"source-name": "\x00"}}}),
            admin.post("os-volume-manage", {"volume": {"host": HOST + "\x00",
                                                       "ref": {"source-name": "x"}}}),
            admin.post("os-snapshot-manage", {"snapshot": {
                "volume_id": volume["id"], "ref": {"source-name": "x\x00"}}}),
            admin.get("manageable_volumes?host=%s&marker=%%00" % HOST),
            admin.get("os-services?binary=%00"),
            Api(http, "pA", version="3.14").post("groups", {"group": {
                "name": "\x00", "group_type": "t", "volume_types": ["v"]}}),
            Api(http, "pA", version="3.14").get("groups?name=%00"),
        ]
        assert [r.status_code for r in bad] == [400] * len(bad), [r.text for r in bad]
        names = [v["name"] for v in api.get("volumes/detail").json()["volumes"]]
        assert names == ["ok"]
        # Ordinary values still work on this database.
        assert api.get("volumes?name=ok&offset=%d" % (2 ** 63 - 1)).status_code == 200
