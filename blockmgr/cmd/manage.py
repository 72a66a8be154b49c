"""``blockmgr-manage``: the operator CLI.

Each command family lives in its own module under ``blockmgr.cmd.manage_*`` and exposes
``add_parser(subparsers)``; the handler it registers receives ``(conf, args)`` and returns the
process exit code. Config files are given with ``--config-file`` / ``--config-dir`` before the
command, as for every blockmgr program.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from oslo_config import cfg
from oslo_db import exception as db_exception

from blockmgr import exception

COMMAND_MODULES = (
    "blockmgr.cmd.manage_db",
    "blockmgr.cmd.manage_quota",
    "blockmgr.cmd.manage_driver",
    "blockmgr.cmd.manage_service",
    "blockmgr.cmd.manage_resources",
)


def build_parser() -> argparse.ArgumentParser:
    from blockmgr import cmd

    parser = argparse.ArgumentParser(prog="blockmgr-manage",
                                     description="blockmgr operator commands")
    parser.add_argument("--version", action="version",
                        version=cmd.version_string("blockmgr-manage"))
    parser.add_argument("--config-file", action="append", default=[],
                        help="configuration file (may be repeated)")
    parser.add_argument("--config-dir", help="directory of *.conf files to read as well")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def load_config(args, needs_backends: bool = True) -> cfg.ConfigOpts:
    """Build and validate the global config from the command line's config files."""
    from blockmgr import conf as bm_conf
    from blockmgr.conf import backend, validation

    conf = cfg.CONF
    # Forget an earlier parse (a second ``main()`` in one process): command-line options can
    # only be registered while the command line is unparsed.
    conf.clear()
    bm_conf.register_all(conf)
    oslo_args = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    if args.config_dir:
        oslo_args += ["--config-dir", args.config_dir]
    conf(oslo_args, project="blockmgr", default_config_files=[], validate_default_values=True)
    if needs_backends:
        backend.register_enabled_backends(conf)
        validation.validate(conf)
    else:
        validation.validate(conf, unchecked_sections=tuple(conf.enabled_backends))
    return conf


@contextlib.contextmanager
def open_database(conf: cfg.ConfigOpts):
    """The configured database for one command, its connections closed afterwards."""
    from blockmgr.db.session import Database

    db = Database.from_config(conf)
    try:
        yield db
    finally:
        db.dispose()


def main(argv=None) -> int:
    from blockmgr import cmd

    cmd.prepare_process()   # before the command modules import TaskFlow / oslo.messaging
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        conf = load_config(args, needs_backends=getattr(args, "needs_backends", True))
        return int(args.handler(conf, args) or 0)
    except exception.BlockmgrError as exc:
        print("ERROR: %s" % exc, file=sys.stderr)
        return 2
    except cfg.Error as exc:
        print("ERROR: configuration: %s" % exc, file=sys.stderr)
        return 2
    except db_exception.DBError as exc:
        print("ERROR: database (check [database] connection): %s"
              % (exc.inner_exception or exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
