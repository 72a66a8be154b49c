"""What keeps a flow cheap, checked as behaviour (never timed; figures: docs/benchmarks.md).

Commit counts per flow, the flow pool, the in-process ("memory") flow registry, the one-
transaction reserve of a flow's quota task, and SQLite readers that do not take the lock.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import sqlalchemy as sa
import taskflow.engines
from taskflow import exceptions as tf_exc
from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import common
from blockmgr.flows import create_volume
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import memory_persistence
from blockmgr.flows import persistence
from blockmgr.flows import taskflow_compat
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager

BUILT: list[dict] = []


class Step(tf_task.Task):
    def execute(self, runtime, flow_id, volume_id):
        return self.name


class Broken(tf_task.Task):
    def execute(self, runtime):
        raise RuntimeError("execute failed")

    def revert(self, runtime, **kwargs):
        raise RuntimeError("revert failed too")


def three_steps(tag: str = "a"):
    BUILT.append({"tag": tag})
    return linear_flow.Flow("three-" + tag).add(*[Step(name="s%d" % i) for i in range(3)])


def broken_flow():
    return linear_flow.Flow("broken").add(Broken(name="broken"))


def _runtime():
    return common.FlowRuntime(db=None, quota=None, driver=None, notifier=None, host="h@b")


def _run(runner, factory=three_steps, store=None, **kwargs):
    return runner.run(factory, store={"volume_id": "v1"} if store is None else store,
                      runtime=_runtime(), kind="volume", resource_id="v1", **kwargs)


# --- flow pool ------------------------------------------------------------------------------

def test_flows_are_built_once_per_factory_and_arguments():
    runner = flow_engine.FlowRunner(memory_persistence.MemoryPersistence(), "h@b")
    BUILT.clear()
    for _ in range(3):
        assert _run(runner).succeeded
    assert BUILT == [{"tag": "a"}]
    assert _run(runner, factory_kwargs={"tag": "b"}).succeeded
    assert BUILT == [{"tag": "a"}, {"tag": "b"}]


def test_concurrent_runs_never_share_a_flow():
    pool = flow_engine.FlowPool()
    with pool.checkout(three_steps, {}) as first, pool.checkout(three_steps, {}) as second:
        assert first.flow is not second.flow
    with pool.checkout(three_steps, {}) as again:
        assert again.flow in (first.flow, second.flow)


def test_a_runner_keeps_a_flow_for_each_of_its_worker_threads(sqlite_database, conf):
    """A worker whose 16 threads all run a create at once keeps all 16 flows for their next
    runs: a thread never builds one while every kept copy is busy."""
    conf.set_override("rpc_worker_threads", 16)
    pool = _manager(sqlite_database, conf).runner._flows
    with contextlib.ExitStack() as stack:
        first = [stack.enter_context(pool.checkout(three_steps, {})) for _ in range(16)]
    with contextlib.ExitStack() as stack:
        again = [stack.enter_context(pool.checkout(three_steps, {})) for _ in range(16)]
    assert {id(p.flow) for p in again} == {id(p.flow) for p in first}


def test_a_flow_whose_run_raised_is_not_reused():
    pool = flow_engine.FlowPool()
    with pytest.raises(KeyError):
        with pool.checkout(three_steps, {}) as broken:
            raise KeyError("boom")
    with pool.checkout(three_steps, {}) as fresh:
        assert fresh.flow is not broken.flow


def test_flow_detail_records_the_factory_for_recovery():
    backend = memory_persistence.MemoryPersistence(prune_on_finish=False)
    runner = flow_engine.FlowRunner(backend, "h@b")
    outcome = _run(runner, factory_kwargs={"tag": "z"})
    detail = outcome.engine.storage._flowdetail
    assert detail.meta["factory"]["kwargs"] == {"tag": "z"}
    assert detail.meta["factory"]["name"].endswith("three_steps")


def test_cached_validation_still_refuses_a_store_missing_a_name():
    runner = flow_engine.FlowRunner(memory_persistence.MemoryPersistence(), "h@b")
    assert _run(runner).succeeded
    outcome = _run(runner, store={})   # volume_id missing
    assert isinstance(outcome.failure, tf_exc.MissingDependencies)
    assert _run(runner).succeeded


def test_storage_retries_a_storage_failure_like_stock_taskflow(monkeypatch):
    monkeypatch.setattr(taskflow_compat.time, "sleep", lambda seconds: None)
    calls = []

    def save(detail):
        calls.append(detail)
        if len(calls) < 3:
            raise tf_exc.StorageFailure("transient")
        return detail

    assert taskflow_compat._retrying(save, "d") == "d" and len(calls) == 3

    def down(detail):
        calls.append(detail)
        raise tf_exc.StorageFailure("down")

    calls.clear()
    with pytest.raises(tf_exc.StorageFailure):
        taskflow_compat._retrying(down, "d")
    assert len(calls) == 3


# --- the in-process registry ("persistence_connection = memory") ------------------------------

def test_memory_registry_drops_finished_flows():
    backend = memory_persistence.MemoryPersistence()
    runner = flow_engine.FlowRunner(backend, "h@b")
    for _ in range(5):
        assert _run(runner).succeeded
    assert backend._flows == {} and backend.unfinished_flow_uuids() == set()


def test_memory_registry_keeps_finished_flows_until_pruned_when_asked():
    backend = memory_persistence.MemoryPersistence(prune_on_finish=False)
    runner = flow_engine.FlowRunner(backend, "h@b")
    outcome = _run(runner)
    assert runner.unfinished() == [] and outcome.flow_id in backend._flows
    assert runner.prune(0) == 1 and backend._flows == {}


def test_memory_registry_keeps_a_failed_revert_for_an_operator():
    backend = memory_persistence.MemoryPersistence()
    runner = flow_engine.FlowRunner(backend, "h@b")
    outcome = runner.run(broken_flow, store={}, runtime=_runtime(), kind="volume",
                         resource_id="v1")
    assert not outcome.succeeded
    detail = backend.get_connection().get_flow_details(outcome.flow_id)
    assert detail.state == tf_states.FAILURE
    assert backend.unfinished_flow_uuids() == set()
    assert runner.prune(0) == 0 and outcome.flow_id in backend._flows


SEEN: list = []


class Peek(tf_task.Task):
    """Records, while the flow runs, what the runner says about it (runner: ``runtime.conf``)."""

    def execute(self, runtime, flow_id):
        runner = runtime.conf
        SEEN.append((runner.is_live(flow_id), [d.uuid for d in runner.unfinished()]))


def peek_flow():
    return linear_flow.Flow("peek").add(Peek(name="peek"))


def test_memory_registry_lists_a_running_flow_as_unfinished():
    backend = memory_persistence.MemoryPersistence()
    runner = flow_engine.FlowRunner(backend, "h@b")
    SEEN.clear()
    runtime = common.FlowRuntime(db=None, quota=None, driver=None, notifier=None,
                                 host="h@b", conf=runner)
    outcome = runner.run(peek_flow, store={}, runtime=runtime, kind="volume",
                         resource_id="v1")
    assert outcome.succeeded
    assert SEEN == [(True, [outcome.flow_id])]
    assert not runner.is_live(outcome.flow_id)


# --- a real flow: commits and quota ---------------------------------------------------------

class NoopDriver:
    def manage_existing_get_size(self, volume, ref):
        return 3

    def manage_existing(self, volume, ref):
        return {"provider_location": "noop"}

    def unmanage(self, volume):
        return None

    def create_volume(self, volume):
        return {"provider_location": "noop"}


def _manager(db, conf, persistence_connection=None):
    conf.set_override("host", "node1")
    conf.set_override("connection", db.url, group="database")
    if persistence_connection:
        conf.set_override("persistence_connection", persistence_connection, group="flows")
    return VolumeManager(conf, "noop", db=db, driver=NoopDriver(),
                         quota=QuotaEngine(db, conf), notifier=MemoryNotifier())


def _managing(manager):
    with manager.db.writer() as session:
        return repository.create(session, models.Volume, status="managing", size=0,
                                 host=manager.host + "#pool", project_id="p1").id


@pytest.mark.parametrize("mode, expected", [("memory", 2), (None, 2 + 6)])
def test_manage_existing_commit_count(sqlite_database, conf, mode, expected):
    """2 service transactions (reserve; quota commit with the binding and the status
    ``available``) + 6 logbook commits for the 8-task flow when persisted (the logbook
    shares the service's SQLite file): the start of each of the 4 tasks that change
    something (the first one writes the flow detail, its atoms and its store) and of the
    last one, the end. The 3 leading tasks that only read or notify (``durable_start =
    False``: extract, notify, record the manage source) start without a commit of their
    own."""
    manager = _manager(sqlite_database, conf, mode)
    commits = _count_commits(manager)
    ctx = bm_context.RequestContext(project_id="p1")
    for _ in range(2):   # the second run uses the pooled flow: same count
        volume_id = _managing(manager)
        before = commits[0]
        manager.manage_existing(ctx, volume_id, {"source-name": "x"})
        assert commits[0] - before == expected
    usages = manager.quota.get_usages("p1")
    assert (usages["gigabytes"]["in_use"], usages["gigabytes"]["reserved"]) == (6, 0)


def _count_commits(manager) -> list[int]:
    commits = [0]
    engines = {id(manager.db.engine): manager.db.engine}
    flow_db = getattr(manager.runner.backend, "engine", None)
    if flow_db is not None:
        engines[id(flow_db)] = flow_db
    for engine in engines.values():
        sa.event.listen(engine, "commit", lambda conn: commits.__setitem__(0, commits[0] + 1))
    return commits


@pytest.mark.parametrize("mode, expected", [("memory", 2), (None, 2 + 3)])
def test_create_volume_commit_count(sqlite_database, conf, mode, expected):
    """2 service commits (the driver's model update; the status ``available``; the
    manager's read of the row under the volume's lock commits nothing) + 3 logbook commits
    when the logbook
    is a separate backend: the start of the driver task (with the flow detail, its atoms
    and its store), the start of the finishing task, the end. The 4 leading tasks (extract
    the row, reschedule guard, extract the spec, ``.start`` notification) only read or
    notify: they start without a commit of their own (``durable_start = False``)."""
    manager = _manager(sqlite_database, conf, mode)
    commits = _count_commits(manager)
    for _ in range(2):   # the second run uses the pooled flow: same count
        with manager.db.writer() as session:
            volume_id = repository.create(session, models.Volume, status="creating", size=1,
                                          host=manager.host + "#pool", project_id="p1").id
        before = commits[0]
        manager.create_volume(bm_context.RequestContext(project_id="p1"), volume_id, {}, {})
        assert commits[0] - before == expected


def test_create_volume_ends_its_flow_and_request_with_its_last_write(sqlite_database, conf):
    """With the logbook in the service database (its engine lent) and finished flows
    pruned, a create is 3 commits: the driver task's start (flow detail, atoms and
    store), the driver's model update, and ONE last commit holding the
    status ``available``, the deletion of the flow's logbook rows and the end of its
    request -- no crash can separate those three."""
    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    backend = persistence.FlowPersistence(sqlite_database.url, engine=sqlite_database.engine,
                                          prune_on_finish=True)
    backend.upgrade()
    assert backend.closes_flows
    manager = VolumeManager(conf, "noop", db=sqlite_database, driver=NoopDriver(),
                            quota=QuotaEngine(sqlite_database, conf),
                            notifier=MemoryNotifier(),
                            runner=flow_engine.FlowRunner(backend, "node1@noop"))
    requests_ledger = ledger.Ledger(sqlite_database, conf, owner_prefix="node1@noop",
                                    targets=["node1@noop"])
    commits = _count_commits(manager)
    for _ in range(2):   # the second run uses the pooled flow: same count
        with manager.db.writer() as session:
            volume_id = repository.create(session, models.Volume, status="creating", size=1,
                                          host=manager.host + "#pool", project_id="p1").id
            request_id = db_requests.add(session, kind="volume", resource_id=volume_id,
                                         action="create_volume", arguments={}, context={},
                                         target="node1@noop", request_id=volume_id)
        statements = []
        listener = (lambda conn, cursor, statement, *args: statements.append(statement))
        sa.event.listen(sqlite_database.engine, "before_cursor_execute", listener)
        before = commits[0]
        requests_ledger.run(request_id, lambda: manager.create_volume(
            bm_context.RequestContext(project_id="p1"), volume_id, {}, {}))
        sa.event.remove(sqlite_database.engine, "before_cursor_execute", listener)
        assert commits[0] - before == 1 + 3   # the claim, then the create's 3
        with manager.db.reader() as session:
            assert repository.get(session, models.Volume, volume_id).status == "available"
            assert db_requests.get(session, request_id).state == "done"
        assert volume_id not in backend.unfinished_flow_uuids()
        # The flow detail's deletion takes its atoms with it (ON DELETE CASCADE).
        last = [s.split()[0:3] for s in statements[-3:]]
        assert last == [["UPDATE", "volumes", "SET"], ["DELETE", "FROM", "flowdetails"],
                        ["UPDATE", "requests", "SET"]]
        with sqlite_database.engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM flowdetails WHERE uuid = ?", (volume_id,)).scalar() == 0
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM atomdetails WHERE parent_uuid = ?",
                (volume_id,)).scalar() == 0


def test_create_volume_reads_the_row_once_and_a_resumed_create_reads_it_again(
        sqlite_database, conf):
    """The manager reads the row under the volume's lock and hands it to the flow as a
    transient value: one SELECT of the volume per create. It is not in the logbook, so a
    resumed run reads the row itself."""
    manager = _manager(sqlite_database, conf)
    with manager.db.writer() as session:
        volume_id = repository.create(session, models.Volume, status="creating", size=1,
                                      host=manager.host + "#pool", project_id="p1").id
    selects = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT") and "FROM volumes" in statement:
            selects.append(statement)

    sa.event.listen(sqlite_database.engine, "before_cursor_execute", count)
    manager.create_volume(bm_context.RequestContext(project_id="p1"), volume_id, {}, {})
    assert len(selects) == 1
    with manager.db.reader() as session:
        assert repository.get(session, models.Volume, volume_id).status == "available"
    runtime = manager.runtime()
    task = create_volume.ExtractVolumeRefTask()
    with manager.db.writer() as session:
        other = repository.create(session, models.Volume, status="creating", size=1,
                                  host=manager.host + "#pool", project_id="p1").id
    selects.clear()
    assert task.execute(runtime, other)["id"] == other   # no volume_row (resumed): reads
    assert len(selects) == 1


def test_reserve_once_reserves_once_per_owner(sqlite_database, conf):
    quota = QuotaEngine(sqlite_database, conf)
    owner = "0f0e0d0c-0000-4000-8000-000000000001"
    first = quota.reserve_once("p1", owner=owner, gigabytes=2, volumes=1)
    assert len(first) == 2
    assert quota.reserve_once("p1", owner=owner, gigabytes=2, volumes=1) == first
    assert quota.get_usages("p1")["gigabytes"]["reserved"] == 2
    assert quota.commit_owned(owner) == 2
    assert quota.reserve_once("p1", owner=owner, gigabytes=1) != first   # none live now
    with pytest.raises(exception.InvalidInput):
        quota.reserve_once("p1", owner=None, gigabytes=1)


def test_quota_reserve_task_reuses_what_the_flow_holds(sqlite_database, conf):
    quota = QuotaEngine(sqlite_database, conf)
    runtime = common.FlowRuntime(db=sqlite_database, quota=quota, driver=None, notifier=None,
                                 host="h@b")
    owner = "0f0e0d0c-0000-4000-8000-000000000002"
    request = {"project_id": "p1", "deltas": {"gigabytes": 4, "volumes": 0}}
    task = common.QuotaReserveTask()
    first = task.execute(runtime, owner, request)
    assert task.execute(runtime, owner, request) == first   # re-run after a crash
    assert task.execute(runtime, owner, {"project_id": "p1", "deltas": {}}) == first
    assert quota.get_usages("p1")["gigabytes"]["reserved"] == 4


# --- SQLite readers -----------------------------------------------------------------------------

def test_sqlite_reader_does_not_wait_for_a_writer(sqlite_database):
    with sqlite_database.writer() as session:
        volume_id = repository.create(session, models.Volume, status="available",
                                      size=1, project_id="p1").id
    seen = []
    with sqlite_database.writer() as session:   # holds the write lock (BEGIN IMMEDIATE)
        row = repository.get(session, models.Volume, volume_id)
        repository.update(session, row, size=5)

        def read():
            with sqlite_database.reader() as reader:
                seen.append(repository.get(reader, models.Volume, volume_id).size)

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "a reader waited for the writer's lock"
    assert seen == [1]   # the last committed state, not the writer's pending change


def test_sqlite_writers_still_take_the_lock_at_begin(sqlite_database):
    """A writer holds SQLite's write lock from its BEGIN (before any write), a reader does
    not: another connection's ``BEGIN IMMEDIATE`` fails at once in the first case only."""
    import sqlite3
    other = sqlite3.connect(sqlite_database.engine.url.database, timeout=0,
                            isolation_level=None)

    def other_can_write() -> bool:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return False
        other.execute("ROLLBACK")
        return True

    try:
        with sqlite_database.writer() as session:
            session.execute(sa.text("select 1"))
            assert not other_can_write()
        with sqlite_database.reader() as session:
            session.execute(sa.text("select 1"))
            assert other_can_write()
        assert other_can_write()
    finally:
        other.close()


