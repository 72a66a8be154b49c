"""TEST-ONLY fault injection: kill the worker at a named task boundary.

``BLOCKMGR_FAULT_INJECT=before:<task name>`` exits the process (``os._exit``, no cleanup, no
flush -- as close to a power cut as a test can get) when the task is about to execute, after
its ``RUNNING`` state was committed; ``after:<task name>`` exits once the task returned, before
the next boundary commit. ``[flows] fault_inject`` does the same from config. Crash tests
generate every boundary of a flow from its definition (:func:`boundaries`).

A task name may be qualified by its flow's name, ``before:volume_create_manager/<task>``,
to arm that boundary in that flow only.

Two more boundaries belong to the request ledger (:mod:`blockmgr.ledger`), armed with the
same variable: ``after:ledger.recorded`` exits the process that accepted a request after
its transaction committed and before its cast (:func:`crash_point`), ``after:ledger.claimed``
exits the process that claimed a request before its flow's first write.

``file:<path>`` arms the hook from a file instead: every flow run reads the spec the file
holds at that moment (none while the file is missing or empty). A crash-under-load test keeps
one daemon running and arms it only when it wants the next crash, instead of paying a restart
per armed boundary.
"""

from __future__ import annotations

import contextlib
import os

from taskflow import states as tf_states
from taskflow.listeners import base as tf_listeners

from blockmgr import exception

ENV_VAR = "BLOCKMGR_FAULT_INJECT"
#: Exit status of an injected crash, so tests can tell it from a real failure.
EXIT_CODE = 75

_WHEN_STATE = {"before": tf_states.RUNNING, "after": tf_states.SUCCESS}


def parse(spec: str | None) -> tuple[str, str] | None:
    """``"before:name"`` -> ``("before", "name")``, ``"file:/p"`` -> ``("file", "/p")``;
    None/empty -> None; bad -> InvalidInput."""
    if not spec:
        return None
    when, sep, name = spec.strip().partition(":")
    if not sep or (when not in _WHEN_STATE and when != FILE) or not name:
        raise exception.InvalidInput(
            reason="fault injection spec %r must be 'before:<task name>', "
                   "'after:<task name>' or 'file:<path of a file holding one of those>'"
                   % spec)
    return when, name


FILE = "file"
#: Separates an optional flow name from the task name in a spec.
FLOW_SEPARATOR = "/"


def listener_for(engine, fault: tuple[str, str] | None):
    """The context manager to run ``engine`` in: the crash listener for ``fault`` (read from
    its file for ``("file", path)``), or a no-op."""
    if fault is not None and fault[0] == FILE:
        try:
            with open(fault[1]) as armed:
                fault = parse(armed.read())
        except FileNotFoundError:
            fault = None
        if fault is not None and fault[0] == FILE:
            raise exception.InvalidInput(reason="a fault file must hold a before:/after: "
                                                "spec, not another file: spec")
    if fault is None:
        return contextlib.nullcontext()
    return CrashAtBoundary(engine, fault)


def configured(conf=None) -> tuple[str, str] | None:
    """The active fault spec: the environment variable, else ``[flows] fault_inject``."""
    spec = os.environ.get(ENV_VAR)
    if not spec and conf is not None:
        spec = conf.flows.fault_inject
    return parse(spec)


#: The request ledger's crash points (module docstring).
LEDGER_POINTS = ("ledger.recorded", "ledger.claimed")


def crash_point(name: str) -> None:
    """Exit the process here if ``BLOCKMGR_FAULT_INJECT`` is ``after:<name>``, or names a
    file that holds it now (one environment lookup when unarmed)."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    if spec.startswith(FILE + ":"):
        try:
            with open(spec[len(FILE) + 1:]) as armed:
                spec = armed.read().strip()
        except OSError:
            return
    if spec == "after:" + name:
        os._exit(EXIT_CODE)


def boundaries(flow) -> list[str]:
    """Every ``before:``/``after:`` spec of ``flow``'s tasks, in execution order."""
    return ["%s:%s" % (when, name) for name in task_names(flow) for when in ("before", "after")]


def task_names(flow) -> list[str]:
    names = []
    for node, _meta in flow.iter_nodes():
        if hasattr(node, "iter_nodes"):
            names.extend(task_names(node))
        else:
            names.append(node.name)
    return names


class CrashAtBoundary(tf_listeners.Listener):
    """Listener that calls ``os._exit(EXIT_CODE)`` at the configured boundary."""

    def __init__(self, engine, spec: tuple[str, str]):
        super().__init__(engine, task_listen_for=(_WHEN_STATE[spec[0]],),
                         flow_listen_for=(), retry_listen_for=())
        flow, sep, task = spec[1].rpartition(FLOW_SEPARATOR)
        self._task = task
        # "<flow name>/<task name>" arms the boundary in that flow only (a task such as
        # NotifyStartTask;create.start is in several flows).
        self._armed = not sep or engine.storage.flow_name == flow

    def _task_receiver(self, state, details):
        if self._armed and details.get("task_name") == self._task:
            os._exit(EXIT_CODE)
