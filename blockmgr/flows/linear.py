"""The success path of a linear flow, run without TaskFlow's scheduler.

A blockmgr operation is a linear flow of a handful of tasks. On TaskFlow's action engine a
run goes through its state machine, scheduler, selector and completer for every task --
about three times the CPU of the tasks' own code for a create (``docs/benchmarks.md``),
the largest single cost of a request. What a run must leave behind is simpler: the same
storage transitions, in the same order, with the same notifications.

:func:`run` does exactly that for a *fresh* run of a linear flow of tasks, through the
engine's own :class:`~taskflow.storage.Storage` and notifiers (TaskFlow's public engine
attributes): for each task in order, the ``RUNNING`` state (the persistence backend commits
it as the boundary rules say), the ``RUNNING`` notification, the call of ``execute`` with
its arguments (from the store and the earlier tasks' results, mapped as the task's
``rebind`` and ``provides`` say), then the result with ``SUCCESS`` and its notification;
the flow goes ``RUNNING`` then ``SUCCESS`` as the engine would set it. So the logbook, the
listeners (metrics, crash points, log context) and recovery see what they see with the
engine.

Everything else stays TaskFlow's: when a task raises, its failure is saved as the engine
saves it (``FAILURE``) and the engine is run -- it finds the failed atom and reverts the
flow, exactly as it reverts a flow resumed after a crash; resumed flows, flows with nested
flows or retries, and any flow this module does not recognise run on the engine from the
start. The flow is not compiled unless the engine takes over (:func:`prepare`). The one
difference in the logbook: a task's progress is not recorded (TaskFlow records 0.0 and 1.0
around ``execute``; nothing reads it).
"""

from __future__ import annotations

from typing import Callable

from taskflow import states as tf_states
from taskflow import task as tf_task
from taskflow.patterns import linear_flow
from taskflow.types import failure as tf_failure


def tasks_of(flow) -> list | None:
    """The tasks of ``flow`` in order when it is a linear flow of plain tasks (what
    :func:`run` can run), else None."""
    if not isinstance(flow, linear_flow.Flow):
        return None
    tasks = list(flow)
    if not all(isinstance(task, tf_task.Task) for task in tasks):
        return None
    return tasks


def prepare(engine, tasks: list, values: dict) -> bool:
    """Make ``engine``'s storage ready for :func:`run` without compiling the flow: True
    when every task's required arguments are found in ``values`` (the store, transient
    values included) or among what an earlier task provides, and the tasks' atoms are
    then in the storage; False (nothing done) when something is missing -- the engine is
    then compiled and run as usual, and refuses the flow with TaskFlow's own error.

    Compiling (an execution graph, scopes, per-atom actions) and TaskFlow's validation are
    what a linear flow whose arguments are all at hand does not need: ``run`` maps the
    arguments itself, in order."""
    available = set(values)
    for task in tasks:
        if any(name not in available and arg not in task.optional
               for arg, name in task.rebind.items()):
            return False
        available.update(task.save_as)
    engine.storage.ensure_atoms(tasks)
    return True


def run(engine, tasks: list, values: dict,
        before_engine: Callable[[], None] | None = None) -> None:
    """Run a fresh ``engine`` whose flow is the linear ``tasks``, made ready by
    :func:`prepare` with ``values``; each task's arguments come from ``values``, which
    takes each result under the names the task provides.

    Raises what ``engine.run()`` raises when a task fails (after the engine reverted the
    flow), or what ``before_engine()`` -- called when a task failed, before the engine
    takes over -- raises (nothing is reverted then); returns when every task succeeded and
    the flow is ``SUCCESS``.
    """
    storage = engine.storage
    _flow_state(engine, tf_states.RUNNING)
    for task in tasks:
        name = task.name
        if storage.get_atom_state(name) == tf_states.SUCCESS:
            continue   # not fresh after all: a pooled store already holds it
        old_state = storage.get_atom_state(name)
        storage.set_atom_state(name, tf_states.RUNNING)
        uuid = storage.get_atom_uuid(name)
        engine.atom_notifier.notify(tf_states.RUNNING, {
            "task_name": name, "task_uuid": uuid, "old_state": old_state})
        arguments = {arg: values[source] for arg, source in task.rebind.items()
                     if source in values}
        try:
            result = task.execute(**arguments)
        except Exception:
            failure = tf_failure.Failure()
            if before_engine is not None:
                before_engine()
            storage.save(name, failure, tf_states.FAILURE)
            engine.atom_notifier.notify(tf_states.FAILURE, {
                "task_name": name, "task_uuid": uuid, "old_state": tf_states.RUNNING,
                "result": failure})
            engine.run()   # TaskFlow reverts the flow from the failed task; raises
            return
        storage.save(name, result, tf_states.SUCCESS)
        for provided, index in task.save_as.items():
            values[provided] = result if index is None else result[index]
        engine.atom_notifier.notify(tf_states.SUCCESS, {
            "task_name": name, "task_uuid": uuid, "old_state": tf_states.RUNNING,
            "result": result})
    _flow_state(engine, tf_states.SUCCESS)


def _flow_state(engine, state: str) -> None:
    moved, old_state = engine.storage.change_flow_state(state)
    if moved:
        engine.notifier.notify(state, {
            "engine": engine, "flow_name": engine.storage.flow_name,
            "flow_uuid": engine.storage.flow_uuid, "old_state": old_state})
