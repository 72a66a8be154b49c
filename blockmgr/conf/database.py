"""``[database]`` options, owned by oslo.db; blockmgr only sets its own default URL."""

from oslo_config import cfg
from oslo_db import options as db_options

DEFAULT_CONNECTION = "sqlite:///$state_path/blockmgr.sqlite"


def register_opts(conf: cfg.ConfigOpts) -> None:
    db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)


def list_opts():
    return [("database", db_options.database_opts)]
