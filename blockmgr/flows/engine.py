"""Running persisted flows: one logbook per backend host, launch, and resume after a crash.

A flow is launched from an importable module-level factory whose keyword arguments are JSON
(``flow_detail.meta['factory']``, TaskFlow's own convention, so ``engines.flow_from_detail``
can rebuild it in a new process). The store holds JSON only (ids, the context as a dict, the
manage reference, request specs). Everything that is not data -- the database, the driver,
the quota engine, the notifier -- travels in a :class:`~blockmgr.flows.common.FlowRuntime`
injected *transiently* as ``runtime`` every time an engine is loaded; it is never persisted.

The flow detail's meta also records ``host``, ``kind``, ``resource_id`` and ``action`` so an
operator (and recovery) can see what each unfinished flow was doing to which resource.

Logbooks: one per backend host (``host@backend``) with a uuid derived from the host name, so
"this backend's unfinished flows" is one indexed query and a restarted worker (or a peer taking
over the host) finds them without any other bookkeeping.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import json
import logging
import threading
import uuid as uuidlib
from typing import Callable

from oslo_utils import uuidutils
from taskflow import exceptions as tf_exc
from taskflow import states as tf_states
from taskflow.engines import helpers as tf_helpers
from taskflow.persistence import models as tf_models
from taskflow.types import failure as tf_failure

from blockmgr import exception
from blockmgr import ledger
from blockmgr import logcontext
from blockmgr import metrics
from blockmgr.db import repository
from blockmgr.flows import common
from blockmgr.flows import faults
from blockmgr.flows import linear
from blockmgr.flows import memory_persistence
from blockmgr.flows import persistence
from blockmgr.flows import taskflow_compat

LOG = logging.getLogger(__name__)

_BOOK_NAMESPACE = uuidlib.UUID("5d0c3f8e-7a55-4f0b-9a51-3c1f3b0f6a10")


def open_persistence(conf, db=None):
    """The persistence backend ``[flows]`` asks for, with its tables created.

    ``db`` (a :class:`blockmgr.db.session.Database`) lends its engine when the logbooks live
    in the service database, so one connection pool serves both.
    """
    url = conf.flows.persistence_connection or conf.database.connection
    prune_on_finish = conf.flows.finished_flow_retention == 0
    if url == "memory":
        return memory_persistence.MemoryPersistence(prune_on_finish=prune_on_finish)
    # Share the service's pool, except on SQLite where oslo.db forces a NullPool (a
    # connect, the pragmas and a WAL checkpoint per transaction); ours pools.
    share = db is not None and db.url == url and not url.startswith("sqlite")
    engine = db.engine if share else None
    backend = persistence.FlowPersistence(
        url, engine=engine, commits=conf.flows.persistence_commits,
        prune_on_finish=prune_on_finish)
    backend.upgrade()
    return backend


def book_uuid(host: str) -> str:
    return str(uuidlib.uuid5(_BOOK_NAMESPACE, host))


@dataclasses.dataclass
class FlowOutcome:
    """How a flow run ended: ``failure`` is None on success."""

    flow_id: str
    engine: object
    failure: BaseException | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    def revert_result(self, task_name: str):
        """What ``task_name``'s revert returned (None if it did not revert)."""
        try:
            return self.engine.storage.get_revert_result(task_name)
        except (tf_exc.NotFound, KeyError):
            return None

    def reraise(self) -> None:
        if self.failure is not None:
            raise self.failure


