"""The cluster's jobboard: TaskFlow's Redis jobboard with one job per flow and expiring claims.

TaskFlow's :class:`~taskflow.jobs.backends.impl_redis.RedisJobBoard` keeps a job as a field of
one Redis hash (``<namespace>:listings``) and its claim as a separate key
(``<job key>.owned``) holding the owner's name. Its conductors claim *without* an expiry, so
the claim of a worker that died stays forever. Its ``claim`` can set a TTL, but
``RedisJob.extend_expiry`` re-arms the key whoever owns it -- a worker that lost its claim
would keep a peer's claim alive and never notice. This module adds what cluster mode needs:

* :meth:`ClusterBoard.post_claimed` posts the job of flow ``F`` **and** claims it, in one Lua
  script: the job's uuid *is* the flow's uuid, so there is at most one job per flow
  (``HSETNX``), and there is no instant at which a peer could claim a job that its poster is
  about to run.
* :meth:`ClusterBoard.renew` re-arms a claim only if it is still held by the caller (Lua:
  ``GET owner == me`` then ``PEXPIRE``), and says whether it was.
* :meth:`ClusterBoard.adopt` posts an *unclaimed* job for a flow that has none (a flow
  persisted before the cluster was configured, or whose job was lost with Redis' data).

Claim, consume and abandon are TaskFlow's own (owner-checked Lua scripts).
"""

from __future__ import annotations

import contextlib
import logging

from oslo_utils import timeutils
from taskflow import exceptions as tf_exc
from taskflow.jobs import base as tf_jobs
from taskflow.jobs.backends import impl_redis

from blockmgr import exception
from blockmgr.flows import taskflow_compat

LOG = logging.getLogger(__name__)

_POST_CLAIMED = """
local listings_key = KEYS[1]
local owner_key = KEYS[2]
local last_modified_key = KEYS[3]
local job_key = ARGV[1]
local posting = ARGV[2]
local owner = ARGV[3]
local ms_expiry = tonumber(ARGV[4])
local last_modified = ARGV[5]
if redis.call("hsetnx", listings_key, job_key, posting) == 0 then
    return 0
end
redis.call("set", owner_key, owner, "PX", ms_expiry)
redis.call("set", last_modified_key, last_modified)
return 1
"""

_RENEW = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    redis.call("pexpire", KEYS[1], tonumber(ARGV[2]))
    return 1
