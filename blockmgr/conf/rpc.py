"""``[DEFAULT]`` options of the RPC services (``blockmgr-volume``, ``blockmgr-scheduler``).

They sit in ``[DEFAULT]`` where a Cinder operator looks for their namesakes
(``report_interval``, ``service_down_time``, ``backend_stats_polling_interval``).

oslo.messaging registers its own ``[DEFAULT]`` options (``transport_url``,
``control_exchange``, ``rpc_response_timeout``, ``executor_thread_pool_size``) and its tracing
group only when a transport is created, i.e. after start-up validation has rejected a config
file that sets them as "unknown". :func:`register_opts` registers them up front on the
config it is given, which also spares every private ``ConfigOpts`` the
``NoSuchOptError: oslo_messaging_tracing`` (and ``oslo_messaging_metrics``) of a call or
cast (``environment-notes.md``).

**Durable queues by default.** :func:`register_opts` also registers oslo.messaging's
``[oslo_messaging_rabbit]`` options and turns ``amqp_durable_queues`` on (oslo.messaging's
default is off). blockmgr's requests are casts whose only record, until a worker takes them,
is the message: with transient queues a broker restart deletes the queues, and a request
cast before the workers have reconnected and re-declared them is dropped unseen, its
resource stuck in a transitional status. A durable queue (and its binding to the durable
control exchange) survives the restart, oslo.messaging publishes persistent messages, so
both the requests queued at the restart and those cast just after it are kept. The price is
the broker writing each message to disk. An operator may still set it to ``false``.
Switching an existing deployment: oslo.messaging meets the old transient exchange and
queues with a warning ("inequivalent arg 'durable'") and keeps using them until they are
gone -- they are deleted by the next broker restart, after which the daemons declare
durable ones; or delete them by hand. Fanout (capacity reports) and reply queues stay
transient either way (oslo.messaging's choice; nothing is lost with them but a report).
"""

from oslo_config import cfg

opts = [
    cfg.IntOpt("rpc_worker_threads", default=16, min=1,
               help="Threads of a volume backend's RPC server: at most this many requests "
                    "run at once. Further requests stay in the message broker (not in the "
                    "process) until a thread is free, so a stopping worker holds no "
                    "accepted-but-unstarted work. Overrides oslo.messaging's "
                    "``executor_thread_pool_size`` for blockmgr's servers."),
    cfg.IntOpt("report_interval", default=10, min=1,
               help="Seconds between service heartbeats (``services.heartbeat_at``)."),
    cfg.IntOpt("service_down_time", default=60, min=1,
               help="A service whose last heartbeat is older than this many seconds is "
                    "down: the scheduler does not place work on it and ``blockmgr-manage "
                    "service list`` shows it down. Keep it well above report_interval."),
    cfg.IntOpt("backend_stats_polling_interval", default=60, min=3,
               help="Seconds between capacity reports a volume backend sends (fanout) to "
                    "the schedulers. Each report measures the backend (driver stats with "
                    "refresh) and adds the capacity this worker has allocated."),
    cfg.IntOpt("graceful_shutdown_timeout", default=60, min=0,
               help="On SIGTERM a worker stops taking requests and waits this many seconds "
                    "for running operations to finish; operations still running then are "
                    "left in their persisted flows and resumed at the next start."),
    cfg.IntOpt("driver_setup_retries", default=-1, min=-1,
               help="How often a volume backend retries a failed driver setup "
                    "(do_setup + check_for_setup_error) before giving up until the next "
                    "restart; -1 retries forever. Until setup succeeds the backend sends no "
                    "heartbeat (it is down) and takes no requests; the process keeps "
                    "serving its other backends."),
    cfg.FloatOpt("driver_setup_retry_interval", default=1.0, min=0.0,
                 help="Seconds before the first driver setup retry; each further retry "
                      "waits twice as long, up to driver_setup_retry_max_interval."),
    cfg.FloatOpt("driver_setup_retry_max_interval", default=60.0, min=0.0,
                 help="Longest wait between two driver setup retries, in seconds."),
    cfg.IntOpt("api_rpc_retries", default=2, min=-1,
               help="Client library (blockmgr.api): how often a cast or call reconnects to "
                    "an unreachable message broker before it gives up. A cast that gives up loses "
                    "nothing: the request is already recorded in the database and the "
                    "next sweep of its target runs it, so an API request never blocks on a "
                    "broker outage. With the default backoff "
                    "(rabbit_retry_interval 1 s, rabbit_retry_backoff 2 s) 2 retries give up "
                    "after about 4 s. -1 retries forever (the request waits for the broker)."),
]


def _messaging_default_opts():
    import oslo_messaging.opts as messaging_opts

    for group, group_opts in messaging_opts.list_opts():
        if group is None:
            return list(group_opts)
    return []


#: oslo.messaging defaults blockmgr changes (group, option, value); see the module docstring.
MESSAGING_DEFAULTS = [("oslo_messaging_rabbit", "amqp_durable_queues", True)]


def _messaging_group_opts(name: str) -> list:
    import oslo_messaging.opts as messaging_opts

    for group, group_opts in messaging_opts.list_opts():
        if group == name:
            return list(group_opts)
    return []


def register_opts(conf: cfg.ConfigOpts) -> None:
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing

    conf.register_opts(opts)
    conf.register_opts(_messaging_default_opts())
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    for group, name, value in MESSAGING_DEFAULTS:
        conf.register_opts(_messaging_group_opts(group), group=group)
        conf.set_default(name, value, group=group)


def update_sample_defaults() -> None:
    """``oslo.config.opts.defaults`` hook for ``oslo-config-generator``: shows blockmgr's
    defaults of oslo.messaging options (:data:`MESSAGING_DEFAULTS`) in the sample. It changes
    oslo.messaging's option objects, so it is for the generator process only."""
    from oslo_messaging._drivers import amqp
    from oslo_messaging._drivers import impl_rabbit

    for group, name, value in MESSAGING_DEFAULTS:
        if group == "oslo_messaging_rabbit":
            cfg.set_defaults(amqp.amqp_opts + impl_rabbit.rabbit_opts, **{name: value})


def list_opts():
    return [("DEFAULT", opts)]
