"""Driver discovery through stevedore entry points (namespace ``blockmgr.volume.drivers``).

A backend section names its driver by entry-point name (``loopback``, ``lvm``, or one a
third-party package installs) or by dotted class path. Only the driver a backend enables is
imported. An unknown name fails at start with the list of known names.

:func:`load_driver_class` is what a backend uses: it also checks the class against every
interface it declares (:func:`blockmgr.drivers.contracts.verify_driver_class`), so a driver
lacking a method of a capability it claims fails at load, never at its first request.
:func:`find_driver_class` only resolves the name (option registration, ``driver check``).
"""

from __future__ import annotations

import importlib

from stevedore import driver as sd_driver
from stevedore import exception as sd_exception
from stevedore import extension

from blockmgr import exception
from blockmgr.drivers import contracts
from blockmgr.interface.capabilities import DriverCapabilities

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


def load_driver_class(name: str, section: str = "backend") -> tuple[type, DriverCapabilities]:
    """The driver class for ``name`` (as :func:`find_driver_class`), checked, with the
    capabilities it implements (recorded for the manager, :func:`contracts.capabilities_of`).

    :raises ConfigurationError: unknown name or a dotted path that does not import.
    :raises DriverContractError: the class breaks an interface it declares (the message
        lists every missing method and incompatible signature).
    """
    cls = find_driver_class(name, section=section)
    return cls, contracts.verify_driver_class(cls)


def known_driver_classes():
    """(name, class) for every installed driver entry point that imports cleanly."""
    mgr = extension.ExtensionManager(NAMESPACE, invoke_on_load=False)
    return sorted(((ext.name, ext.plugin) for ext in mgr), key=lambda pair: pair[0])
