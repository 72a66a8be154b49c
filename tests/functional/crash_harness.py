"""The crash proof's machinery: kill a worker at a task boundary in milliseconds, recover,
check the invariants. Shared by ``test_flow_crash*.py``.

Why forking: a worker started as a fresh interpreter spends 1-2 s importing blockmgr,
TaskFlow and oslo before it reaches the flow, which made ~160 boundaries per database cost
minutes. Here the test process (everything already imported) prepares the rows and
``os.fork()``\ s. The child detaches the inherited connection pools without touching the
parent's connections (:meth:`Engines.detach_after_fork`), builds its *own* manager (new
driver, quota engine, flow runner; new connections; ``BLOCKMGR_FAULT_INJECT`` set) on the
same database and loopback directory, runs the operation and dies by ``os._exit`` at the
boundary -- the real hook of :mod:`blockmgr.flows.faults`; none of the parent's cleanup
runs. The parent ``waitpid``\ s, then starts a fresh manager (``init_host`` = recovery) and
calls :func:`assert_invariants`. A case costs tens of milliseconds of harness time; the rest
is the flows' own work.

Databases: SQLite gets a new file per case. A fresh MariaDB database costs ~3 s of DDL (the
schema plus TaskFlow's alembic history), PostgreSQL ~0.5 s, so each server backend gets ONE
private, uniquely named database per test session (created and dropped by
``tests/conftest.py:create_database``, never the shared ``test`` database), and every case
starts by emptying all of its tables (:meth:`CrashDatabases.clean`): same isolation as a new
database, milliseconds instead of seconds.

The boundaries are never listed here: each test module derives them from the flow definition
with :func:`cases` (``faults.boundaries(get_flow())``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import traceback
import warnings

import pytest
import sqlalchemy as sa

from blockmgr import conf as bm_conf
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import ledger
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import requests as db_requests
from blockmgr.db.session import Database
from blockmgr.drivers import loader
from blockmgr.drivers.loopback import layout
from blockmgr.flows import engine as flow_runner
from blockmgr.flows import faults
from blockmgr.flows import persistence
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume import ledger_hooks
from blockmgr.volume.manager import VolumeManager
from tests.conftest import create_database

GiB = 1024 ** 3
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT)

#: Exit status of a child whose operation returned although a crash was configured.
NO_CRASH_EXIT = 3
#: Exit status of a child whose operation raised before the boundary.
ERROR_EXIT = 4
#: A child still alive after this long is killed and the case fails.
CHILD_TIMEOUT_S = 60

#: (model, kind in ``states.TRANSITIONAL``) of every resource a flow can leave in flight.
KINDS = ((models.Volume, "volume"), (models.Snapshot, "snapshot"),
         (models.Group, "group"), (models.GroupSnapshot, "group_snapshot"))

#: The worker's configuration; ``state_path`` and ``[database] connection`` are set per case.
_CONF_TEMPLATE = (
    "[DEFAULT]\nhost = node1\nenabled_backends = lb\n"
    "[lb]\nvolume_driver = loopback\nloopback_attach = file\nloopback_use_reflink = never\n")


def cases(flows: dict) -> list[tuple[str, str]]:
    """``(name, boundary spec)`` for every boundary of every flow in ``{name: flow}``."""
    return [(name, spec) for name, flow in flows.items() for spec in faults.boundaries(flow)]


def case_id(name: str, spec: str) -> str:
    """``create_volume-before-CreateVolumeFromSpecTask`` from a case."""
    when, _sep, task = spec.partition(":")
    return "%s-%s-%s" % (name, when, task.rpartition(".")[2])


# --- databases --------------------------------------------------------------------------


@dataclasses.dataclass
class Engines:
    """The engines a world's managers share: the service database and the logbooks'."""

    url: str
    db: Database
    flow_engine: sa.engine.Engine

    @classmethod
    def open(cls, url: str) -> "Engines":
        db = Database(url)
        # Logbooks live in the service database: on a server they share its engine (as
        # ``open_persistence`` does); SQLite gets the persistence module's pooled one.
        flow = persistence.create_engine(url) if url.startswith("sqlite") else db.engine
        return cls(url, db, flow)

    def dispose(self) -> None:
        self.db.dispose()
        self.flow_engine.dispose()

    def detach_after_fork(self) -> None:
        """In a forked child: start with empty pools, never touching the parent's
        connections. The old pools stay referenced until ``os._exit`` so no driver
        finalizer (psycopg2 sends Terminate on dealloc) can close a socket the parent
        still uses -- SQLAlchemy's ``dispose(close=False)`` fork pattern."""
        for engine in {id(e): e for e in (self.db.engine, self.flow_engine)}.values():
            _DETACHED_POOLS.append(engine.pool)
            engine.dispose(close=False)


