"""FlowPersistence: boundary commits, resume from the committed state, pruning."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from taskflow import states as tf_states
from taskflow.persistence import models as tf_models
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from blockmgr.flows import common
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import persistence

RAN: list[str] = []


class Step(tf_task.Task):
    def execute(self, runtime, flow_id):
        RAN.append(self.name)
        return self.name


def seven_steps():
    return linear_flow.Flow("seven").add(*[Step(name="step%d" % i) for i in range(7)])


def _backend(tmp_path, **kwargs):
    backend = persistence.FlowPersistence("sqlite:///%s" % (tmp_path / "fl.sqlite"), **kwargs)
    backend.upgrade()
    return backend


def _runtime():
    return common.FlowRuntime(db=None, quota=None, driver=None, notifier=None, host="h@b")


def _count_commits(engine):
    counter = [0]
    sa.event.listen(engine, "commit", lambda conn: counter.__setitem__(0, counter[0] + 1))
    return counter


def test_seven_task_flow_commits_eight_times(tmp_path):
    """One commit at each task's start (the first one writes the flow detail, its atoms
    and its store with it), one at the end."""
    backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")
    commits = _count_commits(backend.engine)
    outcome = runner.run(seven_steps, store={}, runtime=_runtime(), kind="volume",
                         resource_id="v1")
    assert outcome.succeeded
    assert commits[0] == 8
    with contextlib.closing(backend.get_connection()) as conn:
        detail = conn.get_flow_details(outcome.flow_id)
    assert detail.state == tf_states.SUCCESS
    assert {ad.name: ad.state for ad in detail if ad.name.startswith("step")} == {
        "step%d" % i: tf_states.SUCCESS for i in range(7)}


def test_every_transition_mode_commits_more(tmp_path):
    backend = _backend(tmp_path, commits="every-transition")
    commits = _count_commits(backend.engine)
    flow_engine.FlowRunner(backend, "h@b").run(seven_steps, store={}, runtime=_runtime(),
                                               kind="volume", resource_id="v1")
    # every state change of every atom and of the flow: RUNNING and SUCCESS of 7 tasks,
    # the store, the flow's RUNNING and SUCCESS -- against 8 at the boundaries
    assert commits[0] >= 2 * 7 + 3


def test_prune_on_finish_removes_rows(tmp_path):
    backend = _backend(tmp_path, prune_on_finish=True)
    flow_engine.FlowRunner(backend, "h@b").run(seven_steps, store={}, runtime=_runtime(),
                                               kind="volume", resource_id="v1")
    with backend.engine.connect() as conn:
        for table in (persistence.TABLES.flowdetails, persistence.TABLES.atomdetails):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_unfinished_flow_resumes_from_committed_state(tmp_path):
    """A flow whose step3 was RUNNING when the process died: steps 0-2 are skipped."""
    backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")
    outcome = runner.run(seven_steps, store={}, runtime=_runtime(), kind="volume",
                         resource_id="v1")
    atoms = persistence.TABLES.atomdetails
    flows = persistence.TABLES.flowdetails
    with backend.engine.begin() as conn:   # rewind the logbook to "crashed in step3"
        conn.execute(flows.update().values(state=tf_states.RUNNING))
        for i in range(3, 7):
            conn.execute(atoms.update().where(atoms.c.name == "step%d" % i).values(
                state=tf_states.RUNNING if i == 3 else tf_states.PENDING, results=None))
    fresh = flow_engine.FlowRunner(_backend(tmp_path), "h@b")
    [detail] = fresh.unfinished()
    assert detail.uuid == outcome.flow_id
    RAN.clear()
    mode, resumed = fresh.resume(detail, _runtime())
    assert mode == "resume" and resumed.succeeded
    assert RAN == ["step%d" % i for i in range(3, 7)]
    assert fresh.unfinished() == []


class _Killed(BaseException):
    """The worker dying (no cleanup runs) at the point a test picks."""


def test_a_flow_killed_before_its_first_write_leaves_nothing_another_thread_wrote(
        tmp_path, monkeypatch):
    """Regression (crash-under-load test, CI): a reader on another thread -- the queue
    drain asking which flows are unfinished -- flushed every flow while a new one was
    being prepared, writing its flow detail without atoms or store; the worker died before
    the flow's own first write, and recovery failed on that flow at every start ("requires
    ... but no other entity produces said requirements"), its volume stuck ``deleting``."""
    backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")
    add, flush = backend.add_flow_detail, backend.flush

    def add_then_another_thread_reads(book, flow_detail):
        add(book, flow_detail)
        backend.unfinished_flow_uuids()     # flushes every flow, as the drain's read does

    def die_at_the_first_own_write(flow_uuid=None):
        if flow_uuid is not None:
            raise _Killed()
        return flush(flow_uuid)

    monkeypatch.setattr(backend, "add_flow_detail", add_then_another_thread_reads)
    monkeypatch.setattr(backend, "flush", die_at_the_first_own_write)
    with pytest.raises(_Killed):
        runner.run(seven_steps, store={"x": 1}, runtime=_runtime(), kind="volume",
                   resource_id="v1")

    restarted = flow_engine.FlowRunner(_backend(tmp_path), "h@b")
    assert restarted.unfinished() == []     # the flow never started: nothing to recover


