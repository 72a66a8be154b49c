"""Start-up imports of a daemon, made without the cyclic garbage collector.

A worker's start is mostly imports (SQLAlchemy, TaskFlow and networkx, oslo.messaging):
hundreds of thousands of long-lived objects -- modules, classes, functions, compiled
expressions -- none of them garbage. Importing them with the collector on makes it run full
collections over that growing graph for nothing (~20 % of the import time here), and every
full collection for the rest of the process's life would walk it again. :func:`preload`
imports with the collector off, then *freezes* what exists (``gc.freeze``: moved to a
permanent generation the collector never scans) and turns it back on.
"""

from __future__ import annotations

import gc
import importlib
from typing import Iterable

#: What a volume worker imports before it serves (the driver comes later, by name).
VOLUME_WORKER_MODULES = (
    "oslo_messaging",
    "blockmgr.logcontext",
    "blockmgr.metrics",
    "blockmgr.quota",
    "blockmgr.flows.engine",
    "blockmgr.volume.service",
    "blockmgr.volume.manager",
    "blockmgr.volume.endpoint",
)


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` with the collector off, then freeze everything allocated so far.

    Call it once, early in ``main`` and before any thread starts. Import errors propagate
    (after the collector is restored).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
