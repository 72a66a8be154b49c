"""Per-volume-type quotas (``volumes_<type>``, ``snapshots_<type>``, ``gigabytes_<type>``) on
SQLite: the expansion, limits, refusal over a per-type limit, the quota set views and their
validation, reconciliation, the CLI, and the operations that count them (API and flows)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import conf as bm_conf
from blockmgr import exception
from blockmgr.cmd import manage
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db.session import Database
from blockmgr.quota import QuotaEngine
from blockmgr.quota import add_for_type
from blockmgr.quota import per_type
from tests.unit.flows import test_delete_volume as flows
from tests.unit.flows import test_group_flows as group_flows
from tests.unit.test_api import ADMIN, A, B
from tests.unit.test_api import env  # noqa: F401  (fixture)
from tests.unit.test_api import place, placed_group, usage

P = "project-a"


@pytest.fixture
def engine(sqlite_database, conf):
    return QuotaEngine(sqlite_database, conf)


def new_type(db, name) -> str:
    with db.writer() as session:
        row = models.VolumeType(name=name, is_public=True)
        session.add(row)
        session.flush()
        return row.id


def delete_type(db, type_id) -> None:
    with db.writer() as session:
        row = session.get(models.VolumeType, type_id)
        row.deleted, row.deleted_at = True, models.utcnow()


def used(engine, project=P):
    return {r: (u["in_use"], u["reserved"]) for r, u in engine.get_usages(project).items()}


def add_volume(db, size, type_id, project=P, **values):
    with db.writer() as session:
        row = models.Volume(project_id=project, size=size, status="available",
                            volume_type_id=type_id, **values)
        session.add(row)
        session.flush()
        return row.id


def add_snapshot(db, volume_id, project=P):
    with db.writer() as session:
        vol = session.get(models.Volume, volume_id)
        session.add(models.Snapshot(project_id=project, volume_id=vol.id, status="available",
                                    volume_size=vol.size, volume_type_id=vol.volume_type_id))


# --- the expansion --------------------------------------------------------------------------

def test_expand_adds_the_per_type_twin_of_volumes_snapshots_and_gigabytes_only():
    assert per_type.expand({"volumes": 1, "gigabytes": 10, "groups": 1}, "gold") == {
        "volumes": 1, "gigabytes": 10, "groups": 1, "volumes_gold": 1, "gigabytes_gold": 10}
    assert per_type.expand({"snapshots": -1, "gigabytes": 0}, "gold") == {
        "snapshots": -1, "gigabytes": 0, "snapshots_gold": -1}
    assert per_type.expand({"volumes": 1}, None) == {"volumes": 1}
    # a name the quota tables cannot hold has no per-type resources
    assert per_type.expand({"volumes": 1}, "x" * 250) == {"volumes": 1}
    assert per_type.resources_of("x" * 250) == []


@pytest.mark.parametrize("name,parsed", [
    ("volumes_gold", ("volumes", "gold")), ("gigabytes_fast_ssd", ("gigabytes", "fast_ssd")),
    ("snapshots___DEFAULT__", ("snapshots", "__DEFAULT__")), ("volumes", None),
    ("volumes_", None), ("per_volume_gigabytes", None), ("groups_x", None), (5, None)])
def test_parse_per_type_names(name, parsed):
    assert per_type.parse(name) == parsed


def test_reserve_with_a_type_counts_the_per_type_resources_too(engine, sqlite_database):
    gold = new_type(sqlite_database, "gold")
    uuids = engine.reserve(P, volumes=1, gigabytes=10, volume_type_id=gold)
    assert len(uuids) == 4
    assert used(engine)["volumes_gold"] == (0, 1) and used(engine)["gigabytes_gold"] == (0, 10)
    engine.commit(uuids)
    assert used(engine)["volumes_gold"] == (1, 0) and used(engine)["gigabytes"] == (10, 0)
    assert used(engine)["snapshots_gold"] == (0, 0)


def test_by_type_counts_several_types_in_one_reservation(engine, sqlite_database):
    gold, silver = new_type(sqlite_database, "gold"), new_type(sqlite_database, "silver")
    by_type: dict = {None: {"groups": 1}}
    add_for_type(by_type, gold, volumes=1, gigabytes=2)
    add_for_type(by_type, gold, volumes=1, gigabytes=3)
    add_for_type(by_type, silver, volumes=1, gigabytes=4)
    add_for_type(by_type, None, volumes=1, gigabytes=1)   # an untyped (legacy) volume
    engine.commit(engine.reserve(P, by_type=by_type))
    u = used(engine)
    assert (u["volumes"], u["gigabytes"], u["groups"]) == ((4, 0), (10, 0), (1, 0))
    assert (u["volumes_gold"], u["gigabytes_gold"]) == ((2, 0), (5, 0))
    assert (u["volumes_silver"], u["gigabytes_silver"]) == ((1, 0), (4, 0))


def test_consume_with_a_type_joins_the_callers_transaction(engine, sqlite_database):
    gold = new_type(sqlite_database, "gold")
    with sqlite_database.writer() as session:
        engine.consume(session, P, snapshots=1, gigabytes=5, volume_type_id=gold)
    assert used(engine)["snapshots_gold"] == (1, 0) and used(engine)["gigabytes_gold"] == (5, 0)


@pytest.mark.parametrize("call,error", [
    (lambda e: e.reserve(P, volumes_gold=1), exception.UnknownQuotaResource),
    (lambda e: e.reserve(P, volumes=1, volume_type_id=5), exception.InvalidInput),
    (lambda e: e.reserve(P, by_type=[("t", {"volumes": 1})]), exception.InvalidInput),
    (lambda e: e.reserve(P, by_type={"t": 1}), exception.InvalidInput),
    (lambda e: e.reserve(P, by_type={"t": {"volume": 1}}), exception.UnknownQuotaResource),
    (lambda e: e.reserve(P, by_type={"t": {"volumes": True}}), exception.InvalidQuotaValue),
])
def test_per_type_resources_come_only_from_a_type(engine, call, error):
    with pytest.raises(error):
        call(engine)
    assert used(engine)["volumes"] == (0, 0)


def test_an_unknown_type_id_counts_project_wide_only(engine):
    engine.commit(engine.reserve(P, volumes=1, volume_type_id="no-such-type"))
    assert used(engine)["volumes"] == (1, 0)
    assert not any(per_type.is_per_type(r) for r in used(engine))


# --- limits ---------------------------------------------------------------------------------

def test_per_type_limits_default_to_unlimited_and_exist_with_their_type(engine,
                                                                        sqlite_database, conf):
    assert set(engine.get_limits(P)) == {"volumes", "snapshots", "gigabytes", "groups",
                                         "per_volume_gigabytes"}
    gold = new_type(sqlite_database, "gold")
    limits = engine.get_limits(P)
    assert {r: limits[r] for r in per_type.resources_of("gold")} == {
        "volumes_gold": -1, "snapshots_gold": -1, "gigabytes_gold": -1}
    assert engine.default_limits()["volumes_gold"] == -1
    assert engine.default_limits()["volumes"] == conf.quota.volumes
    engine.set_limit(P, "volumes_gold", 3)
    assert engine.get_limits(P)["volumes_gold"] == 3
    assert engine.get_limits("project-b")["volumes_gold"] == -1
    delete_type(sqlite_database, gold)
    assert "volumes_gold" not in engine.get_limits(P)
    assert "volumes_gold" not in engine.get_usages(P)
    assert "volumes_gold" not in engine.default_limits()
    engine.reset_limit(P, "volumes_gold")   # a leftover override can still be removed
    with sqlite_database.reader() as session:
        assert session.scalars(sa.select(models.Quota.resource)).all() == []


def test_a_limit_for_a_type_that_does_not_exist_is_refused(engine):
    with pytest.raises(exception.UnknownQuotaResource, match="no volume type named 'gold'"):
        engine.set_limit(P, "volumes_gold", 3)
    with pytest.raises(exception.UnknownQuotaResource):
        engine.reset_limit(P, "backups")


def test_over_a_per_type_limit_is_refused_naming_it_and_reserves_nothing(engine,
                                                                        sqlite_database):
    gold, silver = new_type(sqlite_database, "gold"), new_type(sqlite_database, "silver")
    engine.set_limit(P, "gigabytes_gold", 10)
    engine.commit(engine.reserve(P, volumes=1, gigabytes=8, volume_type_id=gold))
    with pytest.raises(exception.OverQuota) as caught:
        engine.reserve(P, volumes=1, gigabytes=3, volume_type_id=gold)
    error = caught.value
    assert error.code == 413 and error.overs == ["gigabytes_gold"]
    assert "gigabytes_gold: requested 3 GiB, only 2 GiB of the limit of 10 GiB" in str(error)
    assert used(engine)["volumes"] == (1, 0) and used(engine)["gigabytes_gold"] == (8, 0)
    # the project-wide limit and the other types are untouched by gold's limit
    engine.commit(engine.reserve(P, volumes=1, gigabytes=30, volume_type_id=silver))
    # shrinking is never refused, even over the limit
    engine.set_limit(P, "gigabytes_gold", 1)
    engine.commit(engine.reserve(P, volumes=-1, gigabytes=-8, volume_type_id=gold))
    assert used(engine)["gigabytes_gold"] == (0, 0)


# --- reconciliation -------------------------------------------------------------------------

def test_check_and_sync_count_per_type_usage_from_the_tables(engine, sqlite_database, conf):
    gold = new_type(sqlite_database, "gold")
    vid = add_volume(sqlite_database, 4, gold)
    add_volume(sqlite_database, 6, None)
    add_snapshot(sqlite_database, vid)
    drifts = {(d.resource, d.field): (d.recorded, d.expected) for d in engine.check(P)}
    assert drifts[("volumes_gold", "in_use")] == (0, 1)
    assert drifts[("snapshots_gold", "in_use")] == (0, 1)
    assert drifts[("gigabytes_gold", "in_use")] == (0, 8)   # the volume and its snapshot
    assert drifts[("gigabytes", "in_use")] == (0, 14)
    assert {d.resource for d in engine.sync(P)} >= {"volumes_gold", "gigabytes_gold"}
    assert engine.check(P) == []
    assert used(engine)["gigabytes_gold"] == (8, 0)
    conf.set_override("no_snapshot_gb_quota", True, group="quota")
    drifts = {(d.resource, d.field): (d.recorded, d.expected) for d in engine.check(P)}
    assert drifts[("gigabytes_gold", "in_use")] == (8, 4)


def test_sync_brings_a_deleted_types_leftover_usage_to_zero(engine, sqlite_database):
    gold = new_type(sqlite_database, "gold")
    engine.commit(engine.reserve(P, volumes=1, volume_type_id=gold))   # no volume row
    delete_type(sqlite_database, gold)
    (drift,) = [d for d in engine.sync(P) if d.resource == "volumes_gold"]
    assert (drift.recorded, drift.expected) == (1, 0)
    assert engine.check(P) == []


def test_a_type_without_rows_or_usage_gets_no_usage_row(engine, sqlite_database):
    new_type(sqlite_database, "gold")
    add_volume(sqlite_database, 1, None)
    engine.sync(P)
    with sqlite_database.reader() as session:
        resources = set(session.scalars(sa.select(models.QuotaUsage.resource)))
    assert resources == set(QuotaEngine.RESOURCES)


def test_refresh_on_reserve_recounts_a_per_type_usage(engine, sqlite_database, conf):
    gold = new_type(sqlite_database, "gold")
    engine.commit(engine.reserve(P, volumes=3, volume_type_id=gold))   # no volume rows
    engine.set_limit(P, "volumes_gold", 3)
    conf.set_override("until_refresh", 1, group="quota")
    add_volume(sqlite_database, 1, gold)
    engine.reserve(P, volumes=1, volume_type_id=gold)   # refreshed to 1 first: fits
    assert used(engine)["volumes_gold"] == (1, 1)


# --- quota sets (client library) ------------------------------------------------------------

def test_quota_set_views_update_and_reset(env):
    gold = env.volume_types.create_type(ADMIN, "gold")
    assert env.quotas.defaults(A, "pA")["snapshots_gold"] == -1
    limits = env.quotas.update(ADMIN, "pA", {"volumes_gold": 1, "gigabytes_gold": 5})
    assert (limits["volumes_gold"], limits["gigabytes_gold"]) == (1, 5)
    env.volumes.create_volume(A, 2, volume_type="gold")
    shown = env.quotas.show(A, "pA", usage=True)
    assert shown["volumes_gold"] == {"in_use": 1, "reserved": 0, "limit": 1}
    assert shown["gigabytes_gold"] == {"in_use": 2, "reserved": 0, "limit": 5}
    with pytest.raises(exception.OverQuota, match="volumes_gold"):
        env.volumes.create_volume(A, 1, volume_type="gold")
    env.volumes.create_volume(A, 1)   # the default type is not limited by gold's
    with pytest.raises(exception.UnknownQuotaResource, match="silver"):
        env.quotas.update(ADMIN, "pA", {"volumes": 5, "volumes_silver": 1})
    assert env.quotas.show(A, "pA")["volumes"] == env.conf.quota.volumes   # nothing written
    assert env.quotas.reset(ADMIN, "pA")["volumes_gold"] == -1
    env.quotas.update(ADMIN, "pA", {"volumes_gold": 1})
    with env.db.writer() as session:   # the type's volume goes, then the type
        repository.soft_delete(session, session.scalars(sa.select(models.Volume).where(
            models.Volume.volume_type_id == gold["id"])).one())
    env.volume_types.delete_type(ADMIN, gold["id"])
    assert not any(r.endswith("_gold") for r in env.quotas.show(A, "pA", usage=True))
    assert not any(r.endswith("_gold") for r in env.quotas.defaults(A, "pA"))
    # a new type of the same name starts unlimited once the project's overrides are reset
    env.quotas.reset(ADMIN, "pA")
    env.volume_types.create_type(ADMIN, "gold")
    assert env.quotas.show(A, "pA")["volumes_gold"] == -1


# --- operations that count them -------------------------------------------------------------

def test_snapshot_extend_and_unplaced_delete_count_the_type(env):
    env.volume_types.create_type(ADMIN, "gold")
    vid = env.volumes.create_volume(A, 4, volume_type="gold")["id"]
    place(env, vid)
    env.snapshots.create_snapshot(A, vid)
    u = usage(env)
    assert (u["volumes_gold"], u["snapshots_gold"], u["gigabytes_gold"]) == (
        (1, 0), (1, 0), (8, 0))
    env.quotas.update(ADMIN, "pA", {"gigabytes_gold": 10})
    with pytest.raises(exception.OverQuota, match="gigabytes_gold"):
        env.volumes.extend_volume(A, vid, 7)
    env.volumes.extend_volume(A, vid, 6)
    assert usage(env)["gigabytes_gold"] == (8, 2)
    unplaced = env.volumes.create_volume(B, 1, volume_type="gold")["id"]
    assert usage(env, "pB")["volumes_gold"] == (1, 0)
    env.volumes.delete_volume(B, unplaced)
    assert usage(env, "pB")["volumes_gold"] == (0, 0)
    assert env.quota.check() == []


def test_group_snapshot_and_group_from_source_count_each_members_type(env):
    gold = env.volume_types.create_type(ADMIN, "gold")
    gid = placed_group(env)
    v1 = env.volumes.create_volume(A, 2, volume_type="gold", group_id=gid)["id"]
    v2 = env.volumes.create_volume(A, 3, group_id=gid)["id"]
    for vid in (v1, v2):
        place(env, vid, host="n1@lvm#pool")
    env.groups.create_group_snapshot(A, gid, name="gs")
    u = usage(env)
    assert (u["snapshots_gold"], u["snapshots___DEFAULT__"]) == ((1, 0), (1, 0))
    assert (u["gigabytes_gold"], u["gigabytes___DEFAULT__"]) == ((4, 0), (6, 0))
    env.groups.create_group_from_src(A, name="copy", source_group_id=gid)
    u = usage(env)
    assert (u["volumes_gold"], u["volumes___DEFAULT__"], u["groups"]) == (
        (2, 0), (2, 0), (2, 0))
    with env.db.reader() as session:   # the copies have their source's type
        copies = session.scalars(sa.select(models.Volume.volume_type_id).where(
            models.Volume.source_volid.is_not(None))).all()
    assert sorted(copies, key=str) == sorted([gold["id"], _default_id(env)], key=str)
    assert env.quota.check() == []


def _default_id(env):
    return env.volume_types.default_type(A)["id"]


# --- flows that give usage back -------------------------------------------------------------

def test_delete_flows_give_the_per_type_usage_back(flow_env):
    env = flow_env
    gold = new_type(env.db, "gold")
    vid = _typed_volume(env, gold, 3)
    sid = _typed_snapshot(env, vid, gold)
    assert _flow_used(env)["snapshots_gold"] == 1 and _flow_used(env)["gigabytes_gold"] == 6
    flows.set_status(env, models.Snapshot, sid, "deleting")
    assert env.delete_snapshot(flows.CTX, sid) is True
    assert _flow_used(env)["snapshots_gold"] == 0 and _flow_used(env)["gigabytes_gold"] == 3
    flows.set_status(env, models.Volume, vid, "deleting")
    assert env.delete_volume(flows.CTX, vid) is True
    assert _flow_used(env)["volumes_gold"] == 0 and _flow_used(env)["gigabytes_gold"] == 0
    flows.assert_settled(env)


def test_extend_flow_reserves_and_commits_the_per_type_gigabytes(flow_env):
    env = flow_env
    gold = new_type(env.db, "gold")
    vid = _typed_volume(env, gold, 2)
    flows.set_status(env, models.Volume, vid, "extending", previous_status="available")
    uuids = env.quota.reserve(flows.PROJECT, gigabytes=3, volume_type_id=gold)
    env.extend_volume(flows.CTX, vid, 5, reservations=uuids)
    assert _flow_used(env)["gigabytes_gold"] == 5
    flows.assert_settled(env)


def test_group_delete_flow_gives_back_each_members_type(group_env):
    g = group_flows
    env = group_env
    gold = new_type(env.db, "gold")
    gid = g.make_group(env, status="available")
    vids = [g.make_volume(env, size=2, group_id=gid, volume_type_id=gold) for _ in range(2)]
    with env.db.writer() as session:   # what the API charges for typed members
        env.quota.consume(session, g.PROJECT, volumes=2, gigabytes=4, volume_type_id=gold)
        env.quota.consume(session, g.PROJECT, volumes=-2, gigabytes=-4)   # make_volume's
    assert _flow_used(env, g.PROJECT)["volumes_gold"] == 2
    g.set_status(env, models.Group, gid, "deleting")
    assert env.delete_group(g.CTX, gid) == gid
    assert all(g.get(env, models.Volume, vid).deleted for vid in vids)
    assert _flow_used(env, g.PROJECT)["volumes_gold"] == 0
    assert _flow_used(env, g.PROJECT)["gigabytes_gold"] == 0
    assert env.quota.check() == []


def _flow_used(env, project=None):
    return {r: u["in_use"] for r, u in env.quota.get_usages(project or flows.PROJECT).items()}


def _typed_volume(env, type_id, size):
    """A volume on the backend with the usage the API charges for it (its type included)."""
    vid = flows.make_volume(env, size=size, volume_type_id=type_id)
    with env.db.writer() as session:   # make_flow_volume charged it untyped
        env.quota.consume(session, flows.PROJECT, volumes=1, gigabytes=size,
                          volume_type_id=type_id)
        env.quota.consume(session, flows.PROJECT, volumes=-1, gigabytes=-size)
    return vid


def _typed_snapshot(env, vid, type_id):
    sid = flows.make_snapshot(env, vid)
    with env.db.writer() as session:
        snap = session.get(models.Snapshot, sid)
        snap.volume_type_id = type_id
        env.quota.consume(session, flows.PROJECT, snapshots=1, gigabytes=snap.volume_size,
                          volume_type_id=type_id)
        env.quota.consume(session, flows.PROJECT, snapshots=-1, gigabytes=-snap.volume_size)
    return sid


# --- blockmgr-manage quota ------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path, capsys):
    """``run(*args) -> (exit code, stdout)`` of ``blockmgr-manage quota`` on a fresh
    database, and an engine on it."""
    path = tmp_path / "cli.sqlite"
    db = Database("sqlite:///%s" % path)
    db.create_schema()
    config = tmp_path / "blockmgr.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\n[database]\nconnection = sqlite:///%s\n"
                      % (tmp_path, path))
    args = ["--config-file", str(config), "quota"]

    def run(*more):
        capsys.readouterr()
        code = manage.main(args + list(more))
        return code, capsys.readouterr().out

    yield run, db, QuotaEngine(db, bm_conf.new_config(args=args[:2]))
    db.dispose()


def test_cli_shows_sets_and_resets_per_type_limits(cli):
    run, db, engine = cli
    gold = new_type(db, "gold")
    engine.commit(engine.reserve(P, volumes=1, gigabytes=2, volume_type_id=gold))
    code, out = run("set", "--project-id", P, "--resource", "volumes_gold", "--limit", "4")
    assert code == 0 and "volumes_gold" in out
    code, out = run("show", "--project-id", P)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert code == 0 and rows["volumes_gold"] == ["volumes_gold", "4", "1", "0"]
    assert rows["gigabytes_gold"] == ["gigabytes_gold", "unlimited", "2", "0"]
    names = list(rows)   # project-wide first, then by type
    assert names.index("per_volume_gigabytes") < names.index("volumes_gold")
    code, out = run("set", "--project-id", P, "--resource", "volumes_silver", "--limit", "4")
    assert code == 2
    assert engine.get_limits(P)["volumes_gold"] == 4
    code, out = run("reset", "--project-id", P, "--resource", "volumes_gold")
    assert code == 0 and "unlimited" in out


def test_cli_check_and_reconcile_report_per_type_drift(cli):
    run, db, engine = cli
    gold = new_type(db, "gold")
    add_volume(db, 3, gold)
    code, out = run("check", "--project-id", P)
    assert code == 1
    assert "DRIFT project project-a: gigabytes_gold in_use is 0, expected 3" in out
    code, out = run("reconcile", "--project-id", P)
    assert code == 0
    assert "FIXED project project-a: volumes_gold in_use is 0, expected 1" in out
    assert any(line.split()[1:3] == ["volumes_gold", "0"] for line in out.splitlines()
               if line.startswith(P))
    assert run("check")[0] == 0


@pytest.fixture
def flow_env(sqlite_database, conf):
    return flows.build_env(sqlite_database, conf)


@pytest.fixture
def group_env(sqlite_database, conf):
    return group_flows.build(conf, sqlite_database,
                             group_flows.FakeDriver(None, "fake", host="node1@fake"))


# --- renaming a type ------------------------------------------------------------------------

def _rename(db, engine, type_id, new_name):
    """What renaming a type does: the row's new name and the quota's move, one transaction."""
    with db.writer() as session:
        row = session.get(models.VolumeType, type_id)
        old_name, row.name = row.name, new_name
        return engine.rename_volume_type(old_name, new_name, session=session)


def test_a_rename_moves_limits_usage_and_live_reservations(engine, sqlite_database):
    gold = new_type(sqlite_database, "gold")
    engine.set_limit(P, "volumes_gold", 3)
    add_volume(sqlite_database, 2, gold)
    engine.commit(engine.reserve(P, volumes=1, gigabytes=2, volume_type_id=gold))
    pending = engine.reserve(P, volumes=1, gigabytes=5, volume_type_id=gold)
    assert _rename(sqlite_database, engine, gold, "platinum") == 3   # 1 limit, 2 usages
    assert engine.get_limits(P)["volumes_platinum"] == 3 and "volumes_gold" not in \
        engine.get_limits(P)
    assert used(engine)["volumes_platinum"] == (1, 1)
    assert used(engine)["gigabytes_platinum"] == (2, 5)
    engine.rollback(pending)   # the live reservation follows the usage row
    assert used(engine)["gigabytes_platinum"] == (2, 0)
    assert engine.check(P) == []
    engine.reserve(P, volumes=2, volume_type_id=gold)
    with pytest.raises(exception.OverQuota, match="volumes_platinum"):
        engine.reserve(P, volumes=1, volume_type_id=gold)


def test_a_rename_onto_a_deleted_types_name_replaces_its_leftovers(engine, sqlite_database):
    old = new_type(sqlite_database, "silver")
    engine.set_limit(P, "volumes_silver", 9)
    engine.commit(engine.reserve(P, volumes=4, volume_type_id=old))   # counts no volume
    delete_type(sqlite_database, old)
    gold = new_type(sqlite_database, "gold")
    add_volume(sqlite_database, 1, gold)
    engine.commit(engine.reserve(P, volumes=1, gigabytes=1, volume_type_id=gold))
    pending = engine.reserve(P, volumes=1, gigabytes=1, volume_type_id=gold)
    _rename(sqlite_database, engine, gold, "silver")
    assert engine.get_limits(P)["volumes_silver"] == -1   # the deleted type's limit is gone
    assert used(engine)["volumes_silver"] == (1, 1)
    engine.commit(pending)
    assert used(engine)["volumes_silver"] == (2, 0)
    add_volume(sqlite_database, 1, gold)
    # (the project-wide volumes still hold the 4 the test reserved for no volume)
    assert [d for d in engine.check(P) if per_type.is_per_type(d.resource)] == []
    with sqlite_database.reader() as session:   # the old name's row is left at zero
        old_rows = session.execute(sa.select(models.QuotaUsage.in_use,
                                             models.QuotaUsage.reserved).where(
            models.QuotaUsage.resource == "volumes_gold")).all()
    assert [tuple(r) for r in old_rows] == [(0, 0)]


def test_rename_refuses_bad_names(engine):
    with pytest.raises(exception.InvalidInput):
        engine.rename_volume_type("gold", "")
    assert engine.rename_volume_type("gold", "gold") == 0


def test_renaming_a_type_through_the_api_moves_its_quota_with_it(env):
    """``PUT /types/{id}`` with a new name: the limits and the usage of ``*_gold`` are
    ``*_platinum``'s in the same transaction, and the new name's limit applies at once."""
    gold = env.volume_types.create_type(ADMIN, "gold")
    env.quotas.update(ADMIN, "pA", {"volumes_gold": 1})
    env.volumes.create_volume(A, 2, volume_type="gold")
    env.volume_types.update_type(ADMIN, gold["id"], name="platinum")
    shown = env.quotas.show(A, "pA", usage=True)
    assert shown["volumes_platinum"] == {"in_use": 1, "reserved": 0, "limit": 1}
    assert shown["gigabytes_platinum"]["in_use"] == 2
    assert not any(r.endswith("_gold") for r in shown)
    with pytest.raises(exception.OverQuota, match="volumes_platinum"):
        env.volumes.create_volume(A, 1, volume_type="platinum")
