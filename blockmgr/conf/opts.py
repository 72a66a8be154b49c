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


def list_opts():
    from blockmgr.drivers import loader

    groups = (default.list_opts() + database.list_opts() + quota.list_opts() + flows.list_opts()
              + scheduler.list_opts())
    groups += rpc.list_opts()
    groups += api.list_opts()
    groups += cluster.list_opts()
    groups += metrics.list_opts()
    groups += requests.list_opts()
    backend_opts = list(backend.GENERIC_OPTS)
    for _name, driver_cls in loader.known_driver_classes():
        for opt in driver_cls.list_opts():
            if all(opt.dest != seen.dest for seen in backend_opts):
                backend_opts.append(opt)
    groups.append(("backend", backend_opts))
    return groups
