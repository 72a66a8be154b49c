"""The driver contract check run when a driver loads, and the capabilities it records.

A backend must not start serving with a driver that declares a capability (inherits a
capability interface) but lacks one of its methods or has one with an incompatible
signature: the first request needing it would fail in the middle of a flow. So the loader
runs the same structural check as ``blockmgr-manage driver check``
(:func:`blockmgr.drivers.checker.check_driver`) once per driver class, refuses the class with
:class:`~blockmgr.exception.DriverContractError` when it fails, and otherwise records a
:class:`~blockmgr.interface.capabilities.DriverCapabilities`. The manager reads that record
(:func:`capabilities_of`, a dictionary lookup) instead of testing the driver object at each
request.
"""

from __future__ import annotations

import threading

from blockmgr import exception
from blockmgr.drivers import checker
from blockmgr.interface import INTERFACE_CAPABILITIES, VolumeDriver
from blockmgr.interface.capabilities import Capability, DriverCapabilities

_LOCK = threading.Lock()
#: Driver class -> its capabilities, for the classes the check passed.
_VERIFIED: dict[type, DriverCapabilities] = {}
#: Driver class -> its capabilities, for objects built without the loader (not checked).
_CLASSIFIED: dict[type, DriverCapabilities] = {}


def _name(cls) -> str:
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def classify(cls) -> DriverCapabilities:
    """The capabilities ``cls`` declares, without checking that it implements them.

    Interfaces count when inherited; revert when ``revert_to_snapshot`` is overridden (the
    interface's default refuses); online extend when ``online_extend_support`` is true. An
    object that is not a driver class (a test double) declares nothing.
    """
    caps = set()
    if isinstance(cls, type):
        caps = {cap for iface, cap in INTERFACE_CAPABILITIES.items() if issubclass(cls, iface)}
        revert = getattr(cls, "revert_to_snapshot", None)
        if revert is not None and revert is not VolumeDriver.revert_to_snapshot:
            caps.add(Capability.REVERT_TO_SNAPSHOT)
        if getattr(cls, "online_extend_support", False) is True:
            caps.add(Capability.ONLINE_EXTEND)
    return DriverCapabilities(driver=_name(cls), capabilities=frozenset(caps))


def verify_driver_class(cls) -> DriverCapabilities:
    """Check ``cls`` against every interface it declares and record its capabilities.

    Runs the full structural check once per class (later calls return the record).

    :raises DriverContractError: ``cls`` is not a complete ``VolumeDriver``, or an interface
        it inherits has a missing method or an incompatible signature; the message lists
        every problem, per interface.
    """
    recorded = _VERIFIED.get(cls)
    if recorded is not None:
        return recorded
    try:
        report = checker.check_driver(cls)
    except exception.InvalidInput as exc:
        raise exception.DriverContractError(driver=repr(cls), reason=exc.msg) from None
    if not report.ok:
        raise exception.DriverContractError(driver=report.driver, reason=describe(report))
    capabilities = classify(cls)
    with _LOCK:
        return _VERIFIED.setdefault(cls, capabilities)


def describe(report: checker.DriverReport) -> str:
    """Every problem of a failed report, one clause per interface, for the error message."""
    parts = list(report.problems)
    for result in report.interfaces:
        if result.interface == VolumeDriver.__name__ and not result.claimed:
            parts.append("it does not inherit VolumeDriver, which every driver implements")
        if not result.claimed or result.implemented:
            continue
        details = ["missing %s" % ", ".join(result.missing)] if result.missing else []
        details += ["%s: %s" % (name, why) for name, why in sorted(result.mismatched.items())]
        parts.append("it declares %s but %s" % (result.interface, "; ".join(details)))
    return "; ".join(parts) or "it does not implement the driver interfaces"


def capabilities_of(driver) -> DriverCapabilities:
    """The recorded capabilities of ``driver``'s class (an instance or a class).

    A class the loader verified answers from the record. A driver object built without the
    loader (tests, tools) is classified on first use and not verified: what it declares is
    what it gets, as before the loader existed.
    """
    cls = driver if isinstance(driver, type) else type(driver)
    recorded = _VERIFIED.get(cls) or _CLASSIFIED.get(cls)
    if recorded is None:
        recorded = classify(cls)
        with _LOCK:
            recorded = _CLASSIFIED.setdefault(cls, recorded)
    return recorded