class FlowRunner:
    """Launches and resumes the flows of one backend host on one persistence backend."""

    def __init__(self, backend, host: str, *, fault: tuple[str, str] | None = None,
                 idle_flows: int = 16):
        """``idle_flows``: built flows kept per operation for reuse (:class:`FlowPool`); as
        many as the flows that run at once (the RPC worker threads), or a run that finds
        every kept copy in use builds a new one."""
        self.backend = backend
        self.host = host
        self.fault = fault
        self._flows = FlowPool(max_idle=idle_flows)
        self.book = tf_models.LogBook("blockmgr-volume:%s" % host, uuid=book_uuid(host))
        self.book.meta = {"host": host}
        if getattr(backend, "closes_flows", False):
            # The request of a flow whose claim was deferred is claimed by the flow's
            # first write, in its transaction (``blockmgr.ledger``).
            backend.first_write = ledger.claim_in
        with contextlib.closing(backend.get_connection()) as conn:
            try:
                conn.get_logbook(self.book.uuid, lazy=True)
            except tf_exc.NotFound:
                try:
                    conn.save_logbook(self.book)
                except Exception:
                    # Another member of the same cluster (one logbook per cluster host)
                    # created it at the same moment: then it exists now.
                    conn.get_logbook(self.book.uuid, lazy=True)

    # --- launching ----------------------------------------------------------------------

    def run(self, factory, *, store: dict, runtime: common.FlowRuntime, kind: str,
            resource_id: str, factory_kwargs: dict | None = None,
            flow_id: str | None = None, transient: dict | None = None) -> FlowOutcome:
        """Persist a new flow built by ``factory(**factory_kwargs)`` and run it to the end.

        ``store`` must be JSON; ``flow_id`` (the flow detail uuid, default: a new one) is
        added to it so tasks can tag what they own (quota reservations) with it.
        ``transient``: values for this run only, never written to the logbook (a resumed
        run does not have them), for optional task arguments such as a row the caller
        has just read.
        """
        flow_id = flow_id or uuidutils.generate_uuid()
        kwargs = factory_kwargs or {}
        with self._flows.checkout(factory, kwargs) as pooled:
            flow = pooled.flow
            fd = tf_models.FlowDetail(flow.name, uuid=flow_id)
            fd.meta.update(copy.deepcopy(pooled.factory_meta))
            fd.meta.update({"host": self.host, "kind": kind, "resource_id": resource_id,
                            "action": common.flow_declaration(flow).action})
            self.backend.add_flow_detail(self.book, fd)
            engine = self._load(flow, fd, runtime, pooled=pooled,
                                store_names=frozenset(store) | {"flow_id"}
                                | frozenset(transient or ()))
            engine.storage.inject(dict(store, flow_id=flow_id))
            if transient:
                engine.storage.inject(transient, transient=True)
            plan = _linear_plan(engine, dict(store, flow_id=flow_id, runtime=runtime,
                                             **(transient or {})))
            if plan is None:
                engine.compile()
                engine.prepare()
            # Nothing is written yet: the detail, its atoms and its store go to the logbook
            # with the first boundary (the first task with a side effect), or not at all
            # when the last task writes the flow's end (close_in) before any boundary.
            outcome = self._run(engine, flow_id, plan=plan)
            if isinstance(outcome.failure, exception.RequestNotClaimed):
                discard = getattr(self.backend, "discard", None)
                if discard is not None:
                    discard(flow_id)   # nothing of it was written
                return outcome
            if not _logbook_failed(outcome.failure):
                return outcome
        return self._after_logbook_failure(flow, outcome, runtime, resource_id)

    def _after_logbook_failure(self, flow, outcome: FlowOutcome,
                               runtime: common.FlowRuntime, resource_id: str) -> FlowOutcome:
        """A logbook write failed while ``flow`` ran: finish it as a restart would.

        The run stopped at the failed write (a boundary write precedes its side effect), so
        the logbook plus what is still staged describe the flow as a crash at that point
        would have left it. Once the logbook takes writes again the flow is loaded back
        and finished with :meth:`resume` (run on, or reverted, by each task's ``on_crash``),
        as :func:`~blockmgr.volume.recovery.recover` does at start -- so the resource does
        not stay transitional until a restart. If the logbook still fails, the resource is
        put in the error status its flow declares
        (:class:`~blockmgr.flows.common.FlowDeclaration`), if any, and the flow is left to
        recovery at the next start. The outcome keeps the
        :class:`~blockmgr.exception.FlowLogbookWriteFailed` unless the resumed flow
        finished.
        """
        flow_id, error = outcome.flow_id, outcome.failure
        error = next((e for e in _causes(error)
                      if isinstance(e, exception.FlowLogbookWriteFailed)), error)
        LOG.warning("Flow %s (%s of %s): %s; finishing it from the logbook", flow_id,
                    common.flow_declaration(flow).action, resource_id, error)
        try:
            try:
                with contextlib.closing(self.backend.get_connection()) as conn:
                    detail = conn.get_flow_details(flow_id)
            except tf_exc.NotFound:   # finished, and pruned with its last write
                return FlowOutcome(flow_id, outcome.engine, error)
            if detail.state in persistence.PRUNABLE_FLOW_STATES:
                return FlowOutcome(flow_id, outcome.engine, error)  # its revert got through
            # Anything else is resumed -- FAILURE too: an engine stopped by an exception
            # marks its flow FAILURE without having reverted it.
            _mode, resumed = self.resume(detail, runtime)
        except Exception as exc:  # the logbook is still failing (or the flow cannot load)
            LOG.error("Flow %s could not be finished now (%s); it is finished when the "
                      "worker restarts", flow_id, exc)
            _error_out(flow, runtime, resource_id, error)
            return FlowOutcome(flow_id, outcome.engine, error)
        if resumed.succeeded or _logbook_failed(resumed.failure):
            return resumed if resumed.succeeded else FlowOutcome(flow_id, resumed.engine,
                                                                 error)
        return resumed

    # --- recovery -----------------------------------------------------------------------

    def unfinished(self) -> list[tf_models.FlowDetail]:
        """This host's flows that were neither finished nor abandoned, oldest first."""
        return self.load_details(self.backend.unfinished_flow_uuids(self.book.uuid))

    def load_details(self, uuids) -> list[tf_models.FlowDetail]:
        """The flow details ``uuids`` with their atoms (missing ones skipped); from the
        database oldest first (creation time, then uuid).

        On :class:`~blockmgr.flows.persistence.FlowPersistence` they are read in batches --
        two queries per :data:`LOAD_BATCH` flows instead of two per flow (recovery of 1,000
        flows read them one by one for seconds); other backends are asked one at a time.
        """
        uuids = list(uuids)
        if isinstance(self.backend, persistence.FlowPersistence):
            details = _load_batched(self.backend, uuids)
        else:
            details = []
            with contextlib.closing(self.backend.get_connection()) as conn:
                for uuid in uuids:
                    try:
                        details.append(conn.get_flow_details(uuid))
                    except tf_exc.NotFound:
                        continue
        return details

    def is_live(self, flow_id: str) -> bool:
        """True while flow ``flow_id`` (of any host) may still act: not finished."""
        return flow_id in self.backend.unfinished_flow_uuids()

    def resume(self, flow_detail: tf_models.FlowDetail,
               runtime: common.FlowRuntime) -> tuple[str, FlowOutcome]:
        """Finish an interrupted flow: run it on, or revert it, as its tasks ask.

        The tasks that were ``RUNNING`` at the crash decide (``on_crash`` of
        :class:`~blockmgr.flows.common.FlowTask`): if any says ``REVERT`` it is marked failed
        with :class:`~blockmgr.exception.FlowInterrupted` and the flow reverts; otherwise the
        flow resumes (those tasks run again). A flow that was already reverting continues
        reverting. Returns ``("resume" | "revert", outcome)``.
        """
        with self._resume_checkout(flow_detail) as pooled:
            return self._resume_pooled(pooled, flow_detail, runtime)

    @contextlib.contextmanager
    def _resume_checkout(self, flow_detail):
        """The flow to resume ``flow_detail`` with: a pooled one of its factory (built and
        compiled once per factory and arguments, as for :meth:`run`), or -- for a detail
        whose factory took positional arguments -- one rebuilt from the detail alone."""
        factory_data = (flow_detail.meta or {}).get("factory") or {}
        name = factory_data.get("name")
        if name and not factory_data.get("args"):
            try:
                factory = taskflow_compat.fetch_factory(name)
            except (ImportError, ValueError, AttributeError):
                factory = None
            if factory is not None:
                with self._flows.checkout(factory, dict(factory_data.get("kwargs") or {})) \
                        as pooled:
                    yield pooled
                return
        yield _DetailFlow(tf_helpers.flow_from_detail(flow_detail))

    def _resume_pooled(self, pooled, flow_detail, runtime) -> tuple[str, FlowOutcome]:
        if _stored_names(flow_detail) is None:
            return "revert", self._discard_unstarted(flow_detail)
        flow = pooled.flow
        tasks = _tasks_by_name(flow)
        interrupted = [ad.name for ad in flow_detail
                       if ad.state == tf_states.RUNNING and ad.name in tasks]
        reverting = (flow_detail.state == tf_states.REVERTING
                     or any(ad.state in (tf_states.REVERTING, tf_states.FAILURE)
                            for ad in flow_detail if ad.name in tasks))
        revert = reverting or any(
            getattr(tasks[name], "on_crash", common.RESUME) == common.REVERT
            for name in interrupted)
        engine = self._load(flow, flow_detail, runtime, pooled=pooled,
                            store_names=_stored_names(flow_detail))
        engine.compile()
        engine.prepare()
        if revert and not reverting:
            for name in interrupted:
                err = exception.FlowInterrupted(flow_id=flow_detail.uuid, task=name)
                engine.storage.save(name, tf_failure.Failure.from_exception(err),
                                    tf_states.FAILURE)
        LOG.info("Recovering flow %s (%s of %s %s): %s", flow_detail.uuid,
                 flow_detail.meta.get("action"), flow_detail.meta.get("kind"),
                 flow_detail.meta.get("resource_id"), "revert" if revert else "resume")
        return ("revert" if revert else "resume"), self._run(engine, flow_detail.uuid,
                                                             resumed=True)

    def _discard_unstarted(self, flow_detail) -> FlowOutcome:
        """End a flow detail that has no store in the logbook: it never started.

        A flow's first own write carries its detail, atoms and store together, and no task
        runs before it; a detail without the store can only be one that something else
        wrote early (a logbook from before that rule: ``persistence.FlowPersistence.flush``).
        It cannot run -- its tasks' arguments are gone -- so it is marked ``REVERTED``
        (pruned like any reverted flow), and its resource, now transitional without a
        flow, is resolved like every such orphan (by its handler, or after the queue drain).
        """
        LOG.warning("Flow %s (%s of %s %s) has no store in the logbook: it never started; "
                    "discarding it", flow_detail.uuid, flow_detail.meta.get("action"),
                    flow_detail.meta.get("kind"), flow_detail.meta.get("resource_id"))
        flow_detail.state = tf_states.REVERTED
        with contextlib.closing(self.backend.get_connection()) as conn:
            conn.update_flow_details(flow_detail)   # a final state: written at once
        return FlowOutcome(flow_detail.uuid, None)

    def prune(self, retention_seconds: int) -> int:
        """Remove finished flows older than ``retention_seconds`` (-1: keep all)."""
        if retention_seconds < 0:
            return 0
        cutoff = (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                  - dt.timedelta(seconds=retention_seconds))
        return self.backend.prune_finished(self.book.uuid, cutoff)

    # --- internals ----------------------------------------------------------------------

    def _load(self, flow, flow_detail, runtime, *, pooled=None, store_names=None):
        engine = taskflow_compat.SerialEngine(flow, flow_detail, self.backend, {}, pooled=pooled,
                               store_names=store_names)
        engine.storage.inject({"runtime": runtime}, transient=True)
        return engine

    def close_in(self, conn, flow_id: str) -> Callable[[], None]:
        """Write the end of flow ``flow_id`` into the caller's transaction on ``conn`` (the
        service database), for its last task's final write (``common.close``): its
        logbook rows are deleted when this backend :attr:`~persistence.FlowPersistence.
        closes_flows`, and the request this thread runs is finished when the flow is that
        request's (:func:`blockmgr.ledger.finish_in`). One commit then records the
        resource's final status, the flow's end and the request's end together: no crash
        can separate them. Returns what to call once the transaction committed."""
        after = []
        if getattr(self.backend, "closes_flows", False):
            after.append(self.backend.close_flow(conn, flow_id))
        if ledger.current_id() == flow_id:
            after.append(ledger.finish_in(conn))
        return lambda: [callback() for callback in after]

    def _run(self, engine, flow_id: str, resumed: bool = False,
             plan: tuple | None = None) -> FlowOutcome:
        """Run ``engine`` to its end; ``plan`` (``(tasks, values)``, :func:`_linear_plan`)
        runs a fresh linear flow with :func:`linear.run`."""
        declare = getattr(self.backend, "declare_atoms", None)
        if declare is not None:
            declare(*_deferrable_atoms(engine))
        listener = faults.listener_for(engine, self.fault)
        try:
            # Log lines carry the request and flow ids; metrics count the run.
            with listener, logcontext.engine_scope(engine), \
                    metrics.observe_flow(engine, resumed):
                # A request whose claim waits for its flow's first write is claimed
                # before the engine runs anything (it may write otherwise, e.g. revert).
                if plan is None:
                    ledger.ensure_claimed()
                    engine.run()
                else:
                    linear.run(engine, *plan, before_engine=ledger.ensure_claimed)
        except Exception as exc:  # the flow reverted; the caller maps the error
            return FlowOutcome(flow_id, engine, exc)
        finally:
            release = getattr(self.backend, "release_closed", None)
            if release is not None:
                release(flow_id)
        return FlowOutcome(flow_id, engine)


