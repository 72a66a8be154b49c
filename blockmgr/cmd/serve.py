"""``blockmgr serve``: the whole service in one process, on embedded defaults.

Usage::

    blockmgr serve [--state-dir DIR] [--host 127.0.0.1] [--port 8776]
                   [--config-file FILE ...] [--debug]

One process runs the REST API (uvicorn), the scheduler and a volume worker over the
in-process transport -- :class:`blockmgr.allinone.AllInOne`, the same services and flows as
the distributed daemons. Unless the config files say otherwise, state lives in the state
directory (``--state-dir``, default ``[DEFAULT] state_path``, ``~/.local/share/blockmgr``):
the SQLite database (created and migrated at start) and the ``loopback`` backend's volume
files. ``docs/serve.md`` has the details.

Start-up order: config -> exclusive lock on the state directory -> bind the port (so a taken
port or a second ``serve`` on the same state fails at once, exit 1, before anything is
touched) -> migrate, recover unfinished flows, start the services -> serve HTTP -> print the
ready line on stdout. Logs go to stderr.

Signals: ``SIGINT`` (Ctrl-C) / ``SIGTERM`` stop accepting HTTP requests, stop placing, give
running operations ``graceful_shutdown_timeout`` seconds, exit 0; a second Ctrl-C exits at
once. Operations cut short stay in their persisted flows and are resumed (or reverted) by the
next start on the same state directory.

Exit status: 0 after a stop, 1 when the service cannot start (port taken, state directory in
use, database unusable), 2 for a usage or configuration error. After a stop the process ends
with ``os._exit`` once everything is stopped and flushed, so :func:`main` returns only when
the service did not start.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import threading

from oslo_config import cfg

from blockmgr import exception

LOG = logging.getLogger(__name__)

PROG = "blockmgr serve"
READY_PREFIX = "blockmgr serve ready at "
LOCK_FILE = "serve.lock"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run the REST API, the scheduler and a volume worker in one "
                               "process, with state in one directory (docs/serve.md).")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="directory for the database and the volume files (default: "
                             "[DEFAULT] state_path, ~/.local/share/blockmgr)")
    parser.add_argument("--host", metavar="ADDRESS",
                        help="address the REST API listens on (default: [api] bind_host, "
                             "127.0.0.1)")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help="TCP port of the REST API (default: [api] bind_port, 8776; "
                             "0 picks a free one)")
    parser.add_argument("--config-file", action="append", default=[], metavar="FILE",
                        help="config file overriding the embedded defaults (repeatable)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser


def load_config(args) -> cfg.ConfigOpts:
    """The global config: every option group, the given files, then the embedded
    defaults for whatever they left unset (:func:`blockmgr.allinone.embedded_config`).

    Only the files named on the command line are read: a distributed deployment's
    ``/etc/blockmgr/blockmgr.conf`` on the same machine must not turn ``serve`` into a
    member of it by accident.
    """
    from blockmgr import allinone
    from blockmgr import conf as bm_conf

    conf = cfg.CONF
    conf.clear()
    bm_conf.register_all(conf)
    # Logs to stderr by default: stdout carries the ready line.
    conf.set_default("use_stderr", True)
    oslo_args = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    if args.debug:
        oslo_args.append("--debug")
    conf(oslo_args, project="blockmgr", prog=PROG, default_config_files=[],
         validate_default_values=True)
    return allinone.embedded_config(conf, args.state_dir)


def lock_state_dir(state_dir: str):
    """Hold an exclusive lock on ``state_dir`` for the life of the process.

    Two nodes on one state directory would each "recover" the other's running flows.
    The lock is an ``flock`` on ``serve.lock`` (released by the kernel when the process
    ends, however it ends); the file records the holder's pid for the message.

    :raises ServiceStartError: another process holds it.
    """
    path = os.path.join(state_dir, LOCK_FILE)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise exception.ServiceStartError(
            service=PROG, reason="the state directory %s is in use by another blockmgr "
                                 "serve (pid %s). Stop that one, or give this one its own "
                                 "--state-dir" % (state_dir, holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write("%d\n" % os.getpid())
    handle.flush()
    return handle


def describe(conf, node) -> dict[str, str]:
    """What the ready line reports: database, volume directories, attach mode."""
    import sqlalchemy

    from blockmgr.drivers.loopback import options as lb_options

    try:
        database = sqlalchemy.engine.make_url(conf.database.connection).render_as_string(
            hide_password=True)
    except Exception:
        database = "(unparsable URL)"
    volumes, attach = [], []
    for backend in node.volumes.backends:
        section = conf[backend.backend_name]
        directory = getattr(backend.driver, "directory", None)
        if directory is None and "loopback_directory" in section:
            directory = section.loopback_directory.replace(lb_options.BACKEND_PLACEHOLDER,
                                                           backend.backend_name)
        volumes.append("%s (%s)" % (directory or "managed by the driver",
                                    backend.backend_name))
        if "loopback_attach" in section:
            attach.append(_attach_mode(section.loopback_attach))
    return {"database": database, "volumes": ", ".join(volumes) or "none",
            "attach": "; ".join(sorted(set(attach))) or "not applicable"}


def _attach_mode(mode: str) -> str:
    from blockmgr.drivers.loopback import options as lb_options

    if mode != lb_options.ATTACH_FILE:
        if os.path.exists("/dev/loop-control"):
            return "yes (running as root: attaching a volume gives a loop device)"
        return ("no: /dev/loop-control is missing (no loop driver in this kernel or "
                "container); attaching will fail")
    if os.geteuid() != 0:
        return ("no: not running as root, so attaching hands out the volume file itself "
                "(run as root for loop devices)")
    return "no: loopback_attach = file, attaching hands out the volume file itself"


def ready_text(url: str, conf, info: dict[str, str], all_ready: bool) -> str:
    lines = [READY_PREFIX + url + " (Ctrl-C to stop)",
             "  state directory: %s" % conf.state_path,
             "  database:        %s" % info["database"],
             "  volumes:         %s" % info["volumes"],
             "  loop devices:    %s" % info["attach"]]
    if not all_ready:
        lines.append("  WARNING: not every backend is serving yet; see the log and "
                     "GET /v3/<project>/os-services")
    lines.append("  try:             blockmgr --url %s volume create --size 1 --wait" % url)
    return "\n".join(lines)


def instrument(conf, node) -> list:
    """What the distributed daemons add to their own endpoints, on the node's REST API: the
    volume worker's backends in ``GET /healthcheck``, and with ``[metrics] enabled`` the
    capacity (volume worker) and quota reservation (scheduler) collectors on the process's
    registry, so ``GET /metrics`` has every family ``docs/metrics.md`` lists.

    :returns: the collectors registered (unregister them to undo).
    """
    from blockmgr import health
    from blockmgr import metrics

    node.app.state.health.add(health.BackendsCheck(lambda: node.volumes.backends))
    if not conf.metrics.enabled:
        return []
    collectors = [metrics.CapacityCollector(
        lambda: [(b.host, b.last_capabilities) for b in node.volumes.backends])]
    collectors += node.scheduler.metrics_collectors()
    registry = metrics.get().registry
    for collector in collectors:
        registry.register(collector)
    return collectors


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)

    from blockmgr.cmd import volume as volume_cmd

    volume_cmd.use_native_threads()   # before oslo.messaging is imported
    from blockmgr import startup

    startup.preload(startup.VOLUME_WORKER_MODULES + ("blockmgr.allinone",))
    try:
        conf = load_config(args)
    except (cfg.Error, exception.BlockmgrError) as exc:
        print("%s: configuration error: %s" % (PROG, exc), file=sys.stderr)
        return 2
    from blockmgr import logcontext

    logcontext.setup(conf, "blockmgr")   # oslo.log, with request/flow ids on flow lines
    try:
        return _run(conf, args)
    finally:
        logging.shutdown()


def _run(conf, args) -> int:
    from blockmgr import allinone
    from blockmgr.cmd import listen

    host = args.host if args.host is not None else conf.api.bind_host
    port = args.port if args.port is not None else conf.api.bind_port
    try:
        lock = lock_state_dir(conf.state_path)
        listen.check_address(host, port, PROG)
    except exception.ServiceStartError as exc:
        print("ERROR: %s" % exc, file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            # Second Ctrl-C: leave now; running flows resume at the next start.
            print("\n%s: stopping now; unfinished operations resume at the next start"
                  % PROG, file=sys.stderr, flush=True)
            os._exit(0)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    node = allinone.AllInOne(conf)
    http = None
    try:
        LOG.info("Starting in %s (database, recovery of unfinished work, services)",
                 conf.state_path)
        all_ready = node.start()
        instrument(conf, node)
        http = listen.start_http(node.app, host, port, PROG, access_log=args.debug)
    except Exception as exc:
        if isinstance(exc, exception.ServiceStartError):
            message = exc.msg
        else:
            if not isinstance(exc, exception.BlockmgrError):
                LOG.exception("%s could not start", PROG)
            message = "%s cannot start: %s" % (PROG, getattr(exc, "msg", None) or exc)
        print("ERROR: %s" % message, file=sys.stderr)
        node.stop(0)
        return 1
    url = listen.client_url(host, http.port)
    print(ready_text(url, conf, describe(conf, node), all_ready), flush=True)

    status = 0
    while not stop.wait(0.5):
        if not http.running:
            LOG.error("The HTTP server ended unexpectedly; stopping")
            status = 1
            break
    grace = conf.graceful_shutdown_timeout
    LOG.info("Stopping: no new requests; up to %d s for running operations (Ctrl-C again "
             "to leave them to the next start)", grace)
    http.stop(listen.HTTP_SHUTDOWN_GRACE)
    drained = node.stop(grace)
    LOG.info("%s stopped (%s)", PROG, "clean" if drained
             else "unfinished operations resume at the next start")
    lock.close()
    # Everything is stopped and flushed; leave without the interpreter's teardown. It
    # would wait for worker threads still inside flows (persisted: they resume at the next
    # start) and otherwise spends seconds of CPU collecting the modules of the whole stack
    # (measured 1-3 s between the last log line and the exit).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
