"""Cluster mode: several workers serving one backend together (``docs/cluster.md``).

A backend section with ``cluster = NAME`` is served by every worker configured so, as
``NAME@backend``: one RPC server name, one services row, one volume ``host``, one logbook.
Work is shared through a TaskFlow jobboard on Redis (:mod:`.board`), with claims that
expire unless renewed (:mod:`.claims`); a flow runs only under its job's claim
(:mod:`.runner`), and each member's conductor takes over flows whose claims expired
(:mod:`.conductor`). Per-resource locks are tooz locks (:mod:`.coordination`,
:class:`blockmgr.volume.locks.ToozLockRegistry`). :mod:`.member` wires it together for one
backend. Backends without ``cluster`` use none of this and need no Redis.
"""

from blockmgr import exception


def cluster_host(conf, backend_name: str) -> str | None:
    """``cluster@backend`` when backend ``backend_name`` sets ``cluster``, else None.

    :raises ConfigurationError: the cluster name cannot be the host part of a host name.
    """
    try:
        name = conf[backend_name].cluster
    except Exception:   # the section is not registered (a test's own service)
        return None
    if not name:
        return None
    if any(c in name for c in "@#:/ \t"):
        raise exception.ConfigurationError(
            section=backend_name, option="cluster",
            reason="%r cannot name a cluster: it becomes the host part of %s@%s, so it may "
                   "not contain '@', '#', ':', '/' or spaces" % (name, name, backend_name))
    return "%s@%s" % (name, backend_name)
