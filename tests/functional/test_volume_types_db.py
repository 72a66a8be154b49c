"""Volume types on MariaDB and PostgreSQL through the REST API: the default type the
migrations create, bad input refused with 400, and a type deleted while volumes of it are
being created never leaves a volume with a deleted type."""

from __future__ import annotations

import concurrent.futures

import sqlalchemy as sa
from fastapi.testclient import TestClient

from blockmgr.db import models
from tests.functional.test_rest_bad_input_db import db_stack  # noqa: F401  (the fixture)
from tests.unit.rest.conftest import Api


def test_types_on_the_real_databases(db_stack):  # noqa: F811
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        api = Api(http, "pA")
        admin = Api(http, "pA", admin=True)
        with db_stack.db.reader() as session:   # created by the migrations, exactly once
            defaults = session.scalars(sa.select(models.VolumeType).where(
                models.VolumeType.name == "__DEFAULT__")).all()
        assert len(defaults) == 1
        plain = api.post("volumes", {"volume": {"size": 1}}).json()["volume"]
        assert plain["volume_type"] == "__DEFAULT__"
        bad = [
            admin.post("types", {"volume_type": {"name": "a\x00"}}),
            admin.post("types", {"volume_type": {"name": "ok", "extra_specs": {"k": "\x00"}}}),
            admin.post("types", {"volume_type": {"name": "ok", "description": "\x00"}}),
            api.post("volumes", {"volume": {"size": 1, "volume_type": "t\x00"}}),
            api.get("types?name=%00"),
            api.get("types/%00"),
        ]
        assert [r.status_code for r in bad] == [400] * len(bad), [r.text for r in bad]
        assert api.get("types/" + "x" * 300).status_code == 404
        gold = admin.post("types", {"volume_type": {"name": "gold"}}).json()["volume_type"]
        assert admin.post("types", {"volume_type": {"name": "gold"}}).status_code == 409
        typed = api.post("volumes", {"volume": {"size": 1, "volume_type": "gold"}})
        assert typed.status_code == 202, typed.text
        assert admin.delete("types/" + gold["id"]).status_code == 400


def test_deleting_a_type_while_volumes_of_it_are_created(db_stack):  # noqa: F811
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        api = Api(http, "pA")
        admin = Api(http, "pA", admin=True)
        gold = admin.post("types", {"volume_type": {"name": "gold"}}).json()["volume_type"]

        def create(_):
            return api.post("volumes", {"volume": {"size": 1, "volume_type": gold["id"]}})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            creates = [pool.submit(create, i) for i in range(8)]
            deleted = admin.delete("types/" + gold["id"])
            statuses = [f.result().status_code for f in creates]
        assert set(statuses) <= {202, 400}, statuses
        assert deleted.status_code in (202, 400), deleted.text
        with db_stack.db.reader() as session:
            live = session.scalar(sa.select(sa.func.count(models.Volume.id)).where(
                models.Volume.volume_type_id == gold["id"],
                models.Volume.deleted.is_(False)))
            row = session.get(models.VolumeType, gold["id"])
        # Either the type survived (some volume was created first) or no volume has it.
        assert (row.deleted and live == 0) or (not row.deleted and live > 0), (
            row.deleted, live, statuses, deleted.text)
        assert live == statuses.count(202)


def test_concurrent_creates_of_one_name_make_one_type(db_stack):  # noqa: F811
    with TestClient(db_stack.app, raise_server_exceptions=False) as http:
        admin = Api(http, "pA", admin=True)

        def create(_):
            return admin.post("types", {"volume_type": {"name": "twin"}}).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(create, range(8)))
        assert sorted(statuses) == [200] + [409] * 7, statuses
        with db_stack.db.reader() as session:
            assert session.scalar(sa.select(sa.func.count(models.VolumeType.id)).where(
                models.VolumeType.name == "twin")) == 1
