"""The takeover conductor: each cluster member watches the jobboard for flows nobody owns.

A job on the board is *unclaimed* only when its owner stopped renewing the claim (died, or
was cut off from Redis and stopped itself, :mod:`blockmgr.cluster.claims`) or gave it up
(abandon). Every ``takeover_poll_interval`` seconds :class:`TakeoverConductor` lists the
unclaimed jobs, claims each it can (TaskFlow's owner-checked claim script: exactly one
member wins) and finishes the flow from its logbook with
:meth:`~blockmgr.cluster.runner.ClusterFlowRunner.resume` -- run on or reverted, as the
tasks that were running decide (``FlowTask.on_crash``), holding the locks the job recorded.

A job whose flow was never persisted (its owner died between posting and persisting) has
nothing to resume: the job is consumed and the resource it was for, if still in a
transitional status, is settled as start-up recovery settles an orphan
(:mod:`blockmgr.volume.recovery`). A job whose flow is already final (its owner died between
the final commit and consuming the job) is just consumed. A flow that cannot even be loaded
(e.g. its factory is gone) is moved to the board's trash and stays in the logbook for an
operator (``blockmgr-manage flow show``).

Why not TaskFlow's own conductors: they claim without expiry (a dead owner's job stays
claimed forever) and load engines with the job's store *persisted*, while blockmgr injects
its runtime (database, driver, quota) transiently on every load.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Callable

from blockmgr import exception
from blockmgr import periodic
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import persistence as flow_persistence

LOG = logging.getLogger(__name__)


class TakeoverConductor:
    """Takes over the flows of dead peers; see the module docstring.

    :param runner: the member's :class:`~blockmgr.cluster.runner.ClusterFlowRunner`.
    :param manager: the backend's VolumeManager (its runtime, database and orphan rules).
    :param workers: flows taken over at once.
    :param on_takeover: ``on_takeover(flow_uuid, mode)`` after each one (tests, metrics).
    """

    def __init__(self, runner, manager, interval: float, *, workers: int = 4,
                 on_takeover: Callable[[str, str], None] | None = None):
        self.runner = runner
        self.manager = manager
        self.interval = float(interval)
        self.on_takeover = on_takeover
        self.taken_over: list[tuple[str, str]] = []
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = futures.ThreadPoolExecutor(max_workers=workers,
                                                thread_name_prefix="takeover")
        self._stop = threading.Event()
        self._timer: periodic.PeriodicTimer | None = None

    def start(self) -> "TakeoverConductor":
        self._timer = periodic.PeriodicTimer(
            "conductor-%s" % self.runner.owner, self.interval, self._round,
            initial_delay=self.interval).start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop looking for work; flows being taken over finish in their threads."""
        self._stop.set()
        if self._timer is not None:
            self._timer.stop(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def poll_once(self, wait: bool = False) -> int:
        """Claim every unclaimed job this member has room for; returns how many it took
        (``wait``: and finish them before returning)."""
        taken = []
        board = self.runner.board
        for job in board.jobs(only_unclaimed=True):
            if self._stop.is_set() or not self._slots.acquire(blocking=False):
                break
            if not self.runner.claim(job.uuid):
                self._slots.release()
                continue
            LOG.warning("Taking over flow %s (%s %s): its claim expired or was abandoned",
                        job.uuid, (job.details or {}).get("kind"),
                        (job.details or {}).get("resource_id"))
            taken.append(self._pool.submit(self._finish, job.uuid, dict(job.details or {})))
        if wait:
            futures.wait(taken)
        return len(taken)

    def _round(self) -> None:
        try:
            self.poll_once()
        except exception.ClusterUnavailable as exc:
            LOG.warning("Cannot look for flows to take over: %s", exc)
        except Exception:
            LOG.exception("Takeover round failed")

    def _finish(self, flow_uuid: str, details: dict) -> None:
        try:
            mode = self._take_over(flow_uuid, details)
            self.taken_over.append((flow_uuid, mode))
            if self.on_takeover is not None:
                self.on_takeover(flow_uuid, mode)
        except Exception:
            LOG.exception("Taking over flow %s failed", flow_uuid)
        finally:
            self._slots.release()

    def _take_over(self, flow_uuid: str, details: dict) -> str:
        runner = self.runner
        detail = runner.load(flow_uuid)
        if detail is None:
            runner._release(flow_uuid, final=True)
            settle_orphan(self.manager, details.get("kind"), details.get("resource_id"))
            return "orphan"
        if detail.state in flow_persistence.FINAL_FLOW_STATES:
            runner._release(flow_uuid, final=True)
            return "finished"
        try:
            mode, outcome = runner.resume(detail, self.manager.runtime(reschedule=None))
        except Exception:
            LOG.exception("Flow %s cannot be resumed; moved to the jobboard's trash, its "
                          "logbook kept for an operator", flow_uuid)
            runner.board.trash(flow_uuid, runner.owner)
            runner.keeper.discard(flow_uuid)
            return "failed"
        if outcome.failure is not None:
            LOG.info("Flow %s, taken over, ended in failure: %s", flow_uuid, outcome.failure)
        return mode


def settle_orphan(manager, kind: str | None, resource_id: str | None) -> str | None:
    """Settle a resource whose flow was never persisted and that has no open request in
    the ledger (one that has is run by the ledger: its job is only dropped), by start-up
    recovery's rules
    (:data:`~blockmgr.volume.recovery.ORPHAN_HANDLERS`, then ``ORPHAN_STATUS``); returns
    the new status or ``"handled"``, None if it was not (or no longer) transitional."""
    from blockmgr.volume import recovery

    if not kind or not resource_id or kind not in recovery.ORPHAN_STATUS:
        return None
    model = recovery._MODELS[kind]
    try:
        with manager.db.reader() as session:
            status = repository.get(session, model, resource_id).status
            if db_requests.open_resource_ids(session, [resource_id]):
                # Its request is still open in the ledger: a member's sweep runs it.
                return None
    except exception.NotFound:
        return None
    handler = recovery.ORPHAN_HANDLERS.get((kind, status))
    target = recovery.ORPHAN_STATUS[kind].get(status)
    if handler is None and target is None:
        return None
    try:
        if handler is not None:
            handler(manager, resource_id)
            return "handled"
        with manager.db.writer() as session:
            repository.transition(session, model, resource_id, target, expected=(status,),
                                  status_reason="cluster worker died during %s" % status)
    except (exception.NotFound, exception.InvalidStatusTransition):
        return None
    LOG.warning("%s %s was left %s by a dead worker, without a flow; now %s", kind,
                resource_id, status, target or "handled")
    return str(target or "handled")

