"""Driver discovery through stevedore entry points (namespace ``blockmgr.volume.drivers``).

A backend section names its driver by entry-point name (``loopback``, ``lvm``, or one a
third-party package installs) or by dotted class path. Only the driver a backend enables is
imported. An unknown name fails at start with the list of known names.
"""

from __future__ import annotations

import importlib

from stevedore import driver as sd_driver
from stevedore import exception as sd_exception
from stevedore import extension

from blockmgr import exception

NAMESPACE = "blockmgr.volume.drivers"


def known_driver_names() -> list[str]:
    return sorted(extension.ExtensionManager(NAMESPACE, invoke_on_load=False).names())


def find_driver_class(name: str, section: str = "backend"):
    """Return the driver class for an entry-point name or a dotted ``module.Class`` path."""
    # A dotted path is not looked up as an entry point (stevedore would log "Could not
    # load" for it), unless a package really registered that name.
    if "." not in name or name in known_driver_names():
        try:
            return sd_driver.DriverManager(
                NAMESPACE, name, invoke_on_load=False,
                on_missing_entrypoints_callback=lambda names: None).driver
        except sd_exception.NoMatches:
            pass
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise exception.ConfigurationError(
                section=section, option="volume_driver",
                reason="cannot import %r: %s" % (name, exc)) from None
    raise exception.ConfigurationError(
        section=section, option="volume_driver",
        reason="unknown driver %r; known drivers: %s"
        % (name, ", ".join(known_driver_names()) or "(none installed)"))


def known_driver_classes():
    """(name, class) for every installed driver entry point that imports cleanly."""
    mgr = extension.ExtensionManager(NAMESPACE, invoke_on_load=False)
    return sorted(((ext.name, ext.plugin) for ext in mgr), key=lambda pair: pair[0])
