"""``blockmgr-manage driver ...``: inspect installed drivers.

``driver check NAME_OR_DOTTED_PATH`` reports which interfaces a driver class fully implements
(inheritance, real function members and signatures; see :mod:`blockmgr.drivers.checker`).
Exit status: 0 when it fully implements VolumeDriver and every interface it claims, 1 when it
does not, 2 when the name cannot be resolved. ``driver list`` shows installed entry points.
Neither needs any backend in the configuration.
"""

from __future__ import annotations

import json
import sys

from blockmgr.drivers import checker, loader


def add_parser(subparsers):
    parser = subparsers.add_parser("driver", help="inspect volume drivers")
    sub = parser.add_subparsers(dest="driver_command", required=True, metavar="SUBCOMMAND")

    check = sub.add_parser("check", help="which interfaces a driver class implements")
    check.add_argument("driver", metavar="NAME_OR_DOTTED_PATH",
                       help="entry-point name (e.g. loopback) or module.Class path")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.set_defaults(handler=_check, needs_backends=False)

    listing = sub.add_parser("list", help="installed driver entry points")
    listing.set_defaults(handler=_list, needs_backends=False)
    parser.set_defaults(needs_backends=False)


def _check(conf, args, out=None) -> int:
    out = out or sys.stdout
    report = checker.check_driver(checker.resolve(args.driver))
    if args.format == "json":
        out.write(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        out.write(format_table(report))
    return 0 if report.ok else 1


def format_table(report: checker.DriverReport) -> str:
    lines = ["Driver: %s" % report.driver, ""]
    width = max(len(r.interface) for r in report.interfaces) + 2
    lines.append("%-*s%s" % (width, "INTERFACE", "STATUS"))
    for result in report.interfaces:
        lines.append("%-*s%s" % (width, result.interface, result.status))
    for result in report.interfaces:
        for name in result.missing:
            lines.append("  %s.%s: missing (not overridden)" % (result.interface, name))
        for name, why in sorted(result.mismatched.items()):
            lines.append("  %s.%s: %s" % (result.interface, name, why))
    for problem in report.problems:
        lines.append("  class: %s" % problem)
    lines += ["", "Result: %s" % ("OK" if report.ok else "NOT CONFORMING")]
    return "\n".join(lines) + "\n"


def _list(conf, args, out=None) -> int:
    out = out or sys.stdout
    for name in loader.known_driver_names():
        out.write("%s\n" % name)
    return 0
