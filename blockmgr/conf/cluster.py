"""``[cluster]`` options: the Redis jobboard, claim expiry and the tooz lock backend used by
backends that set ``cluster = NAME`` in their section (``docs/cluster.md``).

Nothing here is read by a backend without ``cluster``: such a backend needs no Redis.
"""

from oslo_config import cfg

GROUP = "cluster"

opts = [
    cfg.StrOpt("jobboard_url", default="redis://127.0.0.1:6379/0",
               help="Redis server holding the jobboard of every clustered backend of this "
                    "node: ``redis://[:password@]host:port/db``. Every worker of one cluster "
                    "must use the same server and database. Keys are prefixed with "
                    "``blockmgr:<cluster>@<backend>``."),
    cfg.StrOpt("coordination_url",
               help="tooz backend URL for the per-resource locks shared by the workers of a "
                    "cluster, e.g. ``redis://127.0.0.1:6379?lock_timeout=30``. Unset: the "
                    "jobboard's Redis server with ``lock_timeout`` equal to claim_ttl, so a "
                    "dead worker's locks are free by the time its claims expire."),
    cfg.IntOpt("claim_ttl", default=30, min=2,
               help="Seconds a worker's claim on a running flow lives without renewal. A "
                    "worker that dies stops renewing; a peer takes its flows over once the "
                    "claims expire (at most claim_ttl + takeover_poll_interval seconds later)."),
    cfg.FloatOpt("claim_renew_interval", default=10.0, min=0.1,
                 help="Seconds between two renewals of this worker's claims; must be well "
                      "under claim_ttl (a third of it or less). A worker that could not renew "
                      "a claim for 90% of claim_ttl stops itself rather than risk running a "
                      "flow a peer has taken over."),
    cfg.FloatOpt("takeover_poll_interval", default=2.0, min=0.1,
                 help="Seconds between two looks of a worker's conductor at the jobboard "
                      "for flows whose claim expired."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