_DETACHED_POOLS: list = []


class CrashDatabases:
    """Empty databases for crash cases: a new SQLite file per case; one private database
    per server backend for the session (module docstring), emptied for every case."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._servers: dict[str, Engines] = {}
        self._drops: list = []
        self._sqlite_template: str | None = None
        self._conf = None

    def clean(self, backend: str, tmp_path) -> Engines:
        """Engines on an empty database (schema and TaskFlow tables present) of ``backend``.
        SQLite engines belong to the caller (dispose them); server engines to the pool.
        A SQLite case gets a copy of a file whose schema was created once (all connections
        to it closed, so the WAL is checkpointed into the copied file)."""
        if backend == "sqlite":
            if self._sqlite_template is None:
                template = str(self._tmp.mktemp("sqlite") / "template.sqlite")
                engines = Engines.open("sqlite:///%s" % template)
                _create_schema(engines)
                engines.dispose()
                self._sqlite_template = template
            path = tmp_path / "crash.sqlite"
            shutil.copyfile(self._sqlite_template, path)
            return Engines.open("sqlite:///%s" % path)
        if backend not in self._servers:
            url, drop = create_database(backend, self._tmp.mktemp(backend))
            self._drops.append(drop)
            self._servers[backend] = Engines.open(url)
            _create_schema(self._servers[backend])
        engines = self._servers[backend]
        with engines.db.engine.begin() as conn:
            for table in _ALL_TABLES:
                conn.execute(table.delete())
        return engines

    def conf(self, url: str, state_path: str):
        """The session's parsed configuration, pointed at ``url`` and ``state_path`` (the
        loopback directory lives under it). Parsing costs ~20 ms; overriding two options
        does not, and every manager reads them when it is built."""
        if self._conf is None:
            conf_file = self._tmp.mktemp("conf") / "blockmgr.conf"
            conf_file.write_text(_CONF_TEMPLATE)
            self._conf = bm_conf.new_config(config_files=[str(conf_file)])
        self._conf.set_override("state_path", state_path)
        self._conf.set_override("connection", url, group="database")
        return self._conf

    def drop_all(self) -> None:
        for engines in self._servers.values():
            engines.dispose()
        for drop in self._drops:
            drop()


def _create_schema(engines: Engines) -> None:
    engines.db.create_schema()
    persistence.FlowPersistence(engines.url, engine=engines.flow_engine).upgrade()


#: Every table, children before parents, TaskFlow's logbook tables last.
_ALL_TABLES = ([t for t in reversed(models.Base.metadata.sorted_tables)]
               + [persistence.TABLES.atomdetails, persistence.TABLES.flowdetails,
                  persistence.TABLES.logbooks])


# --- a world: one database and one loopback directory -----------------------------------


@dataclasses.dataclass
class World:
    """One crash case's database and backend directory.

    Every :meth:`manager` is a new ``VolumeManager`` with its own driver, quota engine, flow
    runner and persistence backend -- all in-memory state starts empty, as in a restarted
    worker. What is reused is the SQLAlchemy *engines*: a new connection costs ~80 ms on
    the MariaDB here, a new engine recompiles every statement. A forked worker detaches the
    inherited pools (:meth:`Engines.detach_after_fork`) and opens its own connections, so no
    connection is ever used by two processes.
    """

    backend: str
    engines: Engines
    conf: object
    state_path: str

    @property
    def url(self) -> str:
        return self.engines.url

    def manager(self) -> VolumeManager:
        """A new manager on this world (fault hook as ``BLOCKMGR_FAULT_INJECT`` says now)."""
        return build_manager(self.conf, db=self.engines.db,
                             flow_engine=self.engines.flow_engine)


def build_manager(conf, *, db: Database | None = None,
                  flow_engine: sa.engine.Engine | None = None) -> VolumeManager:
    """A volume manager for backend ``lb`` (loopback) on ``conf``'s database, as a worker
    builds it, the fault hook read from the environment/config (``faults.configured``).

    With ``flow_engine`` the logbooks use that engine and the TaskFlow schema is taken as
    present (the harness created it): ``open_persistence`` would run TaskFlow's alembic
    check again, ~80 ms per manager on a server database.
    """
    db = db or Database(conf.database.connection)
    driver = loader.find_driver_class("loopback")(conf["lb"], "lb", host=conf.host + "@lb")
    driver.do_setup(None)
    runner = None
    if flow_engine is not None:
        backend = persistence.FlowPersistence(
            conf.database.connection, engine=flow_engine,
            commits=conf.flows.persistence_commits,
            prune_on_finish=conf.flows.finished_flow_retention == 0)
        runner = flow_runner.FlowRunner(backend, "%s@lb" % conf.host,
                                        fault=faults.configured(conf))
    return VolumeManager(conf, "lb", db=db, driver=driver, quota=QuotaEngine(db, conf),
                         notifier=MemoryNotifier(), runner=runner)


_SHARED: dict = {"pool": None, "users": 0}


@pytest.fixture(scope="session")
def crash_databases(tmp_path_factory):
    """The session's :class:`CrashDatabases`. Each test module importing this fixture gets
    its own fixture definition; they share one pool, dropped when the last one ends."""
    if _SHARED["pool"] is None:
        _SHARED["pool"] = CrashDatabases(tmp_path_factory)
    _SHARED["users"] += 1
    yield _SHARED["pool"]
    _SHARED["users"] -= 1
    if _SHARED["users"] == 0:
        _SHARED["pool"].drop_all()
        _SHARED["pool"] = None


@pytest.fixture
def crash_world(db_backend, crash_databases, tmp_path):
    """A :class:`World` on an empty database of ``db_backend`` (sqlite, mysql, postgresql)."""
    engines = crash_databases.clean(db_backend, tmp_path)
    conf = crash_databases.conf(engines.url, str(tmp_path))
    yield World(db_backend, engines, conf, str(tmp_path))
    if db_backend == "sqlite":
        engines.dispose()


# --- crashing and recovering ------------------------------------------------------------


@dataclasses.dataclass
class Crash:
    """What the killed worker left: the flows it had not finished, and the call it was
    making (``method(CTX, *args)``), which the request ledger would run again."""

    spec: str
    flow_ids: set
    method: str = ""
    args: tuple = ()
    request_id: str | None = None


def crash_worker(world: World, spec: str, method: str, *args) -> Crash:
    """Run ``manager.<method>(CTX, *args)`` in a forked worker that dies at ``spec``.

    Fails the test unless the worker exited with :data:`faults.EXIT_CODE` (the hook fired).
    The crash may leave no unfinished flow: before the flow's first boundary nothing is in
    the logbook yet, and after a last task that closes its flow the flow is gone with its
    final write; :func:`recover` then does what the request ledger does.
    """
    report = os.path.join(world.state_path, "worker-error.txt")
    request_id = _record_request(world, method, args)
    with warnings.catch_warnings():   # eventlet (imported by oslo, unused here) warns on fork
        warnings.filterwarnings("ignore", message="Using fork", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:                        # the worker: never returns into pytest
        code = ERROR_EXIT
        try:
            world.engines.detach_after_fork()
            os.environ[faults.ENV_VAR] = spec
            manager = world.manager()
            _requests(manager).run(request_id,
                                   lambda: getattr(manager, method)(CTX, *args))
            code = NO_CRASH_EXIT
        except BaseException:           # noqa: BLE001 - reported to the parent via a file
            with open(report, "w") as f:
                f.write(traceback.format_exc())
        finally:
            os._exit(code)
    status = _wait(pid)
    if status != faults.EXIT_CODE:
        detail = open(report).read() if os.path.exists(report) else ""
        pytest.fail("worker for %s(%s) at %s exited %s instead of crashing (%s):\n%s"
                    % (method, args, spec, status, faults.EXIT_CODE, detail[-3000:]))
    unfinished = world.manager().runner.backend.unfinished_flow_uuids()
    return Crash(spec, unfinished, method, args, request_id)


#: The worker's name as the request ledger knows it (its claims' owner prefix).
WORKER = "node1@lb"


def _record_request(world: World, method: str, args: tuple) -> str:
    """The request the API would have recorded for ``method(CTX, *args)``: the crashed
    worker claims and runs it, the restarted one finds it again."""
    kind = next((k for k in ("group_snapshot", "group", "snapshot") if k in method),
                "volume")
    resource = args[0] if args and isinstance(args[0], str) else ""
    with world.engines.db.writer() as session:
        return db_requests.add(session, kind=kind, resource_id=resource, action=method,
                               arguments={}, context=CTX.to_dict(), target=WORKER)


def _requests(manager: VolumeManager) -> ledger.Ledger:
    return ledger.Ledger(manager.db, manager.conf, owner_prefix=WORKER, targets=[WORKER],
                         hooks=ledger_hooks.BackendRequestHooks(manager))


def _wait(pid: int) -> int:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("crash worker %d still running after %d s" % (pid, CHILD_TIMEOUT_S))
        time.sleep(0.002)


def recover(world: World, crash: Crash | None = None):
    """Start a fresh manager on the world (``init_host`` = recovery); return it and its
    recovery report.

    Then, with ``crash``, the restarted worker's request ledger takes back the claims of
    its predecessor and runs the crashed request again, as a restarted daemon does: a
    crash before the flow's first write left no flow in the logbook, and only the ledger
    brings that request to its end. The request must end settled.
    """
    manager = world.manager()
    report = manager.init_host()
    if crash is not None and crash.request_id is not None:
        requests = _requests(manager)
        with manager.db.writer() as session:
            db_requests.release_previous_claims(session, [WORKER], requests.owner_prefix,
                                                requests.owner)
        try:
            requests.run(crash.request_id,
                         lambda: getattr(manager, crash.method)(CTX, *crash.args))
        except exception.BlockmgrError:
            pass   # it had finished: the run again is refused, and the request settled
        with manager.db.reader() as session:
            state = db_requests.get(session, crash.request_id).state
        assert state in (db_requests.DONE, db_requests.FAILED), (crash.request_id, state)
    return manager, report


# --- the invariants ---------------------------------------------------------------------


def assert_invariants(manager: VolumeManager, crash: Crash, report) -> None:
    """What must hold after any crash and recovery, whatever the flow:

    * every unfinished flow was recovered, none failed, none is left unfinished;
    * no resource of the database (private to the case, so: of this host) is in a
      transitional status (:data:`blockmgr.states.TRANSITIONAL`);
    * no live reservation -- neither owned by the crashed flows
      (``QuotaEngine.reservations_of``) nor any other;
    * quota usage equals the recomputed truth (``QuotaEngine.check()`` empty);
    * backend objects exactly match the rows (:func:`assert_backend_matches_rows`).
    """
    assert report.failed == [], "recovery could not finish flows %s" % report.failed
    assert crash.flow_ids <= set(report.resumed) | set(report.reverted), \
        "crashed flows %s not recovered (report %s)" % (crash.flow_ids, report)
    with manager.db.reader() as session:
        for model, kind in KINDS:
            stuck = session.scalars(sa.select(model).where(
                model.deleted.is_(False),
                model.status.in_(sorted(states.TRANSITIONAL[kind])))).all()
            assert stuck == [], [(kind, r.id, r.status) for r in stuck]
        live = session.scalars(sa.select(models.Reservation).where(
            models.Reservation.deleted.is_(False))).all()
        assert live == [], [(r.uuid, r.resource, r.delta) for r in live]
    for flow_id in crash.flow_ids:
        assert manager.quota.reservations_of(flow_id) == []
    assert manager.quota.check() == []
    assert manager.runner.backend.unfinished_flow_uuids() == set()
    assert_backend_matches_rows(manager)


#: Statuses in which a resource must have its backend object (of the row's size).
HAS_BACKEND_OBJECT = frozenset({"available", "in-use"})


def assert_backend_matches_rows(manager: VolumeManager) -> None:
    """Backend files the driver calls its own (``volume-<id>``, ``snapshot-<id>``) belong to
    live rows (nothing leaked), and every usable row has its file, of the row's size in GiB
    (rounded up, as manage-existing rounds a foreign object)."""
    backend_matches_rows(manager.driver.directory, manager.db)


def backend_matches_rows(directory: str, db) -> None:
    """:func:`assert_backend_matches_rows` for a loopback ``directory`` and a database."""
    leftovers = [n for n in os.listdir(directory) if n.startswith(layout.TEMP_PREFIX)]
    assert leftovers == [], "temporary backend files left after recovery: %s" % leftovers
    files = {name: os.path.getsize(os.path.join(directory, name))
             for name in os.listdir(directory) if layout.is_managed_name(name)}
    with db.reader() as session:
        rows = {}
        for model, size_of in ((models.Volume, "size"), (models.Snapshot, "volume_size")):
            for row in session.scalars(sa.select(model).where(model.deleted.is_(False))):
                rows[row.name] = (row.status, getattr(row, size_of))
    leaked = set(files) - set(rows)
    assert not leaked, "backend objects without a live row: %s" % sorted(leaked)
    for name, (status, size) in rows.items():
        if status in HAS_BACKEND_OBJECT:
            assert name in files, "%s is %s but has no backend object" % (name, status)
            assert -(-files[name] // GiB) == size, (name, files[name], size)
