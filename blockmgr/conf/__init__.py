"""Configuration option groups.

Every group lives in its own module exposing ``register_opts(conf)`` and ``list_opts()``.
Config objects are always passed explicitly; only ``blockmgr.cmd`` builds the process-global
``cfg.CONF``. ``register_all`` is the single place that knows every static group; backend
sections are dynamic (named by ``enabled_backends``) and are registered by
``blockmgr.conf.backend.register_backend``.
"""

from oslo_config import cfg
from oslo_log import log

from blockmgr.conf import api
from blockmgr.conf import cluster
from blockmgr.conf import database
from blockmgr.conf import default
from blockmgr.conf import flows
from blockmgr.conf import metrics
from blockmgr.conf import quota
from blockmgr.conf import requests
from blockmgr.conf import scheduler
from blockmgr.conf import rpc

_STATIC_GROUP_MODULES = (default, database, quota, flows, rpc, scheduler, api, cluster, metrics,
                        requests)


def register_all(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every static option group on ``conf`` and return it."""
    for module in _STATIC_GROUP_MODULES:
        module.register_opts(conf)
    # oslo.log's options ([DEFAULT] debug, log_file, log_dir, ...) are valid in every
    # blockmgr config file, so they are known before validation runs. Some are CLI options,
    # which oslo.config only accepts before the command line is parsed.
    log.register_options(conf)
    return conf


def new_config(args=None, config_files=None, validate=True) -> cfg.ConfigOpts:
    """Build a private, fully registered and parsed ConfigOpts.

    Tests and library users call this instead of touching ``cfg.CONF``. With ``validate``
    (the default) unknown options, unknown backend drivers and invalid values raise
    :class:`blockmgr.exception.ConfigurationError` naming the option and section.
    """
    from blockmgr.conf import backend
    from blockmgr.conf import validation

    conf = cfg.ConfigOpts()
    register_all(conf)
    conf(args=list(args or []), project="blockmgr",
         default_config_files=list(config_files or []), validate_default_values=True)
    backend.register_enabled_backends(conf)
    if validate:
        validation.validate(conf)
    return conf
