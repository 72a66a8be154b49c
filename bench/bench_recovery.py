"""Benchmark: restart of a volume worker that died with N flows in flight, until all resolved.

What it does (figures only, never an assertion on time):

1. A private database -- a SQLite file by default, or ``--db mysql|postgresql``: a uniquely
   named database on the servers of ``tests/conftest.py``, dropped afterwards -- and
   ``blockmgr-manage db sync``, as an operator does it.
2. N volume rows of backend ``bench-recovery@lb`` as the API leaves them (``creating``, quota
   counted); with ``--mix`` a quarter each of creates, manage-existing (``managing``, a
   foreign file), deletes (``deleting``, the volume's file present) and snapshot creates.
3. **The crash.** A forked child builds the real ``VolumeManager`` on that database (as
   ``tests/functional/crash_harness.py`` does) with :class:`bench.recovery_driver.
   BlockingLoopbackDriver`, runs the N operations in N threads, waits until every one is
   blocked inside its driver call -- so every flow has persisted ``RUNNING`` at its driver
   task -- and dies by ``os._exit``: no cleanup, N unfinished flows in the logbook.
4. **The restart.** The real daemon, ``blockmgr-volume --config-file ...`` (loopback driver
   on the same directory, RabbitMQ on a private vhost), is started as a subprocess; the
   database is polled until every resource is settled: no row in a transitional status, no
   unfinished flow, no live reservation.

Printed: seconds from process start to *serving* (the daemon's own "ready" log line) and to
*settled*; flows resumed / reverted / failed (the daemon's recovery log line); the daemon's
CPU time (user + system) and peak RSS at that moment. Add ``--keep`` to keep the tmp
directory (config, logs).

    .venv/bin/python bench/bench_recovery.py [--flows 1000] [--db sqlite|mysql|postgresql]
        [--mix] [--workers N]

``--workers`` sets ``[flows] recovery_workers`` of the restarted daemon (default: unset, the
option's default).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOST = "bench-recovery"
BACKEND = "lb"
PROJECT = "p-bench-recovery"
GiB = 1024 ** 3
#: How long the child may take to bring all N flows into their driver calls.
CRASH_TIMEOUT_S = 900
SETTLE_TIMEOUT_S = 1800
OPS = ("create", "manage", "delete", "snapshot")


# --- setup ------------------------------------------------------------------------------


def write_config(tmp: Path, db_url: str, rabbit_url: str, workers: int | None) -> Path:
    lines = ["[DEFAULT]", "host = %s" % HOST, "transport_url = %s" % rabbit_url,
             "control_exchange = bench-recovery-%d" % os.getpid(),
             "state_path = %s" % (tmp / "state"), "log_file = %s" % (tmp / "volume.log"),
             "enabled_backends = %s" % BACKEND, "report_interval = 1",
             "graceful_shutdown_timeout = 5",
             "", "[database]", "connection = %s" % db_url,
             "", "[quota]", "volumes = -1", "snapshots = -1", "gigabytes = -1"]
    if workers is not None:
        lines += ["", "[flows]", "recovery_workers = %d" % workers]
    lines += ["", "[%s]" % BACKEND, "volume_driver = loopback", "loopback_attach = file",
              "loopback_use_reflink = never", "loopback_directory = %s" % (tmp / "volumes")]
    path = tmp / "volume.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def db_sync(config: Path) -> None:
    import subprocess

    binary = Path(sys.executable).parent / "blockmgr-manage"
    result = subprocess.run([str(binary), "--config-file", str(config), "db", "sync"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise SystemExit("db sync failed:\n%s%s" % (result.stdout, result.stderr))


def prepare_rows(conf, db, directory: Path, flows: int, mix: bool) -> list[tuple[str, list]]:
    """Rows (and backend files) as the API leaves them before casting each operation;
    returns ``(manager method, arguments after the context)`` per flow."""
    from blockmgr.db import models
    from blockmgr.db import repository
    from blockmgr.quota import QuotaEngine

    quota = QuotaEngine(db, conf)
    directory.mkdir(parents=True, exist_ok=True)
    host = "%s@%s#%s" % (HOST, BACKEND, BACKEND)
    calls = []
    with db.writer() as session:
        for i in range(flows):
            op = OPS[i % len(OPS)] if mix else "create"
            if op == "create":
                vol = repository.create(session, models.Volume, status="creating", size=1,
                                        host=host, project_id=PROJECT)
                quota.consume(session, PROJECT, volumes=1, gigabytes=1)
                calls.append(("create_volume", [vol.id]))
            elif op == "manage":
                vol = repository.create(session, models.Volume, status="managing", size=0,
                                        host=host, project_id=PROJECT)
                quota.consume(session, PROJECT, volumes=1, gigabytes=0)
                foreign = "foreign-%d" % i
                with open(directory / foreign, "wb") as f:
                    f.truncate(GiB)
                calls.append(("manage_existing", [vol.id, {"source-name": foreign}]))
            else:
                vol = repository.create(session, models.Volume, status="available", size=1,
                                        host=host, project_id=PROJECT)
                quota.consume(session, PROJECT, volumes=1, gigabytes=1)
                with open(directory / ("volume-%s" % vol.id), "wb") as f:
                    f.truncate(GiB)
                if op == "delete":
                    repository.update(session, vol, status="deleting")
                    calls.append(("delete_volume", [vol.id]))
                else:
                    snap = repository.create(session, models.Snapshot, volume_id=vol.id,
                                             status="creating", volume_size=1,
                                             project_id=PROJECT)
                    quota.consume(session, PROJECT, snapshots=1, gigabytes=1)
                    calls.append(("create_snapshot", [snap.id]))
    return calls


def crash_with_flows_in_flight(config: Path, calls, report: Path) -> None:
    """Fork the worker that dies with every call of ``calls`` inside its driver call."""
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            _crashing_worker(config, calls)
            code = 0
        except BaseException:   # noqa: BLE001 - reported to the parent through a file
            report.write_text(traceback.format_exc())
        finally:
            os._exit(code)
    deadline = time.monotonic() + CRASH_TIMEOUT_S + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise SystemExit("crashing worker still running after %d s" % CRASH_TIMEOUT_S)
        time.sleep(0.05)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("crashing worker failed:\n%s"
                         % (report.read_text() if report.exists() else status))


def _crashing_worker(config: Path, calls) -> None:
    from blockmgr import conf as bm_conf
    from blockmgr import context as bm_context
    from blockmgr.db.session import Database
    from blockmgr.notifications import MemoryNotifier
    from blockmgr.quota import QuotaEngine
    from blockmgr.volume.manager import VolumeManager
    from bench.recovery_driver import BlockingLoopbackDriver

    conf = bm_conf.new_config(config_files=[str(config)])
    db = Database(conf.database.connection)
    driver = BlockingLoopbackDriver(conf[BACKEND], BACKEND, host="%s@%s" % (HOST, BACKEND))
    driver.do_setup(None)
    manager = VolumeManager(conf, BACKEND, db=db, driver=driver, quota=QuotaEngine(db, conf),
                            notifier=MemoryNotifier())
    ctx = bm_context.RequestContext(project_id=PROJECT, user_id="u-bench")
    errors = []

    def run(method, args):
        try:
            getattr(manager, method)(ctx, *args)
            errors.append("%s%s returned although its driver call blocks" % (method, args))
        except BaseException as exc:   # noqa: BLE001
            errors.append("%s%s: %r" % (method, args, exc))

    threading.stack_size(512 * 1024)
    started = time.monotonic()
    for method, args in calls:
        threading.Thread(target=run, args=(method, args), daemon=True).start()
    entered = driver.wait_entered(len(calls), CRASH_TIMEOUT_S)
    if entered < len(calls):
        raise RuntimeError("only %d of %d flows reached their driver call in %d s; errors: %s"
                           % (entered, len(calls), CRASH_TIMEOUT_S, errors[:5]))
    # Every flow's driver task entered RUNNING, committed before the call (boundary commit).
    sys.stderr.write("crash: %d flows in flight after %.1f s; dying\n"
                     % (entered, time.monotonic() - started))
    sys.stderr.flush()
    os._exit(0)


# --- measuring --------------------------------------------------------------------------


def counts(db) -> dict:
    """Transitional rows of the host, unfinished flows and live reservations now."""
    import sqlalchemy as sa

    from blockmgr import states
    from blockmgr.db import models
    from blockmgr.flows import persistence

    fd = persistence.TABLES.flowdetails
    out = {}
    with db.reader() as session:
        transitional = 0
        for model, kind in ((models.Volume, "volume"), (models.Snapshot, "snapshot")):
            transitional += session.scalar(sa.select(sa.func.count()).select_from(model).where(
                model.deleted.is_(False),
                model.status.in_(sorted(states.TRANSITIONAL[kind]))))
        out["transitional"] = transitional
        out["unfinished"] = session.scalar(sa.select(sa.func.count()).select_from(fd).where(
            sa.or_(fd.c.state.is_(None),
                   fd.c.state.not_in(sorted(persistence.FINAL_FLOW_STATES)))))
        out["reservations"] = session.scalar(
            sa.select(sa.func.count()).select_from(models.Reservation).where(
                models.Reservation.deleted.is_(False)))
        out["errors"] = session.scalar(sa.select(sa.func.count()).select_from(models.Volume)
                                       .where(models.Volume.deleted.is_(False),
                                              models.Volume.status.like("error%")))
    return out


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds user + system, peak RSS MiB) of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0.0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cpu, peak


def restart_and_measure(config: Path, tmp: Path, db) -> dict:
    from tests.functional.daemons import DaemonProcess

    daemon = DaemonProcess("blockmgr-volume", config, tmp / "volume.log")
    log = tmp / "volume.log"
    started = time.monotonic()
    daemon.start()
    result = {"serving_s": None, "settled_s": None}
    try:
        while time.monotonic() - started < SETTLE_TIMEOUT_S:
            if not daemon.alive:
                raise SystemExit("blockmgr-volume exited:\n%s" % daemon.log_text())
            text = log.read_text(errors="replace") if log.exists() else ""
            if result["serving_s"] is None:
                ready = re.search(r"serving ([0-9.]+) s after process start", text)
                if ready:
                    result["serving_s"] = float(ready.group(1))
            now = counts(db)
            if (result["settled_s"] is None and now["transitional"] == 0
                    and now["unfinished"] == 0 and now["reservations"] == 0):
                result["settled_s"] = time.monotonic() - started
                result["cpu_s"], result["rss_mib"] = proc_usage(daemon.proc.pid)
                result["end"] = now
            if result["settled_s"] is not None and result["serving_s"] is not None:
                break
            time.sleep(0.1)
        text = log.read_text(errors="replace")
        found = re.search(r"recovered: (\d+) flow\(s\) resumed, (\d+) reverted, (\d+) failed",
                          text)
        if found:
            result["resumed"], result["reverted"], result["failed"] = map(int, found.groups())
        took = re.search(r"recovery of (\d+) flow\(s\) took ([0-9.]+) s", text)
        if took:
            result["recovery_s"] = float(took.group(2))
        result.setdefault("end", counts(db))
    finally:
        daemon.stop(20)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "mysql", "postgresql"), default="sqlite")
    parser.add_argument("--mix", action="store_true",
                        help="a quarter each of create, manage, delete, snapshot create")
    parser.add_argument("--workers", type=int, default=None,
                        help="[flows] recovery_workers of the restarted daemon")
    parser.add_argument("--keep", action="store_true", help="keep the tmp directory")
    args = parser.parse_args(argv)

    from blockmgr import conf as bm_conf
    from blockmgr.db.session import Database
    from tests.conftest import create_database
    from tests.functional.daemons import private_vhost

    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    url, drop = create_database(args.db, tmp)
    try:
        with private_vhost() as rabbit_url:
            config = write_config(tmp, url, rabbit_url, args.workers)
            t = time.monotonic()
            db_sync(config)
            conf = bm_conf.new_config(config_files=[str(config)])
            db = Database(url)
            calls = prepare_rows(conf, db, tmp / "volumes", args.flows, args.mix)
            db.dispose()   # no connection crosses the fork
            prepared = time.monotonic() - t
            t = time.monotonic()
            crash_with_flows_in_flight(config, calls, tmp / "crash-error.txt")
            crashed = time.monotonic() - t
            db = Database(url)
            before = counts(db)
            print("setup: db sync + rows %.1f s, %d flows in flight at the crash after %.1f s "
                  "(%s)" % (prepared, before["unfinished"], crashed, before), flush=True)
            result = restart_and_measure(config, tmp, db)
            db.dispose()
    finally:
        drop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s" % tmp)

    rows = [
        ("database", args.db),
        ("flows in flight", "%d%s" % (before["unfinished"], " (mix)" if args.mix else "")),
        ("recovery_workers", "default" if args.workers is None else args.workers),
        ("start -> serving (s)", _fmt(result.get("serving_s"))),
        ("start -> all settled (s)", _fmt(result.get("settled_s"))),
        ("recovery step (s, daemon log)", _fmt(result.get("recovery_s"))),
        ("resumed / reverted / failed", "%s / %s / %s" % (result.get("resumed"),
                                                          result.get("reverted"),
                                                          result.get("failed"))),
        ("daemon CPU at settle (s)", _fmt(result.get("cpu_s"))),
        ("daemon peak RSS (MiB)", _fmt(result.get("rss_mib"), "%.0f")),
        ("left: transitional/unfinished/reservations/error rows",
         "%(transitional)d / %(unfinished)d / %(reservations)d / %(errors)d" % result["end"]),
    ]
    width = max(len(k) for k, _v in rows)
    for key, value in rows:
        print("%-*s  %s" % (width, key, value))
    return 0


def _fmt(value, pattern="%.2f"):
    return "-" if value is None else pattern % value


if __name__ == "__main__":
    sys.exit(main())
