"""The flow runner of a cluster member: every flow runs under a claim on its job.

:class:`ClusterFlowRunner` is :class:`~blockmgr.flows.engine.FlowRunner` on the cluster's
logbook (``cluster@backend``: every member sees every flow) with these rules:

* **Launch** (:meth:`run`): before the flow is persisted, its job is posted to the
  jobboard already claimed by this worker (one Lua script, job uuid = flow uuid). The job's
  details record the resource and the lock names the calling thread holds, so a peer taking
  the flow over holds the same locks. The claim is renewed by the :class:`ClaimKeeper`
  while the flow runs.
* **End** (:meth:`_run`): once the flow's final state is committed the job is consumed; a
  flow that stopped without a final state (suspended) has its claim abandoned at once, so a
  peer resumes it without waiting for the expiry.
* **Recovery** (:meth:`unfinished`, :meth:`resume`): of the cluster's unfinished flows, only
  those this worker could claim are returned -- a flow whose job is validly claimed (by a
  live peer, or by this worker's previous incarnation until that claim expires) is left
  alone. Flows without a job (persisted before the cluster existed, or Redis lost its data)
  get an unclaimed one first. A resumed flow holds the locks its job recorded.

A flow therefore runs only in the worker holding its claim; see ``docs/cluster.md`` for the
whole argument.
"""

from __future__ import annotations

import contextlib
import logging

from oslo_utils import uuidutils
from taskflow import exceptions as tf_exc

from blockmgr import exception
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import persistence as flow_persistence

LOG = logging.getLogger(__name__)


class ClusterFlowRunner(flow_engine.FlowRunner):
    """See the module docstring.

    :param backend: the flow persistence (SQL, shared by every member).
    :param cluster_host: ``cluster@backend`` (names the shared logbook).
    :param board: :class:`~blockmgr.cluster.board.ClusterBoard`.
    :param keeper: :class:`~blockmgr.cluster.claims.ClaimKeeper` renewing this worker's claims.
    :param locks: the member's :class:`~blockmgr.volume.locks.ToozLockRegistry`.
    """

    def __init__(self, backend, cluster_host: str, *, board, keeper, locks,
                 fault: tuple[str, str] | None = None, idle_flows: int = 16):
        super().__init__(backend, cluster_host, fault=fault, idle_flows=idle_flows)
        self.board = board
        self.keeper = keeper
        self.locks = locks
        self._job_details: dict[str, dict] = {}

    @property
    def owner(self) -> str:
        return self.keeper.owner

    @property
    def ttl(self) -> float:
        return self.keeper.ttl

    # --- launching ----------------------------------------------------------------------

    def run(self, factory, *, store: dict, runtime, kind: str, resource_id: str,
            factory_kwargs: dict | None = None, flow_id: str | None = None,
            transient: dict | None = None):
        flow_id = flow_id or uuidutils.generate_uuid()
        details = {"kind": kind, "resource_id": resource_id,
                   "locks": self.locks.current_names(), "posted_by": self.owner}
        if not self.board.post_claimed(flow_id, self.owner, self.ttl, details):
            raise exception.Conflict(reason="flow %s already has a job on the cluster "
                                            "jobboard" % flow_id)
        self.keeper.add(flow_id)
        try:
            return super().run(factory, store=store, runtime=runtime, kind=kind,
                               resource_id=resource_id, factory_kwargs=factory_kwargs,
                               flow_id=flow_id, transient=transient)
        finally:
            if self.keeper.holds(flow_id):
                # The flow never reached _run (it failed to build or to persist): whatever
                # was persisted is a peer's to resume (or to discard if nothing was).
                self._release(flow_id, final=False)

    # --- recovery -----------------------------------------------------------------------

    def unfinished(self):
        """The cluster's unfinished flows that this worker has just claimed."""
        claimed = []
        details = super().unfinished()
        if not details:
            return claimed
        on_board = self.board.flow_uuids()
        for detail in details:
            meta = detail.meta or {}
            if detail.uuid not in on_board:
                self.board.adopt(detail.uuid, {"kind": meta.get("kind"),
                                               "resource_id": meta.get("resource_id"),
                                               "locks": [], "posted_by": "adopted"})
            if self.claim(detail.uuid):
                claimed.append(detail)
            else:
                LOG.info("Flow %s (%s of %s %s) is claimed by %s; leaving it to that worker",
                         detail.uuid, meta.get("action"), meta.get("kind"),
                         meta.get("resource_id"), self.board.owner(detail.uuid))
        return claimed

    def claim(self, flow_uuid: str) -> bool:
        """Claim the job of ``flow_uuid`` for this worker; False if someone holds it."""
        if not self.board.claim(flow_uuid, self.owner, self.ttl):
            return False
        self.keeper.add(flow_uuid)
        self._job_details[flow_uuid] = self.board.details(flow_uuid) or {}
        return True

    def resume(self, flow_detail, runtime):
        """Resume or revert a flow this worker claimed, holding the locks its job names."""
        if not self.keeper.holds(flow_detail.uuid):
            raise exception.Conflict(reason="flow %s is not claimed by %s; only the claim "
                                            "holder may resume it"
                                     % (flow_detail.uuid, self.owner))
        names = self._job_details.get(flow_detail.uuid, {}).get("locks") or []
        try:
            with self.locks.hold(names):
                return super().resume(flow_detail, runtime)
        finally:
            self._job_details.pop(flow_detail.uuid, None)
            if self.keeper.holds(flow_detail.uuid):
                self._release(flow_detail.uuid, final=False)

    def load(self, flow_uuid: str):
        """The flow detail of ``flow_uuid``, or None if it was never persisted."""
        try:
            with contextlib.closing(self.backend.get_connection()) as conn:
                return conn.get_flow_details(flow_uuid)
        except tf_exc.NotFound:
            return None

    # --- internals ----------------------------------------------------------------------

    def _run(self, engine, flow_id: str, *args, **kwargs):
        try:
            return super()._run(engine, flow_id, *args, **kwargs)
        finally:
            state = engine.storage.get_flow_state()
            self._release(flow_id, final=state in flow_persistence.FINAL_FLOW_STATES)

    def _release(self, flow_id: str, *, final: bool) -> None:
        """Stop renewing; consume the job of a finished flow, abandon any other's claim."""
        self.keeper.discard(flow_id)
        try:
            if final:
                self.board.consume(flow_id, self.owner)
            else:
                self.board.abandon(flow_id, self.owner)
        except exception.ClusterUnavailable as exc:
            # The claim expires by itself; a peer then finds the flow finished (and just
            # consumes the job) or resumes it.
            LOG.warning("Could not release the job of flow %s: %s", flow_id, exc)
        except Exception:
            LOG.warning("Could not release the job of flow %s", flow_id, exc_info=True)
