"""``[scheduler]`` options: placement retries, capacity weighing, sweeps."""

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
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
