"""Static conformance check of a driver class against the interfaces (``driver check``).

Unlike Cinder's name-only ``__subclasshook__`` (which accepts any class at all), a class
implements an interface here only when it

1. inherits it (drivers inherit; there is no duck typing),
2. overrides every abstract method of it with a real function (not the abstract one, not a
   staticmethod/classmethod/property or other attribute), and
3. keeps each signature compatible: the interface's parameters with the same names, in the
   same order and of the same kinds; a parameter with a default in the interface keeps a
   default; extra parameters only after them and only with defaults (or ``*args`` /
   ``**kwargs``); ``**kwargs`` where the interface has it; no ``async def`` for a plain method.

The optional methods an interface implements itself (``revert_to_snapshot``,
``manage_existing_source``...) are not required, but a class that overrides one is held to
the same signature rules: the manager calls it as the interface documents.

The loader runs the same check on every driver it loads (:mod:`blockmgr.drivers.contracts`).

Behaviour is what :mod:`blockmgr.testing.conformance` checks; this module only needs the class.
"""

from __future__ import annotations

import dataclasses
import inspect

from blockmgr import exception
from blockmgr.interface import ALL_INTERFACES, DriverBase, VolumeDriver

_P = inspect.Parameter
_KIND_NAMES = {_P.POSITIONAL_ONLY: "positional-only", _P.POSITIONAL_OR_KEYWORD: "positional",
               _P.VAR_POSITIONAL: "*args", _P.KEYWORD_ONLY: "keyword-only",
               _P.VAR_KEYWORD: "**kwargs"}


@dataclasses.dataclass
class InterfaceResult:
    interface: str
    claimed: bool                      # the class inherits the interface
    missing: list[str] = dataclasses.field(default_factory=list)
    mismatched: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def implemented(self) -> bool:
        return self.claimed and not self.missing and not self.mismatched

    @property
    def status(self) -> str:
        if not self.claimed:
            return "not claimed"
        return "implemented" if self.implemented else "incomplete"

    def to_dict(self) -> dict:
        return {"interface": self.interface, "status": self.status, "claimed": self.claimed,
                "implemented": self.implemented, "missing": list(self.missing),
                "mismatched": dict(self.mismatched)}


@dataclasses.dataclass
class DriverReport:
    driver: str                        # module.Class
    interfaces: list[InterfaceResult]
    problems: list[str] = dataclasses.field(default_factory=list)   # class-level problems

    @property
    def ok(self) -> bool:
        """Fully implements VolumeDriver, and every interface it claims is complete."""
        by_name = {r.interface: r for r in self.interfaces}
        return (not self.problems and by_name[VolumeDriver.__name__].implemented
                and all(r.implemented for r in self.interfaces if r.claimed))

    def to_dict(self) -> dict:
        return {"driver": self.driver, "ok": self.ok, "problems": list(self.problems),
                "interfaces": [r.to_dict() for r in self.interfaces]}


def resolve(name_or_path: str):
    """The class for an entry-point name or a dotted ``module.Class`` path.

    :raises ConfigurationError: unknown name (the message lists the known ones) or a dotted
        path that does not import.
    """
    from blockmgr.drivers import loader   # not at import: the loader uses this module

    return loader.find_driver_class(name_or_path, section="driver check")


def check_driver(cls) -> DriverReport:
    """Check ``cls`` against every interface in :data:`blockmgr.interface.ALL_INTERFACES`.

    :raises InvalidInput: ``cls`` is not a class.
    """
    if not inspect.isclass(cls):
        raise exception.InvalidInput(reason="%r is not a class" % (cls,))
    report = DriverReport(driver="%s.%s" % (cls.__module__, cls.__qualname__),
                          interfaces=[check_interface(cls, iface) for iface in ALL_INTERFACES])
    if not issubclass(cls, DriverBase):
        report.problems.append("does not inherit blockmgr.interface.DriverBase (or any "
                               "interface)")
    if inspect.isabstract(cls):
        report.problems.append("cannot be instantiated: abstract methods %s"
                               % ", ".join(sorted(cls.__abstractmethods__)))
    return report


