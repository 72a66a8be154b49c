"""``[metrics]`` options: the Prometheus endpoint of the blockmgr daemons.

Each daemon serves its own process's metrics on its own port, so a volume worker and a
scheduler on one machine can share a config file. The REST API serves them on its own HTTP
port under ``/metrics`` instead (see ``docs/metrics.md``).
"""

from oslo_config import cfg

GROUP = "metrics"

opts = [
    cfg.BoolOpt("enabled", default=False,
                help="Serve Prometheus metrics over HTTP from blockmgr-volume and "
                     "blockmgr-scheduler (GET /metrics on the ports below)."),
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address the metrics endpoints listen on. The endpoint has no "
                            "authentication: keep it on a management network."),
    cfg.PortOpt("volume_port", default=9361,
                help="Port of blockmgr-volume's metrics endpoint; 0 picks a free port "
                     "(logged at start)."),
    cfg.PortOpt("scheduler_port", default=9362,
                help="Port of blockmgr-scheduler's metrics endpoint; 0 picks a free port "
                     "(logged at start)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
