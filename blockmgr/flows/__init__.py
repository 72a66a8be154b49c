"""Persisted TaskFlow flows, one module per operation. How to write one (follow this):

Module layout, always in this order (see ``manage_existing.py``):

1. A docstring: the task order, what the API did before, the failure outcome, the store keys.
2. ``ACTION = "<kind>:<verb>"``.
3. Small ``<Verb><Noun>Task(common.FlowTask)`` classes, ONE side effect each, whose
   ``revert`` undoes exactly that side effect (reverting an import unmanages, never deletes).
4. ``lock_names(resource_id, store, rows)`` when the request holds more locks than its
   resource's own (``common.lock_names_of``): the endpoint and recovery both ask it.
5. ``get_flow()``: module-level, no arguments (or JSON keyword arguments), assemble only:
   ``common.declare_flow(ACTION, *tasks, error_status=...)``.

Rules that make crash recovery work (``docs/flows.md``):

* The store is JSON: ids, ``context`` (``RequestContext.to_dict()``), references, specs.
  ``flow_id`` (the flow detail uuid) is added by the runner. Collaborators (db, driver,
  quota, notifier) arrive as the transient ``runtime`` argument
  (:class:`common.FlowRuntime`) -- never put them in the store or in task constructors.
* Facts pass as task results (``default_provides``), never by mutating a shared dict.
* Tasks are idempotent: a task that was running -- or had just finished -- at a crash runs
  again on resume. A flow's last status write goes through ``common.finish`` /
  ``common.finish_and_commit`` (``repository.finish``): it writes only while the row is
  still in the flow's in-progress status, so a repeat after the API accepted the next
  request on the resource writes nothing.
* If repeating a task's side effect is unsafe, set ``on_crash = common.REVERT``: recovery
  then reverts the flow instead of resuming it when that task was interrupted.
* Task names are ``<module>.<Class>[;addon]`` (``FlowTask`` does it): never rename a task of
  a released flow, logbooks refer to it.
* Quota: ``common.QuotaReserveTask`` / ``common.QuotaCommitTask`` reserve and commit what the
  flow owns (owner = ``flow_id``), given a ``quota_request`` result
  ``{"project_id": ..., "deltas": {...}}`` from an earlier task.
* Notifications: ``common.NotifyStartTask(kind, action, id_arg)`` sends ``.start`` and, on
  revert, ``.error``; the finishing task sends ``.end``.
* A task whose ``execute`` only reads, computes or notifies sets ``durable_start = False``:
  its start then costs no logbook commit of its own (``common.FlowTask``).

Launch a flow through :class:`engine.FlowRunner` (the manager does), with a ``kind`` and
``resource_id`` so recovery knows which resource an unfinished flow holds. Crash tests
derive every task boundary from ``get_flow()`` (``faults.boundaries``), so a new flow gets
crash tests by adding its module to ``tests/functional/test_flow_crash.py``.
"""

# First, before any submodule imports TaskFlow's SQL backend: TaskFlow's migration module
# (and alembic) load only if a worker has something to migrate (logbook_schema). Importing
# the compatibility module already defers it; the call says why it is imported first.
from blockmgr.flows import taskflow_compat as _taskflow_compat

_taskflow_compat.defer_migrations()