def _linear_plan(engine, values: dict) -> tuple | None:
    """``(tasks, values)`` for :func:`linear.run` when ``engine``'s fresh flow is linear and
    :func:`linear.prepare` readied its storage, else None (compile and run the engine)."""
    tasks = _linear_tasks(engine)
    if tasks is None or not linear.prepare(engine, tasks, values):
        return None
    return tasks, values


def _linear_tasks(engine) -> list | None:
    """The tasks :func:`linear.run` runs for ``engine``'s flow, or None (run the engine);
    found once per pooled flow. ``BLOCKMGR_STOCK_ENGINE=linear`` (a benchmark knob, with
    ``taskflow_compat.STOCK_ENGINE_PARTS``) runs every flow on the engine."""
    if taskflow_compat.stock_engine("linear"):
        return None
    pooled = getattr(engine, "pooled", None)
    if pooled is None:
        return linear.tasks_of(taskflow_compat.engine_flow(engine))
    if pooled.linear is _UNKNOWN:
        pooled.linear = linear.tasks_of(pooled.flow)
    return pooled.linear


_UNKNOWN = object()


class PooledFlow:
    """A built flow, its TaskFlow compilation and the store name sets it validated against.

    Used by one engine at a time (:class:`FlowPool`): TaskFlow registers each run's progress
    callback on the task objects themselves, so two concurrent runs must never share them.
    The compilation (execution graph and scope hierarchy) is never mutated by an engine --
    each engine's ``Runtime`` keeps its own per-atom cache -- so it is reused as is.
    """

    def __init__(self, factory, kwargs: dict):
        self.flow = factory(**kwargs)
        self.compilation = None
        self.validated: set[frozenset] = set()
        self.tasks: dict | None = None
        self.linear = _UNKNOWN     # linear.tasks_of(flow), found at the first run
        detail = tf_models.FlowDetail("factory", uuid="factory")
        tf_helpers.save_factory_details(detail, factory, (), kwargs)
        self.factory_meta = detail.meta


