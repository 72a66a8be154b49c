"""``blockmgr-volume``: the volume worker daemon (one RPC server per enabled backend).

Usage: ``blockmgr-volume --config-file /etc/blockmgr/blockmgr.conf [--debug]``.

Signals:

* ``SIGTERM`` / ``SIGINT``: stop consuming, wait up to ``graceful_shutdown_timeout`` seconds
  for running operations, exit 0. Operations still running then stay in their persisted flows
  and resume at the next start (the process exits without waiting for them).
* ``SIGHUP``: re-read the config files' mutable options, i.e. the log levels (``debug``,
  ``default_log_levels``), without a restart.

Exit status: 0 after a stop, 2 for a configuration error (nothing started). A backend whose
driver cannot be set up does not stop the process (see :mod:`blockmgr.volume.service`).

With ``[metrics] enabled`` it serves ``GET /metrics`` and ``GET /healthcheck`` on ``[metrics]
volume_port``: 503 while the database or the broker is unreachable or a backend is not
serving (still starting, or its driver setup failing), with a JSON body naming the check
(:mod:`blockmgr.health`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from oslo_config import cfg

from blockmgr import exception

LOG = logging.getLogger(__name__)


def load_config(argv) -> cfg.ConfigOpts:
    """The global config from the command line (``--config-file``/``--config-dir``/log
    options), with every enabled backend registered and everything validated."""
    from blockmgr import conf as bm_conf
    from blockmgr.conf import backend, validation

    conf = cfg.CONF
    conf.clear()
    bm_conf.register_all(conf)
    import blockmgr

    conf(list(argv), project="blockmgr", prog="blockmgr-volume",
         version=blockmgr.__version__)
    backend.register_enabled_backends(conf)
    validation.validate(conf)
    return conf


def use_native_threads() -> bool:
    """Select oslo.service's threading backend and keep eventlet out of this process.

    The daemon runs on native threads only (oslo.messaging's threading executor, one thread
    per timer). Left alone, importing oslo.messaging loads oslo.service's default *eventlet*
    backend, and futurist (under TaskFlow) imports eventlet whenever it is installed: about
    0.3 s of start-up (eventlet patches its DNS module at import) for nothing the daemon
    uses. With the threading backend selected and eventlet marked unimportable
    (``sys.modules[name] = None``, which makes ``import eventlet`` raise ImportError), every
    library takes its native-thread path. Must run before anything imports oslo.messaging.

    :returns: False (and changes nothing) when oslo.service's threading backend cannot be
        loaded -- it needs ``cotyledon`` (``oslo.service[threading]``) -- or when another
        backend was already chosen; the daemon then runs as before, only slower to start.
    """
    import importlib.util

    if "eventlet" in sys.modules or importlib.util.find_spec("cotyledon") is None:
        return False
    from oslo_service import backend

    sys.modules["eventlet"] = None   # before the backend: it imports futurist
    try:
        backend.init_backend(backend.BackendType.THREADING)
    except Exception as exc:   # BackendAlreadySelected, or the backend failed to import
        del sys.modules["eventlet"]
        LOG.debug("oslo.service threading backend unavailable: %s", exc)
        return False
    return True


def main(argv=None) -> int:
    started = time.monotonic()
    argv = sys.argv[1:] if argv is None else argv
    from blockmgr import cmd as bm_cmd

    bm_cmd.prepare_process()
    from blockmgr import startup

    startup.preload(startup.VOLUME_WORKER_MODULES)
    try:
        conf = load_config(argv)
    except (exception.BlockmgrError, cfg.Error) as exc:
        print("ERROR: %s" % exc, file=sys.stderr)
        return 2
    from blockmgr import health
    from blockmgr import logcontext
    from blockmgr import metrics
    from blockmgr.volume import service

    logcontext.setup(conf, "blockmgr")   # oslo_log.setup + request/flow ids on every line

    stop = threading.Event()
    reload_logs = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_logs.set())

    try:
        daemon = service.VolumeDaemon(conf)
        endpoint = metrics.serve(conf, "volume_port", [metrics.CapacityCollector(
            lambda: [(b.host, b.last_capabilities) for b in daemon.backends])],
            health=health.process_checks(conf, daemon.db, backends=lambda: daemon.backends))
        daemon.start()
    except exception.BlockmgrError as exc:
        LOG.error("blockmgr-volume cannot start: %s", exc)
        return 2
    threading.Thread(target=_report_ready, args=(daemon, started, stop), daemon=True,
                     name="ready").start()
    while not stop.is_set():
        stop.wait(0.5)
        if reload_logs.is_set():
            reload_logs.clear()
            LOG.info("SIGHUP: reloading log levels from the configuration files")
            conf.mutate_config_files()

    grace = conf.graceful_shutdown_timeout
    LOG.info("Stopping: no new requests; waiting up to %d s for running ones", grace)
    drained = daemon.stop(grace)
    if endpoint is not None:
        endpoint.stop()
    LOG.info("blockmgr-volume stopped (%s)",
             "clean" if drained else "running operations left to resume at next start")
    logging.shutdown()
    if not drained:
        # Worker threads still inside flows would keep the interpreter alive; their flows
        # are persisted and resume at the next start.
        os._exit(0)
    return 0


def _report_ready(daemon, started: float, stop: threading.Event) -> None:
    """Log the ready line and tell systemd (``Type=notify``) once every backend serves, or
    earlier once a backend's driver setup has failed: the process is then up and retrying,
    the backend shows as down (service list, ``/healthcheck``), and systemd must not kill
    it for starting too slowly."""
    from oslo_service import systemd

    notified = False
    while not stop.is_set():
        if daemon.wait_ready(timeout=1.0):
            LOG.info("blockmgr-volume ready: %s serving %.3f s after process start",
                     ", ".join(b.host for b in daemon.backends),
                     _process_age(time.monotonic() - started))
            if not notified:
                systemd.notify_once()
            return
        if not notified and any(b.setup_error for b in daemon.backends):
            systemd.notify_once()
            notified = True


def _process_age(fallback: float) -> float:
    """Seconds since the kernel started this process (interpreter start-up included);
    ``fallback`` where /proc is not available."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            now = float(uptime.read().split()[0])
        return now - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return fallback


if __name__ == "__main__":
    sys.exit(main())
