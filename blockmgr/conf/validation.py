"""Start-up validation: unknown options and invalid values fail before anything runs.

oslo.config ignores options it does not know and only parses a value when it is first read,
so a typo or a bad value would otherwise surface late (or never). ``validate`` reads every
config file again, rejects options that no registered group declares, and reads every
registered option once so a bad value raises now, naming its section and option.

Only oslo.config's public API is used:

* the options registered in this process: iterating the ``ConfigOpts`` (top-level option
  names and group names; a group reads as a ``GroupAttr``) and each group (its option names);
* the deprecated names oslo.config also accepts for them, from the options' declarations:
  blockmgr's own (:func:`blockmgr.conf.opts.list_static_opts`, and each backend's generic and
  driver options), and the libraries' through their ``oslo.config.opts`` entry points (what
  ``oslo-config-generator`` reads); an old name counts only where its option is registered;
* the files as written: ``--config-file`` and ``--config-dir`` re-read with
  ``cfg.ConfigParser``.
"""

import functools
import glob
import importlib.metadata
import os

from oslo_config import cfg

from blockmgr import exception

#: Sections owned by libraries that register their options lazily (at transport or
#: middleware creation); their contents are validated by those libraries.
LIBRARY_SECTION_PREFIXES = ("oslo_", "keystone_authtoken", "coordination", "profiler",
                            "cors", "healthcheck", "ssl")

#: ``oslo.config.opts`` namespaces of the libraries whose options blockmgr registers (the
#: sample generator lists the same, plus ``blockmgr``).
LIBRARY_OPT_NAMESPACES = ("oslo.log", "oslo.messaging")


def _config_files(conf: cfg.ConfigOpts) -> list[str]:
    """The files oslo.config read: ``--config-file`` ones, then ``--config-dir``'s ``*.conf``."""
    paths = list(conf.config_file or [])
    config_dirs = conf.config_dir or []
    if isinstance(config_dirs, str):  # a single string in older oslo.config releases
        config_dirs = [config_dirs]
    for config_dir in config_dirs:
        if os.path.isdir(config_dir):
            paths += sorted(glob.glob(os.path.join(config_dir, "*.conf")))
    return paths


def _parsed_sections(conf: cfg.ConfigOpts) -> dict:
    sections: dict = {}
    for path in _config_files(conf):
        cfg.ConfigParser(path, sections).parse()
    return sections


def _registered(conf: cfg.ConfigOpts) -> dict[str, list[str]]:
    """section -> names of the options registered there, in registration order."""
    registered: dict[str, list[str]] = {"DEFAULT": []}
    for name in conf:
        try:
            value = conf[name]
        except (cfg.Error, ValueError):   # an option with a bad value; reported later
            value = None
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            registered[name] = list(value)
        else:
            registered["DEFAULT"].append(name)
    return registered


def _section_name(group) -> str:
    name = group.name if isinstance(group, cfg.OptGroup) else group
    return name or "DEFAULT"


@functools.lru_cache(maxsize=1)
def _library_opts() -> tuple:
    """``((section, opt), ...)`` of :data:`LIBRARY_OPT_NAMESPACES` (read once a process)."""
    found = []
    for entry_point in importlib.metadata.entry_points(group="oslo.config.opts"):
        if entry_point.name in LIBRARY_OPT_NAMESPACES:
            for group, opts in entry_point.load()():
                found += [(_section_name(group), opt) for opt in opts]
    return tuple(found)


def _declared_opts(conf: cfg.ConfigOpts, registered: dict) -> list:
    """``[(section, opt)]``: the declarations of the options that may be registered."""
    from blockmgr.conf import backend
    from blockmgr.conf import opts as bm_opts
    from blockmgr.drivers import loader

    declared = list(_library_opts())
    for group, opts in bm_opts.list_static_opts():
        declared += [(_section_name(group), opt) for opt in opts]
    for name in conf.enabled_backends or []:
        if name not in registered:
            continue   # not loaded by this command
        driver_cls = loader.find_driver_class(conf[name].volume_driver, section=name)
        declared += [(name, opt) for opt in backend.GENERIC_OPTS + list(driver_cls.list_opts())]
    return declared


def _known_keys(conf: cfg.ConfigOpts, registered: dict) -> dict[str, set[str]]:
    """section -> option names oslo.config accepts there, deprecated aliases included."""
    known = {section: set(names) for section, names in registered.items()}
    aliases: dict[str, set[str]] = {}
    for section, opt in _declared_opts(conf, registered):
        if opt.dest not in known.get(section, ()):
            continue
        for old in opt.deprecated_opts:
            old_section = old.group or section
            old_name = (old.name or opt.dest).replace("-", "_")
            aliases.setdefault(old_section, set()).add(old_name)
    for section, names in aliases.items():
        known.setdefault(section, set()).update(names)
    return known


def validate(conf: cfg.ConfigOpts, unchecked_sections=()) -> None:
    """Raise ConfigurationError for unknown sections/options and invalid values.

    ``unchecked_sections`` are sections the caller knowingly did not register (a command that
    does not touch the backends skips loading their drivers); their contents are checked by the
    programs that serve them.
    """
    registered = _registered(conf)
    known = _known_keys(conf, registered)
    sections = _parsed_sections(conf)
    for section, values in sections.items():
        if section in unchecked_sections and section not in known:
            continue
        if section not in known:
            if section.startswith(LIBRARY_SECTION_PREFIXES):
                continue
            raise exception.ConfigurationError(
                section=section, option="*",
                reason="unknown section; backend sections must be listed in "
                       "[DEFAULT] enabled_backends")
        for key in values:
            if key.replace("-", "_") not in known[section]:
                raise exception.ConfigurationError(
                    section=section, option=key, reason="unknown option")
    for section in ["DEFAULT"] + sorted(set(conf.list_all_sections()) - {"DEFAULT"}):
        if section not in registered:
            continue
        values = conf if section == "DEFAULT" else conf[section]
        for name in registered[section]:
            try:
                values[name]
            except (cfg.ConfigFileValueError, ValueError) as exc:
                raise exception.ConfigurationError(
                    section=section, option=name,
                    reason=_invalid_value_reason(sections, section, name, exc)) from None
            except cfg.RequiredOptError:
                raise exception.ConfigurationError(
                    section=section, option=name, reason="a value is required") from None


def _invalid_value_reason(sections: dict, section: str, option: str, exc: Exception) -> str:
    """``invalid value '150': Should be less than or equal to 100`` (without oslo's
    LocationInfo noise; the section and option are named by the error itself)."""
    why = str(exc).rpartition(" is not valid: ")[2] or str(exc)
    raw = sections.get(section, {}).get(option)
    if raw:
        return "invalid value %r: %s" % (raw[-1], why)
    return "invalid value: %s" % why