def test_a_never_written_flow_is_written_by_its_own_flush_or_a_read_of_it(tmp_path):
    backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")
    detail = tf_models.FlowDetail("f", uuid="11111111-2222-4333-8444-555555555555")
    backend.add_flow_detail(runner.book, detail)
    assert detail.uuid not in backend.unfinished_flow_uuids()
    with contextlib.closing(backend.get_connection()) as conn:
        assert conn.get_flow_details(detail.uuid).uuid == detail.uuid
    assert detail.uuid in backend.unfinished_flow_uuids()


def test_recovery_discards_a_flow_detail_written_without_its_store(tmp_path):
    """A logbook from before the first-write rule may hold such a detail: recovery ends it
    (it never started) instead of failing on it at every start."""
    from taskflow.engines import helpers as engine_helpers

    backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")
    detail = tf_models.FlowDetail("seven", uuid="11111111-2222-4333-8444-555555555555")
    engine_helpers.save_factory_details(detail, seven_steps, (), {})
    detail.meta.update({"kind": "volume", "resource_id": "v1", "host": "h@b"})
    backend.add_flow_detail(runner.book, detail)
    backend.flush(detail.uuid)              # the bare detail, as an early flush wrote it

    restarted = flow_engine.FlowRunner(_backend(tmp_path), "h@b")
    [found] = restarted.unfinished()
    RAN.clear()
    mode, outcome = restarted.resume(found, _runtime())
    assert (mode, outcome.succeeded, RAN) == ("revert", True, [])
    assert restarted.unfinished() == []


# --- tasks whose start need not be a boundary (FlowTask.durable_start) ----------------------

SEEN: dict[str, dict[str, str]] = {}   # step name -> committed atom states when it ran


class Peek(tf_task.Task):
    """Records what the logbook holds (a second connection: committed rows only)."""

    backend: persistence.FlowPersistence | None = None

    def execute(self, runtime, flow_id):
        RAN.append(self.name)
        atoms = persistence.TABLES.atomdetails
        with Peek.backend.engine.connect() as conn:
            SEEN[self.name] = {name: state for name, state in conn.execute(
                sa.select(atoms.c.name, atoms.c.state).where(atoms.c.parent_uuid == flow_id))
                if name.startswith("step")}
        return self.name


class PurePeek(Peek):
    durable_start = False


class RevertingPeek(Peek):
    on_crash = common.REVERT


def mixed_flow():
    return linear_flow.Flow("mixed").add(Peek(name="step0"), PurePeek(name="step1"),
                                         PurePeek(name="step2"), Peek(name="step3"))


def leading_flow():
    return linear_flow.Flow("leading").add(PurePeek(name="step0"), PurePeek(name="step1"),
                                           Peek(name="step2"))


