"""What every driver class has, whatever capabilities it implements."""

from __future__ import annotations

import abc

from oslo_config import cfg


class DriverBase(abc.ABC):
    """Construction and configuration shared by all drivers.

    A driver is built with the backend's config section (``conf[backend_name]``, a
    ``cfg.ConfigOpts.GroupAttr``) and the backend name, and must not touch the database or any
    global config. ``list_opts()`` returns the driver's own options; they are registered into
    every backend section that selects this driver and appear in the sample config.
    """

    #: Version string reported in stats.
    VERSION = "1.0.0"

    def __init__(self, configuration, backend_name: str, host: str | None = None):
        self.configuration = configuration
        self.backend_name = backend_name
        self.host = host

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return []
