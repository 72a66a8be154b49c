"""``[requests]`` options: the request ledger's claims, sweeps and retention
(``docs/operators-daemons.md``, "No accepted request is lost")."""

from oslo_config import cfg

GROUP = "requests"

opts = [
    cfg.FloatOpt("claim_ttl", default=30.0, min=1.0,
                 help="Seconds a claim on a request lasts unless its process renews it "
                      "(every third of this while the request runs). A process that dies "
                      "holding claims delays them by at most this much: then any process "
                      "that may run them (a cluster peer, the restarted worker, another "
                      "scheduler) takes them over."),
    cfg.FloatOpt("sweep_interval", default=10.0, min=0.1,
                 help="Seconds between two sweeps of a volume backend or scheduler for "
                      "requests it may run that are pending (their message was lost or "
                      "never sent) or whose claim expired. A request never claimed is "
                      "taken only once it has not changed for this long (its message is "
                      "most likely still queued). Every process also sweeps once when it "
                      "starts, before it consumes messages, and takes every such request."),
    cfg.IntOpt("sweep_batch", default=200, min=1,
               help="Requests taken by one sweep at most; the next sweep takes the rest."),
    cfg.IntOpt("max_attempts", default=5, min=1,
               help="Times a request is tried when its run ends without settling its "
                    "resource (a lost database connection, an interrupted revert). After "
                    "the last one the resource goes to its error status with the cause, "
                    "every reservation the request held is released, and the request is "
                    "marked failed."),
    cfg.FloatOpt("retry_delay", default=2.0, min=0.0,
                 help="Seconds before a request whose run did not settle is tried again; "
                      "doubled after each attempt."),
    cfg.IntOpt("finished_retention", default=86400, min=-1,
               help="Seconds finished requests (done or failed) are kept for inspection "
                    "before the sweeps delete them; -1 keeps them for ever."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