class _DetailFlow:
    """A flow rebuilt from a flow detail, not pooled: :class:`PooledFlow`'s attributes."""

    def __init__(self, flow):
        self.flow = flow
        self.compilation = None
        self.validated: set[frozenset] = set()
        self.tasks: dict | None = None
        self.linear = _UNKNOWN


#: Flow details read per batch by :meth:`FlowRunner.load_details` (bound parameters stay
#: well under every database's limit).
LOAD_BATCH = 500


def _load_batched(backend, uuids: list) -> list[tf_models.FlowDetail]:
    """Flow details ``uuids`` with their atoms, two queries per :data:`LOAD_BATCH`; each is
    remembered by ``backend`` as read from the database, as ``get_flow_details`` does."""
    import sqlalchemy as sa

    backend.flush()
    fd_t, ad_t = persistence.TABLES.flowdetails, persistence.TABLES.atomdetails
    convert = taskflow_compat.detail_converter(persistence.TABLES)
    found = []
    for start in range(0, len(uuids), LOAD_BATCH):
        chunk = uuids[start:start + LOAD_BATCH]
        with backend.engine.connect() as conn:
            flows = {row.uuid: (row.created_at, convert.convert_flow_detail(row._mapping))
                     for row in conn.execute(sa.select(fd_t).where(fd_t.c.uuid.in_(chunk)))}
            for row in conn.execute(sa.select(ad_t).where(ad_t.c.parent_uuid.in_(chunk))):
                flows[row.parent_uuid][1].add(convert.convert_atom_detail(row._mapping))
        for created, fd in flows.values():
            backend.remember(fd)
            found.append((created is None, created, fd.uuid, fd))
    found.sort(key=lambda item: item[:2] if item[0] else item[:3])
    return [item[3] for item in found]


