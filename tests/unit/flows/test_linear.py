"""The success path of linear flows without TaskFlow's scheduler (blockmgr.flows.linear):
the same logbook, notifications and revert as on the engine."""

from __future__ import annotations

import contextlib

import pytest
from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from blockmgr.flows import common
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import linear
from blockmgr.flows import persistence
from blockmgr.flows import taskflow_compat

CALLS: list[tuple[str, str]] = []


class Make(tf_task.Task):
    """Provides ``<name>_out`` from what the previous step provided."""

    def execute(self, runtime, flow_id, seed):
        CALLS.append(("execute", self.name))
        return "%s(%s)" % (self.name, seed)

    def revert(self, runtime, flow_id, seed, result=None, **kwargs):
        CALLS.append(("revert", self.name))


class Boom(Make):
    def execute(self, runtime, flow_id, seed):
        CALLS.append(("execute", self.name))
        raise ValueError("boom in %s" % self.name)


def _chain(*classes):
    tasks, seed = [], "seed"
    for index, cls in enumerate(classes):
        name = "t%d" % index
        tasks.append(cls(name=name, provides=name + "_out", rebind={"seed": seed}))
        seed = name + "_out"
    return tasks


def good_flow():
    return linear_flow.Flow("good").add(*_chain(Make, Make, Make))


def failing_flow():
    return linear_flow.Flow("failing").add(*_chain(Make, Make, Boom, Make))


def nested_flow():
    return linear_flow.Flow("outer").add(linear_flow.Flow("inner").add(*_chain(Make)))


@pytest.fixture
def runner(tmp_path):
    backend = persistence.FlowPersistence("sqlite:///%s" % (tmp_path / "fl.sqlite"))
    backend.upgrade()
    CALLS.clear()
    return flow_engine.FlowRunner(backend, "h@b")


def _runtime():
    return common.FlowRuntime(db=None, quota=None, driver=None, notifier=None, host="h@b")


def _run(runner, factory, events=None):
    """Run ``factory``'s flow, recording ``(state, task)`` of every task notification."""
    original = runner._run

    def recording(engine, flow_id, **kwargs):
        if events is not None:
            engine.atom_notifier.register(
                "*", lambda state, details: events.append((state, details["task_name"])))
        return original(engine, flow_id, **kwargs)

    runner._run = recording
    return runner.run(factory, store={"seed": "s0"}, runtime=_runtime(), kind="volume",
                      resource_id="v1")


def test_only_linear_flows_of_tasks_take_the_short_path():
    assert [t.name for t in linear.tasks_of(good_flow())] == ["t0", "t1", "t2"]
    assert linear.tasks_of(nested_flow()) is None


def test_a_flow_missing_an_argument_is_left_to_the_engine_which_refuses_it(runner):
    """Without ``seed`` in the store the short path does not start (nothing is run) and
    TaskFlow refuses the flow with its own error, as it always did."""
    from taskflow import exceptions as tf_exc
    outcome = runner.run(good_flow, store={}, runtime=_runtime(), kind="volume",
                         resource_id="v1")
    assert isinstance(outcome.failure, tf_exc.MissingDependencies)
    assert CALLS == []


def test_a_linear_flow_leaves_what_the_engine_leaves(runner):
    events = []
    outcome = _run(runner, good_flow, events)
    assert outcome.succeeded
    assert CALLS == [("execute", "t0"), ("execute", "t1"), ("execute", "t2")]
    assert events == [(tf_states.RUNNING, "t0"), (tf_states.SUCCESS, "t0"),
                      (tf_states.RUNNING, "t1"), (tf_states.SUCCESS, "t1"),
                      (tf_states.RUNNING, "t2"), (tf_states.SUCCESS, "t2")]
    storage = outcome.engine.storage
    assert storage.fetch("t2_out") == "t2(t1(t0(s0)))"
    with contextlib.closing(runner.backend.get_connection()) as conn:
        detail = conn.get_flow_details(outcome.flow_id)
    assert detail.state == tf_states.SUCCESS
    assert {ad.name: (ad.state, ad.results) for ad in detail if ad.name.startswith("t")} == {
        "t0": (tf_states.SUCCESS, "t0(s0)"), "t1": (tf_states.SUCCESS, "t1(t0(s0))"),
        "t2": (tf_states.SUCCESS, "t2(t1(t0(s0)))")}


def test_a_failing_task_hands_the_flow_to_the_engine_which_reverts_it(runner):
    outcome = _run(runner, failing_flow)
    assert isinstance(outcome.failure, ValueError)
    assert CALLS == [("execute", "t0"), ("execute", "t1"), ("execute", "t2"),
                     ("revert", "t2"), ("revert", "t1"), ("revert", "t0")]
    assert outcome.engine.storage.get_flow_state() == tf_states.REVERTED
    assert outcome.engine.storage.get_atom_state("t3") == tf_states.PENDING


def test_the_engine_path_gives_the_same_outcome(runner, monkeypatch):
    """The reference: with the short path off (the benchmark knob) the same flows run on
    TaskFlow's engine with the same calls, results and end states."""
    monkeypatch.setattr(taskflow_compat, "STOCK_ENGINE_PARTS", frozenset({"linear"}))
    outcome = _run(runner, good_flow)
    assert outcome.succeeded and outcome.engine.storage.fetch("t2_out") == "t2(t1(t0(s0)))"
    CALLS.clear()
    outcome = _run(runner, failing_flow)
    assert isinstance(outcome.failure, ValueError)
    assert CALLS == [("execute", "t0"), ("execute", "t1"), ("execute", "t2"),
                     ("revert", "t2"), ("revert", "t1"), ("revert", "t0")]
    assert outcome.engine.storage.get_flow_state() == tf_states.REVERTED
