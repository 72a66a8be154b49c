"""TEST-ONLY fault injection: kill the worker at a named task boundary.

``BLOCKMGR_FAULT_INJECT=before:<task name>`` exits the process (``os._exit``, no cleanup, no
flush -- as close to a power cut as a test can get) when the task is about to execute, after
its ``RUNNING`` state was committed; ``after:<task name>`` exits once the task returned, before
the next boundary commit. ``[flows] fault_inject`` does the same from config. Crash tests
generate every boundary of a flow from its definition (:func:`boundaries`).
"""

from __future__ import annotations

import os

from taskflow import states as tf_states
from taskflow.listeners import base as tf_listeners

from blockmgr import exception

ENV_VAR = "BLOCKMGR_FAULT_INJECT"
#: Exit status of an injected crash, so tests can tell it from a real failure.
EXIT_CODE = 75

_WHEN_STATE = {"before": tf_states.RUNNING, "after": tf_states.SUCCESS}


def parse(spec: str | None) -> tuple[str, str] | None:
    """``"before:name"`` -> ``("before", "name")``; None/empty -> None; bad -> InvalidInput."""
    if not spec:
        return None
    when, sep, name = spec.partition(":")
    if not sep or when not in _WHEN_STATE or not name:
        raise exception.InvalidInput(
            reason="fault injection spec %r must be 'before:<task name>' or "
                   "'after:<task name>'" % spec)
    return when, name


def configured(conf=None) -> tuple[str, str] | None:
    """The active fault spec: the environment variable, else ``[flows] fault_inject``."""
    spec = os.environ.get(ENV_VAR)
    if not spec and conf is not None:
        spec = conf.flows.fault_inject
    return parse(spec)


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
        self._task = spec[1]

    def _task_receiver(self, state, details):
        if details.get("task_name") == self._task:
            os._exit(EXIT_CODE)
