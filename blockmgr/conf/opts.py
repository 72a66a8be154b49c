"""Entry point for ``oslo-config-generator`` (namespace ``blockmgr``): every option we own."""

from blockmgr.conf import api
from blockmgr.conf import backend
from blockmgr.conf import cluster
from blockmgr.conf import database
from blockmgr.conf import default
from blockmgr.conf import flows
from blockmgr.conf import metrics
from blockmgr.conf import quota
from blockmgr.conf import requests
from blockmgr.conf import scheduler
from blockmgr.conf import rpc


def list_static_opts():
    """blockmgr's options of every static section (all but the backends'), as
    ``[(group, [opts])]``; imports no driver."""
    return (default.list_opts() + database.list_opts() + quota.list_opts() + flows.list_opts()
            + scheduler.list_opts() + rpc.list_opts() + api.list_opts() + cluster.list_opts()
            + metrics.list_opts() + requests.list_opts())


def list_opts():
    """Every option blockmgr owns: :func:`list_static_opts` plus, under an example
    ``[backend]`` section, the generic backend options and those of every known driver."""
    from blockmgr.drivers import loader

    groups = list_static_opts()
    backend_opts = list(backend.GENERIC_OPTS)
    for _name, driver_cls in loader.known_driver_classes():
        for opt in driver_cls.list_opts():
            if all(opt.dest != seen.dest for seen in backend_opts):
                backend_opts.append(opt)
    groups.append(("backend", backend_opts))
    return groups