def _stored_names(flow_detail) -> frozenset | None:
    """Names the flow's store held when it was launched (what :meth:`FlowRunner.run`
    validated the pooled flow against), read from TaskFlow's injector atom."""
    for ad in flow_detail:
        if ad.name == taskflow_compat.INJECTOR_NAME:
            return frozenset((ad.results or {}).keys())
    return None


class FlowPool:
    """Reuses built flows across runs of the same factory and (JSON) keyword arguments.

    Building a flow is not free: every task's constructor introspects the signatures of its
    ``execute`` and ``revert`` (~2.5 ms for a 7-task flow), and compiling it builds graphs
    (~1 ms). Neither depends on the run: a flow is data-free (the store carries the run's
    data) and blockmgr tasks keep no per-run state (see ``FlowTask``). A checked-out flow
    is used by one run only; concurrent runs of one factory each get their own copy, and at
    most ``max_idle`` copies per key are kept.
    """

    def __init__(self, max_idle: int = 16):
        self.max_idle = max_idle
        self._idle: dict[tuple, list[PooledFlow]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def checkout(self, factory, kwargs: dict):
        key = (factory, json.dumps(kwargs, sort_keys=True))
        with self._lock:
            idle = self._idle.get(key)
            pooled = idle.pop() if idle else None
        if pooled is None:
            pooled = PooledFlow(factory, kwargs)
        yield pooled
        # Not reached when the run raised: a flow whose run blew up is not reused.
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(pooled)


def _causes(error: BaseException | None):
    """``error``, the failures a TaskFlow ``WrappedFailure`` holds, and their causes."""
    seen, queue = set(), [error]
    while queue:
        item = queue.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, tf_exc.WrappedFailure):
            queue.extend(f.exception for f in item)
        queue.extend([item.__cause__, item.__context__])