def strict_flow():
    return linear_flow.Flow("strict").add(RevertingPeek(name="step0"), PurePeek(name="step1"))


def _commits_of_a_peeking_run(tmp_path, factory) -> int:
    """Runs ``factory``'s flow to success on a fresh logbook; how many commits it took."""
    backend = Peek.backend = _backend(tmp_path)
    runner = flow_engine.FlowRunner(backend, "h@b")   # creates the logbook: not counted
    commits = _count_commits(backend.engine)
    outcome = runner.run(
        factory, store={}, runtime=_runtime(), kind="volume", resource_id="v1")
    assert outcome.succeeded
    return commits[0]


def test_pure_tasks_start_without_a_commit_only_until_a_task_with_a_side_effect_finished(
        tmp_path):
    """step0 changes something, step1 and step2 only read. step1's start is committed (it
    records step0's finish: re-running step0 after users saw its effect could fail), step2's
    is not -- a crash inside step2 re-runs step2 alone. Regression: deferring step1's start
    too let a resumed manage_existing re-run its quota commit on a volume already being
    deleted (crash under load, CI)."""
    # step0 (with the flow detail), step1 and step3 starts, flow end
    assert _commits_of_a_peeking_run(tmp_path, mixed_flow) == 3 + 1
    assert SEEN["step1"] == {"step0": tf_states.SUCCESS, "step1": tf_states.RUNNING,
                             "step2": tf_states.PENDING, "step3": tf_states.PENDING}
    assert SEEN["step2"] == SEEN["step1"]
    assert SEEN["step3"] == {"step0": tf_states.SUCCESS, "step1": tf_states.SUCCESS,
                             "step2": tf_states.SUCCESS, "step3": tf_states.RUNNING}


def test_leading_pure_tasks_start_without_a_commit(tmp_path):
    # step2's start (with the flow detail), flow end: nothing is written before a task
    # with a side effect starts
    assert _commits_of_a_peeking_run(tmp_path, leading_flow) == 1 + 1
    # Nothing in the logbook while only pure tasks ran: a crash then leaves no flow, and
    # the request ledger runs the request again from the start.
    assert SEEN["step1"] == {}
    assert SEEN["step2"] == {"step0": tf_states.SUCCESS, "step1": tf_states.SUCCESS,
                             "step2": tf_states.RUNNING}


def test_a_pure_task_after_a_task_that_reverts_on_crash_still_commits_its_start(tmp_path):
    """A crash during the pure step must not make recovery revert a finished step0 (its
    ``on_crash`` is REVERT): step0's SUCCESS is written before the pure step runs."""
    backend = Peek.backend = _backend(tmp_path)
    outcome = flow_engine.FlowRunner(backend, "h@b").run(
        strict_flow, store={}, runtime=_runtime(), kind="volume", resource_id="v1")
    assert outcome.succeeded
    assert SEEN["step1"] == {"step0": tf_states.SUCCESS, "step1": tf_states.RUNNING}


def test_a_new_flow_under_the_uuid_of_one_a_peer_deleted_is_written_whole(tmp_path):
    """A worker read a flow at start (recovery), a peer finished and deleted it, then the
    same request runs again here under the same flow id: the new flow detail is inserted,
    not "updated" from stale knowledge (its atoms would reference a missing row)."""
    backend = _backend(tmp_path, prune_on_finish=True)
    runner = flow_engine.FlowRunner(backend, "h@b")
    first = runner.run(seven_steps, store={}, runtime=_runtime(), kind="volume",
                       resource_id="v1", flow_id="0f0e0d0c-0000-4000-8000-00000000000a")
    assert first.succeeded
    # what a restarted worker knows of a flow it read at start, deleted since by a peer
    backend.remember(tf_models.FlowDetail("seven", uuid=first.flow_id))
    again = runner.run(seven_steps, store={}, runtime=_runtime(), kind="volume",
                       resource_id="v1", flow_id=first.flow_id)
    assert again.succeeded, again.failure
