"""The tooz coordinator behind a cluster's per-resource locks.

``[cluster] coordination_url`` names any tooz backend. Unset, the locks live on the
jobboard's Redis server with ``lock_timeout = claim_ttl``: a dead worker's locks then free
themselves by the time its claims expire, so the peer taking its flows over is not kept
waiting for them. Lock names are namespaced by the cluster host (``cluster@backend``) so
clusters (and test runs) sharing one Redis never contend.
"""

from __future__ import annotations

import urllib.parse

from blockmgr import exception


def coordination_url(conf, cluster_host: str) -> str:
    """The tooz URL for ``cluster_host``: ``[cluster] coordination_url`` or one derived
    from ``jobboard_url`` (see module docstring); a ``namespace`` is added if missing."""
    url = conf.cluster.coordination_url
    extra = {"namespace": "blockmgr:%s" % cluster_host}
    if not url:
        parts = urllib.parse.urlsplit(conf.cluster.jobboard_url)
        if parts.scheme not in ("redis", "rediss"):
            raise exception.ConfigurationError(
                section="cluster", option="jobboard_url",
                reason="must be a redis:// URL, got %r" % conf.cluster.jobboard_url)
        db = parts.path.strip("/") or "0"
        extra.update({"db": db, "lock_timeout": str(conf.cluster.claim_ttl)})
        if parts.scheme == "rediss":
            extra["ssl"] = "true"
        url = urllib.parse.urlunsplit(("redis", parts.netloc, "", "", ""))
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    for key, value in extra.items():
        query.setdefault(key, value)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def start_coordinator(url: str, member_id: str):
    """A started tooz coordinator (its heartbeat thread keeps held locks alive).

    :raises tooz.ToozError: the backend cannot be reached.
    """
    from tooz import coordination

    coordinator = coordination.get_coordinator(url, member_id.encode())
    coordinator.start(start_heart=True)
    return coordinator
