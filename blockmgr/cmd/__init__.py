"""Console-script entry points: the only code that builds the process-global ``cfg.CONF``.

Every entry point calls :func:`prepare_process` first, before anything imports
oslo.messaging, TaskFlow or oslo.service.
"""

from __future__ import annotations

import warnings

#: The start of the warning eventlet emits when it is imported (its
#: ``EventletDeprecationWarning``, seven lines on stderr).
EVENTLET_WARNING = r"\s*Eventlet is deprecated"


def prepare_process() -> None:
    """Keep eventlet out of a blockmgr program.

    blockmgr runs on native threads only. Left alone, importing oslo.messaging selects
    oslo.service's default *eventlet* backend, which imports eventlet, and eventlet then
    prints its deprecation warning on every command. Selecting oslo.service's threading
    backend first (:func:`blockmgr.cmd.volume.use_native_threads`) means eventlet is never
    imported. The warning filter covers an installation where that backend cannot be
    selected (``cotyledon`` missing): eventlet is imported then, silently.
    """
    warnings.filterwarnings("ignore", message=EVENTLET_WARNING)
    from blockmgr.cmd import volume

    volume.use_native_threads()


def version_string(prog: str) -> str:
    """``<prog> <version>``, what ``--version`` prints."""
    import blockmgr

    return "%s %s" % (prog, blockmgr.__version__)
