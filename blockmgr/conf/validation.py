"""Start-up validation: unknown options and invalid values fail before anything runs.

oslo.config ignores options it does not know and only parses a value when it is first read,
so a typo or a bad value would otherwise surface late (or never). ``validate`` reads every
config file again, rejects options that no registered group declares, and reads every
registered option once so a bad value raises now, naming its section and option.
"""

import glob
import os

from oslo_config import cfg

from blockmgr import exception

#: Sections owned by libraries that register their options lazily (at transport or
#: middleware creation); their contents are validated by those libraries.
LIBRARY_SECTION_PREFIXES = ("oslo_", "keystone_authtoken", "coordination", "profiler",
                            "cors", "healthcheck", "ssl")


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


def _known_keys(conf: cfg.ConfigOpts) -> dict[str, set[str]]:
    """section -> option names oslo.config accepts there, deprecated aliases included."""
    known: dict[str, set[str]] = {}
    groups = [None] + [name for name in conf
                       if isinstance(conf[name], cfg.ConfigOpts.GroupAttr)]
    for group_name in groups:
        section = group_name or "DEFAULT"
        for opt in _group_opts(conf, group_name):
            known.setdefault(section, set()).add(opt.dest)
            for old in opt.deprecated_opts:
                old_section = old.group or section
                old_name = (old.name or opt.dest).replace("-", "_")
                known.setdefault(old_section, set()).add(old_name)
    return known


def validate(conf: cfg.ConfigOpts, unchecked_sections=()) -> None:
    """Raise ConfigurationError for unknown sections/options and invalid values.

    ``unchecked_sections`` are sections the caller knowingly did not register (a command that
    does not touch the backends skips loading their drivers); their contents are checked by the
    programs that serve them.
    """
    known = _known_keys(conf)
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
    for group_name in [None] + sorted(conf.list_all_sections()):
        if group_name is not None and group_name not in conf:
            continue
        for opt in _group_opts(conf, group_name):
            try:
                conf[group_name][opt.dest] if group_name else conf[opt.dest]
            except (cfg.ConfigFileValueError, ValueError) as exc:
                section = group_name or "DEFAULT"
                raise exception.ConfigurationError(
                    section=section, option=opt.dest,
                    reason=_invalid_value_reason(sections, section, opt.dest, exc)) from None
            except cfg.RequiredOptError:
                raise exception.ConfigurationError(
                    section=group_name or "DEFAULT", option=opt.dest,
                    reason="a value is required") from None


def _invalid_value_reason(sections: dict, section: str, option: str, exc: Exception) -> str:
    """``invalid value '150': Should be less than or equal to 100`` (without oslo's
    LocationInfo noise; the section and option are named by the error itself)."""
    why = str(exc).rpartition(" is not valid: ")[2] or str(exc)
    raw = sections.get(section, {}).get(option)
    if raw:
        return "invalid value %r: %s" % (raw[-1], why)
    return "invalid value: %s" % why


def _group_opts(conf: cfg.ConfigOpts, group_name):
    if group_name is None:
        return [info["opt"] for info in conf._opts.values()]  # noqa: SLF001 (no public API)
    group = conf._get_group(group_name)  # noqa: SLF001
    return [info["opt"] for info in group._opts.values()]  # noqa: SLF001
