"""Per-backend sections: one ``[<name>]`` section for each name in ``enabled_backends``.

The generic options below apply to every backend; the driver named by ``volume_driver``
contributes its own options (``Driver.list_opts()``) to the same section. A driver name that
no entry point knows fails here, at start, with the list of known names.
"""

from oslo_config import cfg

from blockmgr import exception

GENERIC_OPTS = [
    cfg.StrOpt("volume_driver", required=True,
               help="Driver serving this backend: an entry-point name in the "
                    "``blockmgr.volume.drivers`` namespace (``loopback``, ``lvm``, or one a "
                    "third-party package installs) or a dotted path to a driver class."),
    cfg.StrOpt("volume_backend_name",
               help="Backend name reported to the scheduler (defaults to the section name)."),
    cfg.IntOpt("reserved_percentage", default=0, min=0, max=100,
               help="Percentage of backend capacity kept free: the scheduler never places "
                    "volumes into it."),
    cfg.FloatOpt("max_over_subscription_ratio", default=20.0, min=1.0,
                 help="How far provisioned capacity may exceed real capacity on thin "
                      "backends (1.0 disables over-subscription)."),
    cfg.StrOpt("storage_availability_zone", default="nova",
               help="Availability zone of this backend: recorded on its service row, listed "
                    "by GET /os-availability-zone, and matched by the scheduler against the "
                    "zone a create names."),
    cfg.StrOpt("cluster",
               help="Name of the active-active cluster this backend belongs to. Workers of one "
                    "cluster share the backend and its work; unset means this node serves "
                    "the backend alone."),
]


def register_backend(conf: cfg.ConfigOpts, name: str) -> None:
    """Register the generic and the driver-specific options of backend section ``name``."""
    from blockmgr.drivers import loader

    if name in ("DEFAULT", "database", "quota", "flows", "cluster", "metrics", "requests",
                "scheduler", "api"):
        raise exception.ConfigurationError(
            section="DEFAULT", option="enabled_backends",
            reason="%r is a reserved section name and cannot be a backend" % name)
    conf.register_opts(GENERIC_OPTS, group=name)
    # oslo.config enforces ``required`` only for options registered before parsing, and a
    # backend's options are registered after it; so the check is made here.
    driver_name = conf[name].volume_driver
    if not driver_name:
        raise exception.ConfigurationError(
            section=name, option="volume_driver",
            reason="backend %r is listed in [DEFAULT] enabled_backends but its section "
                   "does not set volume_driver" % name)
    driver_cls = loader.find_driver_class(driver_name, section=name)
    conf.register_opts(list(driver_cls.list_opts()), group=name)


def register_enabled_backends(conf: cfg.ConfigOpts) -> None:
    seen = set()
    for name in conf.enabled_backends:
        if name in seen:
            raise exception.ConfigurationError(
                section="DEFAULT", option="enabled_backends",
                reason="backend %r is listed twice" % name)
        seen.add(name)
        register_backend(conf, name)


def list_opts():
    """The generic backend options, shown in the sample under an example section name."""
    return [("backend", GENERIC_OPTS)]
