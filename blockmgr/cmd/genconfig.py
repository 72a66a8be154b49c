"""``blockmgr-config-generator`` (also ``python -m blockmgr.cmd.genconfig``):
oslo-config-generator without eventlet.

The same program and options as ``oslo-config-generator`` (``make sample-config`` runs
``python -m blockmgr.cmd.genconfig --config-file
etc/blockmgr/blockmgr-config-generator.conf``). Listing oslo.messaging's options imports
oslo.messaging, which by default loads eventlet and its deprecation warning; this entry point
selects the native-thread backend first (:func:`blockmgr.cmd.prepare_process`), so the
output is the same and stderr stays quiet.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from blockmgr import cmd

    cmd.prepare_process()
    from oslo_config import generator

    return generator.main(sys.argv[1:] if argv is None else list(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
