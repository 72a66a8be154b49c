"""Crash-safety under load, through the real daemons.

A ``blockmgr-scheduler`` and a ``blockmgr-volume`` host run as separate processes on RabbitMQ
and a real database (``tests/functional/daemons.py``); this process is the API service and
keeps a mixed workload going through the client library: create (raw, from a snapshot, as a
clone), manage, manage snapshot, snapshot, extend, delete, unmanage, groups, group snapshots,
group from a group snapshot. Meanwhile the volume worker is killed:

* **at every task boundary of every flow.** The points are enumerated from the flow
  definitions (the same ``FLOWS`` tables the in-process crash tests use, through
  ``faults.boundaries``), qualified by flow name, since some tasks appear in several flows.
  The worker runs with ``BLOCKMGR_FAULT_INJECT=file:<path>``; the harness writes one point to
  the file when it wants the next crash and keeps the matching operation coming until the
  worker dies by the hook (exit status 75). The worker then restarts with the file empty and
  recovers (resumes or reverts what it was doing, while the background load goes on);
* **at random moments**: SIGKILL at a random time while the load runs.

Restarts are forks of a pre-imported zygote (``tests/functional/zygote.py``) running the
daemon's real ``main``, so a restart costs tenths of a second instead of two seconds of
imports. When the last kill has been recovered the load stops, the system settles, and the
invariants are checked: no resource in a transitional status, no live reservation, no
unfinished flow, quota usage equal to the recomputed truth, backend files exactly matching the
rows (no orphans, none missing). :func:`run` returns a :class:`Report` whose ``table()`` is the
summary printed by the test and by ``python -m tests.functional.crash_load``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import sqlalchemy as sa

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import rpc
from blockmgr import states
from blockmgr.db import models
from blockmgr.drivers.loopback import layout
from blockmgr.flows import faults
from tests.functional import crash_harness
from tests.functional.daemons import Cluster
from tests.functional.daemons import wait_for
from tests.functional.zygote import Zygote

PROJECT = "p-crash-load"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u-crash-load")
GiB = 1024 ** 3
HOST = "w"
V, S, G, GS = (states.VolumeStatus, states.SnapshotStatus, states.GroupStatus,
               states.GroupSnapshotStatus)
#: How long the harness keeps driving an armed point's operation before calling it unreached.
ARMED_TIMEOUT_S = 25.0
#: How long the system may take to settle once the load stops.
SETTLE_TIMEOUT_S = 120.0


def flow_tables() -> dict:
    """``{operation: flow}`` for every flow, from the in-process crash tests' tables (the one
    list that a new flow module must join, see ``test_every_flow_module_has_crash_tests``)."""
    from tests.functional import test_flow_crash as a
    from tests.functional import test_flow_crash_groups as c
    from tests.functional import test_flow_crash_single as b

    flows = {}
    for module in (a, b, c):
        flows.update(module.FLOWS)
    return flows


def injection_points() -> list[tuple[str, str]]:
    """``(operation, spec)`` for every boundary of every flow, flow-qualified, deduplicated
    (``cascade_delete`` is the delete flow driven differently: same boundaries)."""
    points, seen = [], set()
    for op, flow in flow_tables().items():
        for spec in faults.boundaries(flow):
            when, _sep, task = spec.partition(":")
            qualified = "%s:%s%s%s" % (when, flow.name, faults.FLOW_SEPARATOR, task)
            if qualified not in seen:
                seen.add(qualified)
                points.append((op, qualified))
    # The request ledger's boundary inside the worker: a request claimed, its flow not yet
    # written (the worker's other boundary, after the API's commit, is in the API process).
    points.append(("create_volume", "after:ledger.claimed"))
    return points


# --- the workload -------------------------------------------------------------------------


class Workload:
    """Operations of every kind through the client library, each on a resource that is in a
    status where the operation is allowed (picked from the database at the time)."""

    def __init__(self, client: api.Client, db, cluster: Cluster):
        self.client, self.db, self.cluster = client, db, cluster
        self.rng = random.Random(7)
        self.counts = collections.Counter()
        self.refused = collections.Counter()
        self._foreign = 0

    # --- picking resources ----------------------------------------------------------------

    def _live(self, model, *statuses, where=()):
        with self.db.reader() as session:
            query = sa.select(model).where(model.deleted.is_(False), *where)
            if statuses:
                query = query.where(model.status.in_(statuses))
            rows = list(session.scalars(query))
            for row in rows:
                session.expunge(row)
            return rows

    def _pick(self, model, *statuses, where=()):
        rows = self._live(model, *statuses, where=where)
        return self.rng.choice(rows) if rows else None

    def _plain_volume(self):
        """An available volume outside any group, with no snapshot (deletable)."""
        with self.db.reader() as session:
            snapped = set(session.scalars(sa.select(models.Snapshot.volume_id).where(
                models.Snapshot.deleted.is_(False))))
        rows = [v for v in self._live(models.Volume, V.AVAILABLE,
                                      where=(models.Volume.group_id.is_(None),))
                if v.id not in snapped]
        return self.rng.choice(rows) if rows else None

    def _foreign_file(self, prefix: str) -> str:
        self._foreign += 1
        name = "%s-%d-%d" % (prefix, os.getpid(), self._foreign)
        with open(self.cluster.directory(HOST) / name, "wb") as f:
            f.truncate(GiB)
        return name

    # --- operations -----------------------------------------------------------------------
    # Each returns True when a request was sent, False when no resource was in a fitting
    # status (the caller creates some first).

    def create_volume(self) -> bool:
        choice = self.rng.random()
        snap = self._pick(models.Snapshot, S.AVAILABLE) if choice < 0.3 else None
        source = self._plain_volume() if 0.3 <= choice < 0.5 else None
        if snap is not None:
            self.client.volumes.create_volume(CTX, snapshot_id=snap.id)
        elif source is not None:
            self.client.volumes.create_volume(CTX, source_volid=source.id)
        else:
            self.client.volumes.create_volume(CTX, 1)
        return True

    def manage_existing(self) -> bool:
        name = self._foreign_file("foreign-vol")
        self.client.volumes.manage_existing(CTX, self.cluster.backend(HOST),
                                            {"source-name": name})
        return True

    def manage_existing_snapshot(self) -> bool:
        vol = self._pick(models.Volume, V.AVAILABLE)
        if vol is None:
            return False
        name = self._foreign_file("foreign-snap")
        self.client.snapshots.manage_existing_snapshot(CTX, vol.id, {"source-name": name})
        return True

    def delete_volume(self) -> bool:
        vol = self._plain_volume()
        if vol is None:
            return False
        self.client.volumes.delete_volume(CTX, vol.id)
        return True

    def cascade_delete(self) -> bool:
        vol = self._pick(models.Volume, V.AVAILABLE, where=(models.Volume.group_id.is_(None),))
        if vol is None:
            return False
        self.client.volumes.delete_volume(CTX, vol.id, cascade=True)
        return True

    def unmanage_volume(self) -> bool:
        vol = self._plain_volume()
        if vol is None:
            return False
        self.client.volumes.unmanage(CTX, vol.id)
        return True

    def create_snapshot(self) -> bool:
        vol = self._pick(models.Volume, V.AVAILABLE)
        if vol is None:
            return False
        self.client.snapshots.create_snapshot(CTX, vol.id)
        return True

    def delete_snapshot(self) -> bool:
        snap = self._pick(models.Snapshot, S.AVAILABLE,
                          where=(models.Snapshot.group_snapshot_id.is_(None),))
        if snap is None:
            return False
        self.client.snapshots.delete_snapshot(CTX, snap.id)
        return True

    def unmanage_snapshot(self) -> bool:
        snap = self._pick(models.Snapshot, S.AVAILABLE,
                          where=(models.Snapshot.group_snapshot_id.is_(None),))
        if snap is None:
            return False
        self.client.snapshots.unmanage_snapshot(CTX, snap.id)
        return True

    def extend_volume(self) -> bool:
        vol = self._pick(models.Volume, V.AVAILABLE)
        if vol is None:
            return False
        self.client.volumes.extend_volume(CTX, vol.id, vol.size + 1)
        return True

    def revert_to_snapshot(self) -> bool:
        """Revert an available volume to its latest snapshot (the only one allowed)."""
        from blockmgr.flows import revert_to_snapshot as revert_flow

        snap = self._pick(models.Snapshot, S.AVAILABLE,
                          where=(models.Snapshot.group_snapshot_id.is_(None),))
        if snap is None:
            return False
        with self.db.reader() as session:
            latest = revert_flow.latest_snapshot(session, snap.volume_id)
            latest_id = latest.id if latest is not None else snap.id
        self.client.volumes.revert_to_snapshot(CTX, snap.volume_id, latest_id)
        return True

    def create_group(self) -> bool:
        self.client.groups.create_group(CTX, name="g")
        return True

    def _group(self):
        return self._pick(models.Group, G.AVAILABLE)

    def delete_group(self) -> bool:
        group = self._group()
        if group is None:
            return False
        self.client.groups.delete_group(CTX, group.id, delete_volumes=True)
        return True

    def update_group(self) -> bool:
        group = self._group()
        if group is None:
            return False
        members = self._live(models.Volume, V.AVAILABLE,
                             where=(models.Volume.group_id == group.id,))
        candidate = self._plain_volume()
        if candidate is not None and (not members or self.rng.random() < 0.6):
            self.client.groups.update_group(CTX, group.id, add_volumes=[candidate.id])
        elif members:
            self.client.groups.update_group(CTX, group.id,
                                            remove_volumes=[self.rng.choice(members).id])
        else:
            self.client.volumes.create_volume(CTX, 1, group_id=group.id)
        return True

    def create_group_snapshot(self) -> bool:
        group = self._group()
        if group is None:
            return False
        if not self._live(models.Volume, where=(models.Volume.group_id == group.id,)):
            self.client.volumes.create_volume(CTX, 1, group_id=group.id)
            return False
        self.client.groups.create_group_snapshot(CTX, group.id)
        return True

    def delete_group_snapshot(self) -> bool:
        gsnap = self._pick(models.GroupSnapshot, GS.AVAILABLE)
        if gsnap is None:
            return False
        self.client.groups.delete_group_snapshot(CTX, gsnap.id)
        return True

    def create_group_from_src(self) -> bool:
        gsnap = self._pick(models.GroupSnapshot, GS.AVAILABLE)
        if gsnap is None:
            return False
        self.client.groups.create_group_from_src(CTX, group_snapshot_id=gsnap.id)
        return True

    #: What to do first when an operation found nothing to act on.
    PREREQUISITE = {
        "manage_existing_snapshot": "create_volume", "delete_volume": "create_volume",
        "cascade_delete": "create_volume", "unmanage_volume": "create_volume",
        "create_snapshot": "create_volume", "delete_snapshot": "create_snapshot",
        "unmanage_snapshot": "create_snapshot", "extend_volume": "create_volume",
        "revert_to_snapshot": "create_snapshot",
        "delete_group": "create_group", "update_group": "create_group",
        "create_group_snapshot": "update_group",
        "delete_group_snapshot": "create_group_snapshot",
        "create_group_from_src": "create_group_snapshot",
    }

    def do(self, op: str) -> bool:
        """Send one ``op`` (or its prerequisite); True if ``op`` itself was sent. Requests the
        library refuses (a status changed under us, quota) are counted, not raised."""
        while True:
            try:
                sent = getattr(self, op)()
            except (exception.Invalid, exception.NotFound, exception.Conflict,
                    exception.QuotaError) as exc:
                self.refused[type(exc).__name__] += 1
                return False
            if sent:
                self.counts[op] += 1
                return True
            op = self.PREREQUISITE[op]

    def random_op(self) -> None:
        self.do(self.rng.choice(sorted(set(self.PREREQUISITE) | {
            "create_volume", "manage_existing", "create_group"})))

    def in_flight(self) -> int:
        with self.db.reader() as session:
            return sum(session.scalar(sa.select(sa.func.count()).select_from(model).where(
                model.deleted.is_(False), model.status.in_(sorted(states.TRANSITIONAL[kind]))))
                for model, kind in crash_harness.KINDS)


class BackgroundLoad:
    """Random operations from a thread, keeping about ``depth`` requests in flight."""

    def __init__(self, workload: Workload, depth: int = 6):
        self.workload, self.depth = workload, depth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.errors: list[str] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.workload.in_flight() < self.depth:
                    self.workload.random_op()
                else:
                    self._stop.wait(0.05)
            except Exception:
                self.errors.append(traceback.format_exc())
                self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


# --- the run ------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    backend: str
    points: list = dataclasses.field(default_factory=list)   # (op, spec, outcome)
    random_kills: int = 0
    invariant_failures: list = dataclasses.field(default_factory=list)
    load_errors: list = dataclasses.field(default_factory=list)
    ops: dict = dataclasses.field(default_factory=dict)
    refused: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    durations: list = dataclasses.field(default_factory=list)
    #: (after which point or kill, quota drifts seen then): a diagnostic, not a failure --
    #: a drift mid-load may be a request between its reservation and its row; one that
    #: stays to the end names the first point it followed.
    drift_trace: list = dataclasses.field(default_factory=list)

    @property
    def failures(self) -> list:
        bad = [(op, spec, outcome) for op, spec, outcome in self.points
               if outcome != "crashed"]
        return bad + self.invariant_failures + self.load_errors

    def table(self) -> str:
        rows = collections.OrderedDict()
        for op, _spec, outcome in self.points:
            row = rows.setdefault(op, collections.Counter())
            row["tried"] += 1
            row[outcome] += 1
        ok = not self.invariant_failures
        lines = ["crash under load on %s: %d injection points, %d random kills, %.0f s"
                 % (self.backend, len(self.points), self.random_kills, self.seconds),
                 "%-26s %6s %8s %9s %9s" % ("flow", "tried", "crashed", "recovered",
                                             "failures")]
        for op, row in rows.items():
            crashed = row["crashed"]
            lines.append("%-26s %6d %8d %9d %9d" % (op, row["tried"], crashed,
                                                     crashed if ok else 0,
                                                     row["tried"] - crashed))
        if self.durations:
            lines.append("seconds per point: median %.1f, max %.1f" % (
                sorted(self.durations)[len(self.durations) // 2], max(self.durations)))
        lines.append("random kills: %d, recovered: %d" % (self.random_kills,
                                                           self.random_kills if ok else 0))
        lines.append("operations sent: %s" % dict(sorted(self.ops.items())))
        lines.append("refused by the API (status changed under the load): %s"
                     % dict(sorted(self.refused.items())))
        for after, drifts in self.drift_trace:
            lines.append("quota drift seen after %s: %s" % (after, drifts))
        lines.append("final invariants: %s" % ("hold" if ok else "BROKEN: %s"
                                               % self.invariant_failures))
        return "\n".join(lines)


class CrashLoad:
    """One deployment (scheduler + volume host ``w``) and its crash-under-load run."""

    def __init__(self, tmp: Path, db_url: str, rabbit_url: str):
        self.tmp = tmp
        self.armed = tmp / "armed-fault"
        self.cluster = Cluster(tmp, db_url, rabbit_url=rabbit_url, hosts={HOST: {}},
                               default_opts={"rpc_worker_threads": 4,
                                             "service_down_time": 6,
                                             "debug": os.environ.get("BLOCKMGR_CRASH_LOAD_DEBUG") == "1"})
        self.zygote: Zygote | None = None
        self.conf = self.client = self.transport = self.quota = None

    def __enter__(self) -> "CrashLoad":
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> "CrashLoad":
        c = self.cluster
        c.db_sync()
        c.start_scheduler()
        self.zygote = Zygote()
        self.config = c._write_config(HOST, c.hosts[HOST], c.host_opts[HOST])
        self.start_worker()
        c.wait_up([HOST], scheduler=True, timeout=90)
        self.conf = c.client_conf()
        self.transport = rpc.get_transport(self.conf)
        self.quota = bm_quota.QuotaEngine(c.db, self.conf)
        for resource in ("volumes", "gigabytes", "snapshots", "groups"):
            self.quota.set_limit(PROJECT, resource, -1)
        self.client = api.Client(self.conf, c.db, self.quota, transport=self.transport)
        self.workload = Workload(self.client, c.db, c)
        return self

    def __exit__(self, *exc) -> None:
        if self.transport is not None:
            self.transport.cleanup()
        self.cluster.close()
        if self.zygote is not None:
            self.zygote.close()

    # --- the worker -----------------------------------------------------------------------

    def start_worker(self):
        self.armed.write_text("")
        env = {faults.ENV_VAR: "%s:%s" % (faults.FILE, self.armed)}
        proc = self.zygote.spawn(["--config-file", str(self.config)], env,
                                 self.tmp / ("%s.out" % HOST))
        self.cluster.processes[HOST] = proc
        return proc

    def restart_worker(self, after) -> None:
        self.start_worker()
        self.cluster.wait_up([HOST], after=after, timeout=60)

    @property
    def worker(self):
        return self.cluster.processes[HOST]

    # --- the run --------------------------------------------------------------------------

    def crash_at(self, op: str, spec: str) -> str:
        """Arm ``spec``, drive ``op`` until the worker dies; recover. Returns the outcome:
        ``crashed`` (the hook fired), ``unreached`` (the operation never got there), or
        ``died with status N`` (a real crash: a failure)."""
        self.armed.write_text(spec)
        deadline = time.monotonic() + ARMED_TIMEOUT_S
        while self.worker.alive and time.monotonic() < deadline:
            self.workload.do(op)
            wait_for(lambda: not self.worker.alive, 0.4, 0.02)
        killed_at = models.utcnow()
        status = self.worker.wait(5)
        self.armed.write_text("")
        if status is None:
            return "unreached"
        self.restart_worker(killed_at)
        return "crashed" if status == faults.EXIT_CODE else "died with status %s" % status

    def random_kill(self, rng: random.Random) -> None:
        time.sleep(rng.uniform(0.2, 2.0))
        killed_at = models.utcnow()
        self.worker.kill()
        self.restart_worker(killed_at)

    def _trace_drift(self, report: Report, after: str) -> None:
        drifts = [(d.resource, d.field, d.recorded, d.expected)
                  for d in self.quota.check(PROJECT)]
        if drifts:
            report.drift_trace.append((after, drifts))

    def settle(self) -> list[str]:
        """Wait for the quiet state, then check every invariant; the failures found."""
        wait_for(lambda: self.workload.in_flight() == 0, SETTLE_TIMEOUT_S, 0.2)
        failures = []

        def check(what, fn):
            try:
                fn()
            except AssertionError as exc:
                failures.append("%s: %s" % (what, exc))

        check("transitional", self._no_transitional)
        check("reservations", self._no_reservations)
        check("quota", lambda: _assert_equal(self.quota.check(), [], "quota drift"))
        check("flows", self._no_unfinished_flows)
        check("backend", lambda: crash_harness.backend_matches_rows(
            str(self.cluster.directory(HOST)), self.cluster.db))
        return failures

    def _no_transitional(self):
        with self.cluster.db.reader() as session:
            for model, kind in crash_harness.KINDS:
                stuck = session.execute(sa.select(model.id, model.status).where(
                    model.deleted.is_(False),
                    model.status.in_(sorted(states.TRANSITIONAL[kind])))).all()
                _assert_equal(stuck, [], "%s rows in a transitional status" % kind)

    def _no_reservations(self):
        with self.cluster.db.reader() as session:
            live = session.execute(sa.select(models.Reservation.uuid,
                                             models.Reservation.owner).where(
                models.Reservation.deleted.is_(False))).all()
        _assert_equal(live, [], "live reservations")

    def _no_unfinished_flows(self):
        from blockmgr.flows import engine as flow_engine

        backend = flow_engine.open_persistence(self.conf, self.cluster.db)
        try:
            _assert_equal(sorted(backend.unfinished_flow_uuids()), [], "unfinished flows")
        finally:
            backend.close()

    def run(self, points, random_kills: int, backend: str, seed: int = 1) -> Report:
        started = time.monotonic()
        report = Report(backend)
        rng = random.Random(seed)
        with BackgroundLoad(self.workload) as load:
            for op, spec in points:
                began = time.monotonic()
                report.points.append((op, spec, self.crash_at(op, spec)))
                report.durations.append(time.monotonic() - began)
                self._trace_drift(report, spec)
            for n in range(random_kills):
                self.random_kill(rng)
                report.random_kills += 1
                self._trace_drift(report, "random kill %d" % (n + 1))
        report.load_errors = load.errors
        report.invariant_failures = self.settle()
        report.ops = dict(self.workload.counts)
        report.refused = dict(self.workload.refused)
        report.seconds = time.monotonic() - started
        return report


def _assert_equal(got, wanted, what):
    assert got == wanted, "%s: %s" % (what, got)


def main(argv=None) -> int:
    """``python -m tests.functional.crash_load --db URL`` runs every point by hand."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="URL of an EMPTY database (the schema is created in it)")
    parser.add_argument("--rabbit", default="rabbit://guest:guest@127.0.0.1:5672/",
                        help="transport URL (use a vhost of its own)")
    parser.add_argument("--random-kills", type=int, default=10)
    parser.add_argument("--only", help="run only the points whose spec contains this")
    args = parser.parse_args(argv)
    points = [p for p in injection_points() if not args.only or args.only in p[1]]
    with tempfile.TemporaryDirectory(prefix="crash-load-") as tmp:
        with CrashLoad(Path(tmp), args.db, args.rabbit) as run:
            report = run.run(points, args.random_kills, args.db.partition(":")[0])
    print(report.table())
    for failure in report.failures:
        print("FAILURE:", failure)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