def test_sqlite_begin_that_fails_raises_a_translated_error(sqlite_database):
    """The direct BEGIN falls back to SQLAlchemy when the driver refuses, so the caller sees
    SQLAlchemy's error (as when every BEGIN went through SQLAlchemy), not a bare
    ``sqlite3`` exception."""
    import sqlite3
    holder = sqlite3.connect(sqlite_database.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    sa.event.listen(sqlite_database.engine, "connect",
                    lambda dbapi_con, _rec: dbapi_con.execute("PRAGMA busy_timeout = 0"))
    sqlite_database.engine.pool.dispose()   # new connections: no busy wait
    try:
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            with sqlite_database.writer() as session:
                session.execute(sa.text("select 1"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- manage flows: one read of the row, quota commit and status in one transaction ----------

def test_manage_existing_reads_the_volume_row_once_in_the_flow(sqlite_database, conf):
    """The manager's ownership check and the extract task: the other tasks take the facts
    from ``volume_ref``, the commit task writes the binding without loading or reading
    back the row, the manager takes its capacity from the flow's ``size`` (7 reads before:
    prepare and manage re-read the row, the manager re-read it after the flow)."""
    manager = _manager(sqlite_database, conf, "memory")
    ctx = bm_context.RequestContext(project_id="p1")
    manager.manage_existing(ctx, _managing(manager), {"source-name": "x"})   # warm up
    volume_id = _managing(manager)
    reads = []
    sa.event.listen(sqlite_database.engine, "before_cursor_execute",
                    lambda conn, cursor, stmt, *args: reads.append(stmt)
                    if stmt.startswith("SELECT") and "FROM volumes" in stmt else None)
    manager.manage_existing(ctx, volume_id, {"source-name": "x"})
    assert len(reads) == 2
    assert manager.capacity.get("pool") == 6   # two volumes of 3 GiB (the driver's size)
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Volume, volume_id)
    assert (row.status, row.size, row.provider_location) == ("available", 3, "noop")


def _reserved_manage(db, conf, status):
    quota = QuotaEngine(db, conf)
    runtime = common.FlowRuntime(db=db, quota=quota, driver=None, notifier=None, host="h@b")
    with db.writer() as session:
        volume_id = repository.create(session, models.Volume, status=status, size=2,
                                      host="h@b#pool", project_id="p1").id
    owner = "0f0e0d0c-0000-4000-8000-000000000003"
    request = {"project_id": "p1", "deltas": {"gigabytes": 2}}
    reservations = quota.reserve_once("p1", owner=owner, gigabytes=2)
    return runtime, quota, volume_id, owner, request, reservations


def test_manage_commit_charges_quota_and_makes_available_together(sqlite_database, conf):
    from blockmgr.flows import manage_existing
    runtime, quota, volume_id, owner, request, reservations = _reserved_manage(
        sqlite_database, conf, "managing")
    task = manage_existing.QuotaCommitTask()
    binding = {"provider_location": "pool/lv-1", "provider_id": "lv-1"}
    done = task.execute(runtime, owner, volume_id, request, reservations, 2, binding)
    assert done == {"project_id": "p1", "deltas": {"gigabytes": 2}, "volume_type_id": None}
    assert task.execute(runtime, owner, volume_id, request, reservations, 2,
                        binding) == done   # re-run
    usage = quota.get_usages("p1")["gigabytes"]
    assert (usage["in_use"], usage["reserved"]) == (2, 0)
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Volume, volume_id)
        assert row.status == "available" and row.launched_at is not None
        assert (row.size, row.provider_location, row.provider_id) == (2, "pool/lv-1",
                                                                       "lv-1")


def test_manage_commit_is_undone_when_the_status_cannot_be_written(sqlite_database, conf):
    from blockmgr.flows import manage_existing
    runtime, quota, volume_id, owner, request, reservations = _reserved_manage(
        sqlite_database, conf, "error")
    with pytest.raises(exception.InvalidStatusTransition):
        manage_existing.QuotaCommitTask().execute(runtime, owner, volume_id, request,
                                                  reservations, 5,
                                                  {"provider_location": "pool/lv-1"})
    usage = quota.get_usages("p1")["gigabytes"]
    assert (usage["in_use"], usage["reserved"]) == (0, 2)   # still live: reserve's revert
    assert quota.reservations_of(owner) != []                # rolls it back
    with sqlite_database.reader() as session:   # nor was the binding written
        row = repository.get(session, models.Volume, volume_id)
        assert (row.size, row.provider_location) == (2, None)


def test_snapshot_manage_commit_charges_quota_and_sets_status_together(sqlite_database,
                                                                       conf):
    from blockmgr.flows import manage_existing_snapshot
    runtime, quota, volume_id, owner, request, reservations = _reserved_manage(
        sqlite_database, conf, "available")
    with sqlite_database.writer() as session:
        snapshot_id = repository.create(session, models.Snapshot, volume_id=volume_id,
                                        status="creating", volume_size=2,
                                        project_id="p1").id
    task = manage_existing_snapshot.QuotaCommitTask()
    task.execute(runtime, owner, snapshot_id, "available", request, reservations)
    task.execute(runtime, owner, snapshot_id, "available", request, reservations)   # re-run
    usage = quota.get_usages("p1")["gigabytes"]
    assert (usage["in_use"], usage["reserved"]) == (2, 0)
    with sqlite_database.reader() as session:
        row = repository.get(session, models.Snapshot, snapshot_id)
        assert (row.status, row.progress) == ("available", "100%")


# --- flows of every shape ------------------------------------------------------------------------

RAN: list[str] = []


class Mark(tf_task.Task):
    def execute(self):
        RAN.append(self.name)


def _never(history):
    return False


def shapes_flow(shape: str = "linear"):
    """A chain, parallel branches inside a chain, a diamond, and a graph whose link decider
    ignores a branch."""
    from taskflow.patterns import graph_flow, unordered_flow
    t = {name: Mark(name=name) for name in "abcdefg"}
    if shape == "linear":
        return linear_flow.Flow("linear").add(*t.values())
    if shape == "nested":
        return linear_flow.Flow("nested").add(
            t["a"], unordered_flow.Flow("par").add(t["b"], t["c"], t["d"]), t["e"],
            linear_flow.Flow("tail").add(t["f"], t["g"]))
    flow = graph_flow.Flow(shape).add(*t.values())
    flow.link(t["a"], t["b"]).link(t["a"], t["c"]).link(t["b"], t["d"])
    flow.link(t["c"], t["d"]).link(t["d"], t["e"]).link(t["e"], t["f"])
    flow.link(t["f"], t["g"])
    if shape == "decided":   # b alone ignored: d still runs (after c)
        flow.link(t["a"], t["b"], decider=_never, decider_depth="atom")
    return flow


@pytest.mark.parametrize("shape", ["linear", "nested", "diamond", "decided"])
def test_flows_of_every_shape_run_as_on_stock_taskflow(shape):
    """The runner (the linear path for a linear flow, the engine otherwise) runs every atom
    that stock TaskFlow runs, once, after its predecessors."""
    runner = flow_engine.FlowRunner(memory_persistence.MemoryPersistence(), "h@b")
    RAN.clear()
    outcome = runner.run(shapes_flow, factory_kwargs={"shape": shape}, store={},
                         runtime=_runtime(), kind="volume", resource_id="v1")
    assert outcome.succeeded, outcome.failure
    ours = list(RAN)
    RAN.clear()
    taskflow.engines.run(shapes_flow(shape), engine="serial")   # stock TaskFlow
    assert sorted(ours) == sorted(RAN)
    assert ("b" in RAN) == (shape != "decided") and "d" in RAN
    RAN[:] = ours
    order = {name: i for i, name in enumerate(RAN)}
    for before, after in [("a", "e"), ("e", "f"), ("f", "g"), ("c", "e")]:
        assert order[before] < order[after]
