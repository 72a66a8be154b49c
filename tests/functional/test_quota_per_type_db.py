"""Per-volume-type quotas on MariaDB and PostgreSQL: concurrent reservations of one type stop
exactly at its per-type limit (the per-type usage rows are created and locked with the
project-wide ones), check/sync count the per-type truth with the server's SQL (the join of
volumes and snapshots to their type), and a type's rename moves its quota."""

from __future__ import annotations

import threading

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db.session import Database
from blockmgr.quota import QuotaEngine
from tests.conftest import create_database

PROJECT = "per-type-project"
WORKERS = 12
LIMIT = 4


@pytest.fixture(params=["mysql", "postgresql"])
def engine(request, tmp_path, conf):
    url, drop = create_database(request.param, tmp_path)
    db = Database(url)
    db.create_schema()
    yield db, QuotaEngine(db, conf)
    db.dispose()
    drop()


def _new_type(db, name) -> str:
    with db.writer() as session:
        row = models.VolumeType(name=name, is_public=True)
        session.add(row)
        session.flush()
        return row.id


def test_threads_stop_at_the_per_type_limit_and_truth_is_counted(engine):
    db, quota = engine
    gold, silver = _new_type(db, "gold"), _new_type(db, "silver")
    quota.set_limit(PROJECT, "volumes_gold", LIMIT)
    results: list[str] = []
    lock = threading.Lock()

    def worker():
        try:
            quota.commit(quota.reserve(PROJECT, volumes=1, gigabytes=1, volume_type_id=gold))
            outcome = "ok"
        except exception.OverQuota as exc:
            outcome = "over" if exc.overs == ["volumes_gold"] else "wrong %s" % exc.overs
        except Exception as exc:   # noqa: BLE001 -- reported by the assertion below
            outcome = "error %r" % exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok"] * LIMIT + ["over"] * (WORKERS - LIMIT), results
    usages = quota.get_usages(PROJECT)
    assert usages["volumes_gold"]["in_use"] == LIMIT and usages["volumes"]["in_use"] == LIMIT

    # The tables hold 2 gold volumes (one with a snapshot) and a silver one: sync recounts.
    with db.writer() as session:
        vols = [models.Volume(project_id=PROJECT, size=size, status="available",
                              volume_type_id=type_id)
                for size, type_id in ((3, gold), (5, gold), (7, silver))]
        session.add_all(vols)
        session.flush()
        session.add(models.Snapshot(project_id=PROJECT, volume_id=vols[0].id, volume_size=3,
                                    status="available", volume_type_id=gold))
    fixed = {(d.resource, d.field): (d.recorded, d.expected) for d in quota.sync(PROJECT)}
    assert fixed[("volumes_gold", "in_use")] == (LIMIT, 2)
    assert fixed[("gigabytes_gold", "in_use")] == (LIMIT, 11)
    assert fixed[("snapshots_gold", "in_use")] == (0, 1)
    assert fixed[("volumes_silver", "in_use")] == (0, 1)
    assert quota.check() == []

    # Renaming gold moves its limit and usage, locked and rewritten with the server's SQL.
    with db.writer() as session:
        session.get(models.VolumeType, gold).name = "platinum"
        assert quota.rename_volume_type("gold", "platinum", session=session) == 4
    assert quota.get_limits(PROJECT)["volumes_platinum"] == LIMIT
    assert quota.get_usages(PROJECT)["gigabytes_platinum"]["in_use"] == 11
    assert quota.check() == []