def _logbook_failed(error: BaseException | None) -> bool:
    return any(isinstance(e, exception.FlowLogbookWriteFailed) for e in _causes(error))


def _error_out(flow, runtime: common.FlowRuntime, resource_id: str, error) -> None:
    """Move the resource to the error status the flow declares, from the statuses it
    expects (``FlowDeclaration.error_status = (model, status, from_statuses)``); best
    effort: the service database may be the one failing."""
    spec = common.flow_declaration(flow).error_status
    if spec is None or runtime is None or runtime.db is None:
        return
    model, status, expected = spec
    values = {"status_reason": str(error)[:255]} if hasattr(model, "status_reason") else {}
    try:
        with runtime.db.writer() as session:
            repository.transition(session, model, resource_id, status, expected=expected,
                                  fetch=False, **values)
    except Exception as exc:
        LOG.error("Could not move %s to %s after a logbook failure: %s", resource_id,
                  status, exc)


def _deferrable_atoms(engine) -> tuple[list[str], list[str]]:
    """Uuids of the atoms of ``engine``'s flow detail whose start may skip its boundary:
    ``(deferrable, closing)`` -- side-effect free and resumed after a crash (the store's
    injector atom too), and last tasks that write their flow's end (``closes_flow``); see
    :meth:`persistence.FlowPersistence.declare_atoms`."""
    pooled = getattr(engine, "pooled", None)
    tasks = getattr(pooled, "tasks", None)
    if tasks is None:
        tasks = _tasks_by_name(taskflow_compat.engine_flow(engine))
        if pooled is not None:
            pooled.tasks = tasks   # the flow's structure never changes once built
    deferrable, closing = [], []
    for ad in taskflow_compat.engine_atom_details(engine):
        if ad.name == taskflow_compat.INJECTOR_NAME:
            deferrable.append(ad.uuid)
            continue
        task = tasks.get(ad.name)
        if task is None or getattr(task, "on_crash", common.RESUME) != common.RESUME:
            continue
        if getattr(task, "closes_flow", False):
            closing.append(ad.uuid)
        elif not getattr(task, "durable_start", True):
            deferrable.append(ad.uuid)
    return deferrable, closing


def _tasks_by_name(flow) -> dict:
    found = {}
    for node, _meta in flow.iter_nodes():
        if hasattr(node, "iter_nodes"):
            found.update(_tasks_by_name(node))
        else:
            found[node.name] = node
    return found
