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
import dataclasses
import datetime as dt
import logging
import uuid as uuidlib

from oslo_utils import uuidutils
from taskflow import exceptions as tf_exc
from taskflow import states as tf_states
from taskflow.engines import helpers as tf_helpers
from taskflow.engines.action_engine import engine as tf_engine
from taskflow.persistence import models as tf_models
from taskflow.types import failure as tf_failure

from blockmgr import exception
from blockmgr.flows import common
from blockmgr.flows import faults
from blockmgr.flows import persistence

LOG = logging.getLogger(__name__)

_BOOK_NAMESPACE = uuidlib.UUID("5d0c3f8e-7a55-4f0b-9a51-3c1f3b0f6a10")


def open_persistence(conf, db=None):
    """The persistence backend ``[flows]`` asks for, with its tables created.

    ``db`` (a :class:`blockmgr.db.session.Database`) lends its engine when the logbooks live
    in the service database, so one connection pool serves both.
    """
    url = conf.flows.persistence_connection or conf.database.connection
    if url == "memory":
        return persistence.MemoryPersistence()
    # Share the service's pool, except on SQLite where oslo.db forces a NullPool (a
    # connect, the pragmas and a WAL checkpoint per transaction); ours pools.
    share = db is not None and db.url == url and not url.startswith("sqlite")
    engine = db.engine if share else None
    backend = persistence.FlowPersistence(
        url, engine=engine, commits=conf.flows.persistence_commits,
        prune_on_finish=conf.flows.finished_flow_retention == 0)
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

    def __init__(self, backend, host: str, *, fault: tuple[str, str] | None = None):
        self.backend = backend
        self.host = host
        self.fault = fault
        self.book = tf_models.LogBook("blockmgr-volume:%s" % host, uuid=book_uuid(host))
        self.book.meta = {"host": host}
        with contextlib.closing(backend.get_connection()) as conn:
            try:
                conn.get_logbook(self.book.uuid, lazy=True)
            except tf_exc.NotFound:
                conn.save_logbook(self.book)

    # --- launching ----------------------------------------------------------------------

    def run(self, factory, *, store: dict, runtime: common.FlowRuntime, kind: str,
            resource_id: str, factory_kwargs: dict | None = None,
            flow_id: str | None = None) -> FlowOutcome:
        """Persist a new flow built by ``factory(**factory_kwargs)`` and run it to the end.

        ``store`` must be JSON; ``flow_id`` (the flow detail uuid, default: a new one) is
        added to it so tasks can tag what they own (quota reservations) with it.
        """
        flow_id = flow_id or uuidutils.generate_uuid()
        flow = factory(**(factory_kwargs or {}))
        fd = tf_models.FlowDetail(flow.name, uuid=flow_id)
        tf_helpers.save_factory_details(fd, factory, (), factory_kwargs or {})
        fd.meta.update({"host": self.host, "kind": kind, "resource_id": resource_id,
                        "action": getattr(flow, "blockmgr_action", flow.name)})
        self.backend.add_flow_detail(self.book, fd)
        engine = self._load(flow, fd, runtime)
        engine.storage.inject(dict(store, flow_id=flow_id))
        engine.compile()
        engine.prepare()
        self.backend.flush(flow_id)   # flow detail + atoms + store: durable before task 1
        return self._run(engine, flow_id)

    # --- recovery -----------------------------------------------------------------------

    def unfinished(self) -> list[tf_models.FlowDetail]:
        """This host's flows that were neither finished nor abandoned, oldest first."""
        uuids = self.backend.unfinished_flow_uuids(self.book.uuid)
        details = []
        with contextlib.closing(self.backend.get_connection()) as conn:
            for uuid in uuids:
                details.append(conn.get_flow_details(uuid))
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
        flow = tf_helpers.flow_from_detail(flow_detail)
        tasks = _tasks_by_name(flow)
        interrupted = [ad.name for ad in flow_detail
                       if ad.state == tf_states.RUNNING and ad.name in tasks]
        reverting = (flow_detail.state == tf_states.REVERTING
                     or any(ad.state in (tf_states.REVERTING, tf_states.FAILURE)
                            for ad in flow_detail if ad.name in tasks))
        revert = reverting or any(
            getattr(tasks[name], "on_crash", common.RESUME) == common.REVERT
            for name in interrupted)
        engine = self._load(flow, flow_detail, runtime)
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
        return ("revert" if revert else "resume"), self._run(engine, flow_detail.uuid)

    def prune(self, retention_seconds: int) -> int:
        """Remove finished flows older than ``retention_seconds`` (-1: keep all)."""
        if retention_seconds < 0:
            return 0
        cutoff = (dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                  - dt.timedelta(seconds=retention_seconds))
        return self.backend.prune_finished(self.book.uuid, cutoff)

    # --- internals ----------------------------------------------------------------------

    def _load(self, flow, flow_detail, runtime):
        engine = tf_engine.SerialActionEngine(flow, flow_detail, self.backend, {})
        engine.storage.inject({"runtime": runtime}, transient=True)
        return engine

    def _run(self, engine, flow_id: str) -> FlowOutcome:
        listener = (faults.CrashAtBoundary(engine, self.fault) if self.fault
                    else contextlib.nullcontext())
        try:
            with listener:
                engine.run()
        except Exception as exc:  # the flow reverted; the caller maps the error
            return FlowOutcome(flow_id, engine, exc)
        return FlowOutcome(flow_id, engine)


def _tasks_by_name(flow) -> dict:
    found = {}
    for node, _meta in flow.iter_nodes():
        if hasattr(node, "iter_nodes"):
            found.update(_tasks_by_name(node))
        else:
            found[node.name] = node
    return found