def check_interface(cls, iface) -> InterfaceResult:
    result = InterfaceResult(iface.__name__, claimed=issubclass(cls, iface))
    if not result.claimed:
        return result
    for name in sorted(iface.__abstractmethods__):
        owner, member = _lookup(cls, name)
        if owner is None or getattr(member, "__isabstractmethod__", False):
            result.missing.append(name)
            continue
        if not inspect.isfunction(member):
            result.mismatched[name] = ("must be a plain method (def %s(self, ...)) defined in "
                                       "%s, found %s" % (name, owner.__qualname__,
                                                         _describe(member)))
            continue
        problem = compare_signatures(vars(iface)[name] if name in vars(iface)
                                     else getattr(iface, name), member)
        if problem:
            result.mismatched[name] = problem
    for name in _optional_methods(iface):
        owner, member = _lookup(cls, name)
        if owner is None or owner in iface.__mro__:
            continue   # not overridden: the interface's own default
        if not inspect.isfunction(member):
            result.mismatched[name] = ("overrides the interface's method with %s; it must be "
                                       "a plain method" % _describe(member))
            continue
        problem = compare_signatures(vars(iface)[name], member)
        if problem:
            result.mismatched[name] = problem
    return result


def _optional_methods(iface) -> list[str]:
    """Public methods ``iface`` defines with a default implementation."""
    return sorted(name for name, member in vars(iface).items()
                  if not name.startswith("_") and inspect.isfunction(member)
                  and not getattr(member, "__isabstractmethod__", False))


def _lookup(cls, name):
    """(defining class, raw attribute) of ``name`` following the MRO, without binding."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass, vars(klass)[name]
    return None, None


def _describe(member) -> str:
    if isinstance(member, staticmethod):
        return "a staticmethod"
    if isinstance(member, classmethod):
        return "a classmethod"
    if isinstance(member, property):
        return "a property"
    return "%s %r" % (type(member).__name__, member)


def _fmt(sig: inspect.Signature) -> str:
    return "(%s)" % ", ".join(str(p) for p in list(sig.parameters.values())[1:])


def compare_signatures(expected_fn, actual_fn) -> str | None:
    """None when ``actual_fn`` can stand in for ``expected_fn``; otherwise why not."""
    expected = inspect.signature(expected_fn)
    try:
        actual = inspect.signature(actual_fn)
    except (TypeError, ValueError) as exc:
        return "signature cannot be read: %s" % exc
    want = "expected %s, got %s" % (_fmt(expected), _fmt(actual))
    if inspect.iscoroutinefunction(actual_fn) and not inspect.iscoroutinefunction(expected_fn):
        return "must be a plain (not async) method; " + want
    exp_params = list(expected.parameters.values())[1:]
    act_params = list(actual.parameters.values())
    if not act_params or act_params[0].kind not in (_P.POSITIONAL_ONLY,
                                                    _P.POSITIONAL_OR_KEYWORD):
        return "must take self first; " + want
    act_params = act_params[1:]
    act_var_kw = any(p.kind is _P.VAR_KEYWORD for p in act_params)
    act_named = [p for p in act_params if p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)]
    index = 0
    for exp in exp_params:
        if exp.kind is _P.VAR_KEYWORD:
            if not act_var_kw:
                return "must accept **%s like the interface; %s" % (exp.name, want)
            continue
        if exp.kind is _P.VAR_POSITIONAL:
            if not any(p.kind is _P.VAR_POSITIONAL for p in act_params):
                return "must accept *%s like the interface; %s" % (exp.name, want)
            continue
        if index >= len(act_named):
            return "parameter %r is missing; %s" % (exp.name, want)
        act = act_named[index]
        index += 1
        if act.name != exp.name:
            return ("parameter %d is %r, the interface calls it %r (callers pass it by "
                    "name); %s" % (index, act.name, exp.name, want))
        if act.kind is not exp.kind:
            return "parameter %r is %s, the interface has it %s; %s" % (
                exp.name, _KIND_NAMES[act.kind], _KIND_NAMES[exp.kind], want)
        if exp.default is not _P.empty and act.default is _P.empty:
            return ("parameter %r needs a default like the interface's (callers may omit "
                    "it); %s" % (exp.name, want))
    for extra in act_named[index:]:
        if extra.default is _P.empty:
            return ("extra parameter %r must have a default (callers do not pass it); %s"
                    % (extra.name, want))
    return None
