"""``[scheduler]`` options: placement retries, capacity weighing, liveness, sweeps."""

from oslo_config import cfg

GROUP = "scheduler"

opts = [
    cfg.IntOpt("scheduler_max_attempts", default=3, min=1,
               help="How many backends a volume create may be tried on before it ends in "
                    "``error``. 1 disables rescheduling: a create that fails on its "
                    "backend is not sent back to the scheduler."),
    cfg.FloatOpt("capacity_weight_multiplier", default=1.0,
                 help="Multiplier of the free-capacity weigher. Positive spreads volumes "
                      "(the pool with the most free space wins); negative stacks them "
                      "(the fullest pool that still fits wins)."),
    cfg.IntOpt("startup_wait", default=10, min=0,
               help="Seconds a freshly started scheduler waits, before placing its first "
                    "volume, for a capacity report from every volume service that is up. "
                    "Requests that arrive meanwhile wait; placement starts as soon as every "
                    "live service has reported."),
    cfg.IntOpt("capabilities_max_age", default=0, min=0,
               help="Seconds after which a backend's last capacity report is too old to "
                    "place volumes on it; 0 means a report stays usable as long as the "
                    "service heartbeats (liveness comes from "
                    "``[DEFAULT] service_down_time``)."),
    cfg.IntOpt("suspect_missed_heartbeats", default=3, min=0,
               help="A volume backend whose heartbeat count has not moved for this many of "
                    "its own heartbeat periods (measured from its heartbeats) is suspected "
                    "dead before ``[DEFAULT] service_down_time`` declares it down: new "
                    "volumes go to other backends while one fits, and to it only when "
                    "none does. 0 disables the suspicion."),
    cfg.IntOpt("stale_create_timeout", default=600, min=0,
               help="A volume still ``creating`` on a backend whose volume service is down, "
                    "placed there and silent (no heartbeat) for at least this many seconds, "
                    "and with no unfinished flow, is moved to ``error`` by the scheduler "
                    "(its request is lost with the worker, or waits in a queue nobody "
                    "reads). If the worker comes back later, the request is refused. "
                    "Checked every 60 s, or every quarter of this timeout if less. "
                    "0 disables the check (such volumes then wait for their worker)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
