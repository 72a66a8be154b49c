"""``[DEFAULT]`` options: identity of this host, where state lives, which backends run."""

import os
import socket

from oslo_config import cfg

opts = [
    cfg.HostAddressOpt(
        "host",
        default=socket.gethostname(),
        sample_default="<hostname>",
        help="Name of this node. Volume workers serve ``<host>@<backend>``; it must be "
             "unique per node and stable across restarts, because in-flight flows and "
             "resources are recorded against it."),
    cfg.StrOpt(
        "state_path",
        default=os.path.join(os.path.expanduser("~"), ".local", "share", "blockmgr"),
        sample_default="$HOME/.local/share/blockmgr",
        help="Directory for blockmgr's local state (the embedded SQLite database, the "
             "loopback backend's default volume directory, lock files)."),
    cfg.ListOpt(
        "enabled_backends",
        default=[],
        help="Names of the backend sections this node serves. Each name must have a "
             "config section of the same name that sets ``volume_driver``."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)


def list_opts():
    return [("DEFAULT", opts)]
