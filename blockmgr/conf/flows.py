"""``[flows]`` options: where flow logbooks live, how much is committed, how long they stay."""

from oslo_config import cfg

GROUP = "flows"

opts = [
    cfg.StrOpt("persistence_connection",
               help="Where flow logbooks are persisted: an SQLAlchemy URL, or ``memory`` "
                    "(lost at process exit: tests and benchmarks only). Unset means the "
                    "``[database] connection`` database, which is the normal setting: "
                    "recovery then sees flows and resources in one place."),
    cfg.StrOpt("persistence_commits", default="boundaries",
               choices=[("boundaries", "commit when a task starts or reverts and when a "
                                       "flow ends (about tasks + 2 commits per flow)"),
                        ("every-transition", "commit every atom state change (TaskFlow's "
                                             "stock behaviour, about 4 per task)")],
               help="How often flow progress is committed. With ``boundaries`` a task that "
                    "finished just before a crash runs again on resume, which tasks must "
                    "tolerate anyway (they are idempotent)."),
    cfg.IntOpt("finished_flow_retention", default=0, min=-1,
               help="Seconds a finished (succeeded or reverted) flow stays in the logbook "
                    "for inspection. 0 removes it in the same commit that records its end; "
                    "-1 keeps it forever. Older ones are pruned at worker start. Flows whose "
                    "revert failed are never pruned automatically."),
    cfg.StrOpt("fault_inject",
               help="TEST ONLY. ``before:<task name>`` or ``after:<task name>``: the worker "
                    "process exits immediately (os._exit) at that task boundary, to test "
                    "crash recovery. The BLOCKMGR_FAULT_INJECT environment variable does "
                    "the same and wins over this option. Never set it in production."),
    cfg.IntOpt("recovery_workers", default=0, min=0,
               help="Threads that resume or revert the unfinished flows of a backend when "
                    "its worker starts, before it serves requests. 0 means as many as "
                    "``rpc_worker_threads`` (the concurrency the flows ran with); 1 "
                    "recovers one flow at a time. Each recovered flow holds the locks of "
                    "its resources, and flows sharing a lock are recovered one after the "
                    "other."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