end
return 0
"""


def _redis_client(url: str):
    from redis import maint_notifications
    from taskflow.utils import redis_utils

    # The probe redis-py 8 sends on every new connection is unknown to Redis < 8 (TaskFlow
    # turns it off for its own clients the same way).
    return redis_utils.RedisClient.from_url(
        url, socket_timeout=5, socket_connect_timeout=5,
        maint_notifications_config=maint_notifications.MaintNotificationsConfig(
            enabled=False))


class ClusterBoard:
    """The jobboard of one clustered backend (``cluster@backend``).

    :param url: Redis URL (``[cluster] jobboard_url``).
    :param cluster_host: ``cluster@backend``; every key is prefixed ``blockmgr:<it>``.
    :param persistence: the flow persistence backend (handed to TaskFlow's board).
    """

    def __init__(self, url: str, cluster_host: str, persistence=None):
        self.url = url
        self.cluster_host = cluster_host
        self.namespace = "blockmgr:%s" % cluster_host
        self._client = _redis_client(url)
        self.board = impl_redis.RedisJobBoard(
            "blockmgr-%s" % cluster_host, {"namespace": self.namespace},
            client=self._client, persistence=persistence)
        self._post_claimed = self._client.register_script(_POST_CLAIMED)
        self._renew = self._client.register_script(_RENEW)

    # --- lifecycle ----------------------------------------------------------------------

    def connect(self) -> None:
        with self.unavailable_as_error("connect to the jobboard"):
            self.board.connect()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.board.close()
        with contextlib.suppress(Exception):
            self._client.close()

    @contextlib.contextmanager
    def unavailable_as_error(self, what: str):
        """Redis failures as :class:`~blockmgr.exception.ClusterUnavailable`."""
        try:
            yield
        except (tf_exc.JobFailure, OSError) as exc:
            raise exception.ClusterUnavailable(
                backend=self.cluster_host, url=self.url,
                reason="could not %s: %s" % (what, exc)) from exc
        except Exception as exc:
            import redis

            if isinstance(exc, redis.RedisError):
                raise exception.ClusterUnavailable(
                    backend=self.cluster_host, url=self.url,
                    reason="could not %s: %s" % (what, exc)) from exc
            raise

    # --- jobs ---------------------------------------------------------------------------

    def _keys(self, flow_uuid: str) -> tuple[bytes, bytes, bytes]:
        b = self.board
        key = flow_uuid.encode("latin-1")
        return (b.listings_key, b.join(key + b.OWNED_POSTFIX),
                b.join(key + b.LAST_MODIFIED_POSTFIX))

    def _posting(self, flow_uuid: str, details: dict) -> bytes:
        posting = tf_jobs.format_posting(flow_uuid, "flow-%s" % flow_uuid,
                                         created_on=timeutils.utcnow(), details=details)
        posting["sequence"] = self._client.incr(self.board.sequence_key)
        return taskflow_compat.board_dumps(self.board, posting)

    def post_claimed(self, flow_uuid: str, owner: str, ttl: float, details: dict) -> bool:
        """Post the job of ``flow_uuid`` claimed by ``owner`` for ``ttl`` seconds.

        :returns: False if the flow already has a job (nothing changed).
        :raises ClusterUnavailable: Redis did not answer.
        """
        with self.unavailable_as_error("post the job of flow %s" % flow_uuid):
            return bool(self._post_claimed(
                keys=list(self._keys(flow_uuid)),
                args=[flow_uuid.encode("latin-1"), self._posting(flow_uuid, details),
                      owner.encode(), int(ttl * 1000),
                      taskflow_compat.board_dumps(self.board, timeutils.utcnow())]))

    def adopt(self, flow_uuid: str, details: dict) -> bool:
        """Post an unclaimed job for ``flow_uuid`` unless it has one; True if posted."""
        listings, _owner, _lm = self._keys(flow_uuid)
        with self.unavailable_as_error("adopt flow %s" % flow_uuid):
            return bool(self._client.hsetnx(listings, flow_uuid.encode("latin-1"),
                                            self._posting(flow_uuid, details)))

    def renew(self, flow_uuid: str, owner: str, ttl: float) -> bool:
        """Re-arm ``owner``'s claim on ``flow_uuid`` for ``ttl`` seconds; False if ``owner``
        no longer holds it (expired, or taken over). Redis errors propagate (the caller
        decides how long it can go without renewing)."""
        _listings, owner_key, _lm = self._keys(flow_uuid)
        return bool(self._renew(keys=[owner_key], args=[owner.encode(), int(ttl * 1000)]))

    def owner(self, flow_uuid: str) -> str | None:
        """Who holds the claim on ``flow_uuid`` now (None: nobody, or no job)."""
        _listings, owner_key, _lm = self._keys(flow_uuid)
        raw = self._client.get(owner_key)
        return raw.decode() if raw else None

    def job(self, flow_uuid: str):
        """The board's job for ``flow_uuid`` (a TaskFlow ``RedisJob``) or None."""
        for job in self.jobs():
            if job.uuid == flow_uuid:
                return job
        return None

    def jobs(self, only_unclaimed: bool = False) -> list:
        """Every job on the board (TaskFlow ``RedisJob`` objects), oldest first."""
        return sorted(self.board.iterjobs(only_unclaimed=only_unclaimed, ensure_fresh=True),
                      key=lambda j: j.sequence)

    def claim(self, flow_uuid: str, owner: str, ttl: float) -> bool:
        """Claim the job of ``flow_uuid`` for ``ttl`` seconds; False if someone else holds
        it or there is no such job. (TaskFlow's script: an unowned job only.)"""
        try:
            self.board.claim(_Ref(self.board, flow_uuid), owner, expiry=ttl)
        except (tf_exc.UnclaimableJob, tf_exc.NotFound):
            return False
        return True

    def details(self, flow_uuid: str) -> dict | None:
        """The details the job of ``flow_uuid`` was posted with (None: no job)."""
        raw = self._client.hget(self.board.listings_key, flow_uuid.encode("latin-1"))
        if raw is None:
            return None
        return taskflow_compat.board_loads(self.board, raw).get("details") or {}

    def consume(self, flow_uuid: str, owner: str) -> bool:
        """Remove the finished job of ``flow_uuid`` (only while ``owner`` holds its claim)."""
        job = _Ref(self.board, flow_uuid)
        try:
            self.board.consume(job, owner)
        except (tf_exc.NotFound, tf_exc.JobFailure) as exc:
            LOG.warning("Could not consume the job of flow %s as %s: %s", flow_uuid, owner, exc)
            return False
        return True

    def abandon(self, flow_uuid: str, owner: str) -> bool:
        """Give up ``owner``'s claim on ``flow_uuid`` at once (a peer may take it)."""
        job = _Ref(self.board, flow_uuid)
        try:
            self.board.abandon(job, owner)
        except (tf_exc.NotFound, tf_exc.JobFailure):
            return False
        return True

    def trash(self, flow_uuid: str, owner: str) -> bool:
        """Move a job nobody can run (its flow failed to load) to the board's trash, where
        an operator finds it; the flow stays in the logbook."""
        job = _Ref(self.board, flow_uuid)
        try:
            self.board.trash(job, owner)
        except (tf_exc.NotFound, tf_exc.JobFailure):
            return False
        return True

    def flow_uuids(self) -> set[str]:
        """Uuids of the flows that have a job on the board."""
        return {k.decode("latin-1") for k in self._client.hkeys(self.board.listings_key)}


class _Ref:
    """The two attributes TaskFlow's owner-checked scripts read from a job."""

    def __init__(self, board, flow_uuid: str):
        key = flow_uuid.encode("latin-1")
        self.uuid = flow_uuid
        self.key = key
        self.owner_key = board.join(key + board.OWNED_POSTFIX)
        self.last_modified_key = board.join(key + board.LAST_MODIFIED_POSTFIX)
