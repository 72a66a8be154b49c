"""One worker's membership in the cluster of one backend: identity, board, claims, locks.

:class:`ClusterMember` is built by :class:`~blockmgr.volume.service.BackendService` for a
backend whose section sets ``cluster``; a backend without it never imports this module.
"""

from __future__ import annotations

import logging
import os
import uuid

from blockmgr import exception
from blockmgr.cluster import board as cluster_board
from blockmgr.cluster import claims
from blockmgr.cluster import conductor as cluster_conductor
from blockmgr.cluster import coordination
from blockmgr.cluster import runner as cluster_runner
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import persistence as flow_persistence
from blockmgr.volume import locks as bm_locks

LOG = logging.getLogger(__name__)


class ClusterMember:
    """See the module docstring.

    :param persistence: the flow persistence backend (must be a shared SQL database).
    :param member_host: this worker's own ``host@backend``.
    :param on_lost: what to do when a claim is lost (default: stop the process).
    """

    def __init__(self, conf, cluster_host: str, member_host: str, persistence, *,
                 fault=None, on_lost=claims.fail_stop):
        if not isinstance(persistence, flow_persistence.FlowPersistence):
            raise exception.ConfigurationError(
                section="flows", option="persistence_connection",
                reason="cluster %s needs flow logbooks in a database every member reaches; "
                       "'memory' keeps them inside one process" % cluster_host)
        opts = conf.cluster
        if opts.claim_renew_interval * 2 > opts.claim_ttl:
            raise exception.ConfigurationError(
                section="cluster", option="claim_renew_interval",
                reason="%.1f s leaves no room for a failed renewal within claim_ttl = %d s; "
                       "use claim_ttl / 3 or less" % (opts.claim_renew_interval, opts.claim_ttl))
        self.conf = conf
        self.cluster_host = cluster_host
        self.member_host = member_host
        #: Claim owner: this process incarnation (a restarted worker never renews, and so
        #: never resumes, the claims of its previous life).
        self.owner = "%s/%d-%s" % (member_host, os.getpid(), uuid.uuid4().hex[:8])
        self.board = cluster_board.ClusterBoard(opts.jobboard_url, cluster_host, persistence)
        self.coordinator = None
        self.conductor = None
        try:
            self.board.connect()
            url = coordination.coordination_url(conf, cluster_host)
            try:
                self.coordinator = coordination.start_coordinator(url, self.owner)
            except Exception as exc:
                raise exception.ClusterUnavailable(
                    backend=cluster_host, url=url,
                    reason="could not start the lock coordinator: %s" % exc) from exc
        except Exception:
            self.board.close()
            raise
        self.locks = bm_locks.ToozLockRegistry(
            self.coordinator, unavailable=lambda exc: exception.ClusterUnavailable(
                backend=cluster_host, url=url, reason="could not take a lock: %s" % exc))
        self.keeper = claims.ClaimKeeper(self.board, self.owner, opts.claim_ttl,
                                         opts.claim_renew_interval, on_lost=on_lost).start()
        self.runner = cluster_runner.ClusterFlowRunner(
            persistence, cluster_host, board=self.board, keeper=self.keeper,
            locks=self.locks, fault=fault, idle_flows=conf.rpc_worker_threads)
        LOG.info("%s joins cluster %s as %s (claims live %d s, renewed every %.1f s)",
                 member_host, cluster_host, self.owner, opts.claim_ttl,
                 opts.claim_renew_interval)

    def start_conductor(self, manager, **kwargs) -> cluster_conductor.TakeoverConductor:
        """Start taking over dead peers' flows (after start-up recovery)."""
        self.conductor = cluster_conductor.TakeoverConductor(
            self.runner, manager, self.conf.cluster.takeover_poll_interval,
            workers=max(1, min(4, self.conf.rpc_worker_threads)), **kwargs).start()
        return self.conductor

    def stop(self) -> None:
        """Stop taking over and renewing; claims still held expire and peers take over."""
        if self.conductor is not None:
            self.conductor.stop()
        self.keeper.stop()
        if self.coordinator is not None:
            try:
                self.coordinator.stop()
            except Exception:
                LOG.warning("Could not stop the lock coordinator", exc_info=True)
        self.board.close()


def open_member(conf, cluster_host: str, member_host: str, db, **kwargs) -> ClusterMember:
    """A member on the ``[flows]`` persistence of ``conf`` (see :class:`ClusterMember`)."""
    from blockmgr.flows import faults

    return ClusterMember(conf, cluster_host, member_host,
                         flow_engine.open_persistence(conf, db),
                         fault=faults.configured(conf), **kwargs)
