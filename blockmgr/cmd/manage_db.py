"""``blockmgr-manage db ...`` (being built; see the foundation and driver issues)."""


def add_parser(subparsers):
    parser = subparsers.add_parser("db", help="db commands (not available yet)")
    parser.set_defaults(handler=_unavailable)


def _unavailable(conf, args):
    raise SystemExit("blockmgr-manage db is not available in this build yet")
