"""TaskFlow persistence for blockmgr flows: TaskFlow's SQLAlchemy schema, made cheap.

Stock ``impl_sqlalchemy`` costs 220-315 ms per 7-task flow (``persistence-notes.md``): every
connection builds a fresh ``MetaData`` and three ``Table`` objects (defeating SQLAlchemy's
statement cache), SQLite gets a ``NullPool`` (reconnect + pragmas per write), and every atom
state change is a read-merge-write transaction of its own (~34 commits per flow).

:class:`FlowPersistence` keeps TaskFlow's tables, rows and resume semantics and changes three
things:

1. One module-level ``Table`` set shared by every connection.
2. A pooled engine (SQLite: WAL, ``synchronous=NORMAL``, ``foreign_keys=ON`` so destroying a
   flow detail cascades to its atoms) -- or the service's own engine when the logbooks live in
   the service database.
3. **Commit at the boundaries recovery needs** (``commits="boundaries"``): atom and flow
   updates are staged in memory per flow detail and written in one transaction when

   * an atom enters ``RUNNING`` or ``REVERTING`` -- i.e. *before* each side effect, so after a
     crash the logbook names the task that may have half-happened, and holds every earlier
     task's results;
   * the flow reaches a final state (``SUCCESS``, ``REVERTED``, ``FAILURE``) or is
     ``SUSPENDED``;
   * the runner asks (:meth:`flush`), once after the engine is prepared, so the flow detail,
     its atoms and its store exist before the first task runs.

   A 7-task flow costs 9 commits. The one behavioural difference from stock TaskFlow: a task
   that *finished* just before a crash is recorded as ``RUNNING`` and runs again on resume.
   Every blockmgr task is idempotent for that reason (the same is needed anyway for a crash
   *during* a task). ``commits="every-transition"`` restores stock durability.

Reads (``get_*``) flush everything staged first, so an in-process reader always sees the
current state.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading

import sqlalchemy as sa
from sqlalchemy import pool as sa_pool
from taskflow import states as tf_states
from taskflow.persistence import models as tf_models
from taskflow.persistence.backends import impl_memory
from taskflow.persistence.backends import impl_sqlalchemy
from taskflow.persistence.backends.sqlalchemy import tables as tf_tables

_METADATA = sa.MetaData()
TABLES = tf_tables.fetch(_METADATA)

#: Atom states whose write must be durable before the engine goes on (a side effect follows).
_COMMIT_ATOM_STATES = frozenset({tf_states.RUNNING, tf_states.REVERTING})
#: Flow states after which nothing else happens to the flow (SUSPENDED is resumable).
FINAL_FLOW_STATES = frozenset({tf_states.SUCCESS, tf_states.REVERTED, tf_states.FAILURE})
#: Flow states written at once: the end, and a pause (an engine stops or resumes).
_COMMIT_FLOW_STATES = FINAL_FLOW_STATES | {tf_states.SUSPENDED}
#: Final states whose flow details may be pruned (a failed revert waits for an operator).
PRUNABLE_FLOW_STATES = frozenset({tf_states.SUCCESS, tf_states.REVERTED})

COMMIT_MODES = ("boundaries", "every-transition")

_UPDATE_FLOW = TABLES.flowdetails.update().where(
    TABLES.flowdetails.c.uuid == sa.bindparam("b_uuid"))
_UPDATE_ATOM = TABLES.atomdetails.update().where(
    TABLES.atomdetails.c.uuid == sa.bindparam("b_uuid"))


def create_engine(url: str) -> sa.engine.Engine:
    """A pooled engine; for SQLite with the pragmas TaskFlow never sets."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600,
                                isolation_level="READ COMMITTED")
    in_memory = url in impl_sqlalchemy.SQLITE_IN_MEMORY
    engine = sa.create_engine(
        url, poolclass=sa_pool.StaticPool if in_memory else sa_pool.QueuePool,
        connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_con, _record):
        if not in_memory:
            dbapi_con.execute("PRAGMA journal_mode = WAL")
        dbapi_con.execute("PRAGMA synchronous = NORMAL")
        dbapi_con.execute("PRAGMA foreign_keys = ON")
        dbapi_con.execute("PRAGMA busy_timeout = 30000")

    return engine


@dataclasses.dataclass
class _Staged:
    """What one flow detail has changed since its last commit."""

    flow: dict | None = None
    atoms: dict = dataclasses.field(default_factory=dict)  # uuid -> row values


class FlowPersistence(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow backend over TaskFlow's SQL schema with boundary commits (module docstring).

    :param url: SQLAlchemy URL of the database holding the logbooks.
    :param engine: an existing engine on that database to share (e.g. the service's own);
        it is not disposed by :meth:`close`.
    :param commits: ``boundaries`` (default) or ``every-transition``.
    :param prune_on_finish: delete a flow's details in the commit that records its end
        (succeeded or reverted flows only).
    """

    def __init__(self, url: str, *, engine: sa.engine.Engine | None = None,
                 commits: str = "boundaries", prune_on_finish: bool = False):
        if commits not in COMMIT_MODES:
            raise ValueError("commits must be one of %s" % (COMMIT_MODES,))
        owns = engine is None
        super().__init__({"connection": url}, engine=engine or create_engine(url))
        self._owns_engine = owns
        self.commits = commits
        self.prune_on_finish = prune_on_finish
        self._lock = threading.RLock()
        self._staged: dict[str, _Staged] = {}
        self._atom_flow: dict[str, str] = {}    # atom uuid -> flow uuid, for staging
        self._stored: set[str] = set()          # flow/atom uuids known to have a row
        self._parents: dict[str, str] = {}      # new flow uuid -> logbook uuid (not inserted)
        self._last_state: dict[str, str] = {}   # atom uuid -> last staged state

    def get_connection(self):
        conn = _Connection(self, upgrade_lock=self._upgrade_lock)
        if not self._validated:
            conn.validate(max_retries=self._max_retries)
            self._validated = True
        return conn

    def upgrade(self) -> None:
        """Create or migrate TaskFlow's tables (its own alembic history on MySQL/PostgreSQL)."""
        with contextlib.closing(self.get_connection()) as conn:
            conn.upgrade()

    # --- staging ------------------------------------------------------------------------

    def add_flow_detail(self, book: tf_models.LogBook, flow_detail: tf_models.FlowDetail):
        """Stage a new flow detail under ``book`` (which must exist); written by the next
        :meth:`flush` of the flow, together with its atoms and store."""
        with self._lock:
            self._parents[flow_detail.uuid] = book.uuid
            self._staged.setdefault(flow_detail.uuid, _Staged()).flow = _flow_row(flow_detail)

    def stage_flow(self, flow_detail: tf_models.FlowDetail) -> None:
        with self._lock:
            staged = self._staged.setdefault(flow_detail.uuid, _Staged())
            staged.flow = _flow_row(flow_detail)
            for ad in flow_detail:
                if ad.uuid not in self._atom_flow:
                    self._atom_flow[ad.uuid] = flow_detail.uuid
                    staged.atoms[ad.uuid] = _atom_row(ad)
            boundary = flow_detail.state in _COMMIT_FLOW_STATES
        if boundary or self.commits == "every-transition":
            self.flush(flow_detail.uuid)

    def stage_atom(self, atom_detail: tf_models.AtomDetail) -> bool:
        """Stage an atom update; False if its flow is unknown (caller writes it directly)."""
        with self._lock:
            flow_uuid = self._atom_flow.get(atom_detail.uuid)
            if flow_uuid is None:
                return False
            self._staged.setdefault(flow_uuid, _Staged()).atoms[atom_detail.uuid] = \
                _atom_row(atom_detail)
            entered = self._last_state.get(atom_detail.uuid) != atom_detail.state
            self._last_state[atom_detail.uuid] = atom_detail.state
        # Commit on *entering* RUNNING/REVERTING; later saves in that state (progress,
        # metadata) wait for the next boundary.
        if (entered and atom_detail.state in _COMMIT_ATOM_STATES) \
                or self.commits == "every-transition":
            self.flush(flow_uuid)
        return True

    def remember(self, flow_detail: tf_models.FlowDetail) -> None:
        """Record that ``flow_detail`` and its atoms have rows (it was read from the DB)."""
        with self._lock:
            self._stored.add(flow_detail.uuid)
            for ad in flow_detail:
                self._stored.add(ad.uuid)
                self._atom_flow[ad.uuid] = flow_detail.uuid

    def flush(self, flow_uuid: str | None = None) -> None:
        """Write what ``flow_uuid`` (every flow if None) has staged, one transaction each."""
        with self._lock:
            uuids = [flow_uuid] if flow_uuid is not None else list(self._staged)
            for uuid in uuids:
                staged = self._staged.pop(uuid, None)
                if staged is not None and (staged.flow is not None or staged.atoms):
                    self._write(uuid, staged)

    def _write(self, flow_uuid: str, staged: _Staged) -> None:
        fd_t, ad_t = TABLES.flowdetails, TABLES.atomdetails
        state = (staged.flow or {}).get("state")
        prune = self.prune_on_finish and state in PRUNABLE_FLOW_STATES
        with self._engine.begin() as conn:
            if prune:
                conn.execute(ad_t.delete().where(ad_t.c.parent_uuid == flow_uuid))
                conn.execute(fd_t.delete().where(fd_t.c.uuid == flow_uuid))
            else:
                # Parameter dicts against fixed statements: compiled once, then cached
                # (inline .values(...) would rebuild the statement's cache key every time).
                if staged.flow is not None:
                    if flow_uuid in self._stored:
                        conn.execute(_UPDATE_FLOW, dict(staged.flow, b_uuid=flow_uuid))
                    else:
                        conn.execute(fd_t.insert(), dict(
                            staged.flow, parent_uuid=self._parents.pop(flow_uuid)))
                updates = [dict(row, b_uuid=uuid) for uuid, row in staged.atoms.items()
                           if uuid in self._stored]
                inserts = [dict(row, parent_uuid=flow_uuid)
                           for uuid, row in staged.atoms.items() if uuid not in self._stored]
                for params in updates:
                    conn.execute(_UPDATE_ATOM, params)
                if inserts:
                    conn.execute(ad_t.insert(), inserts)
        if prune or state in FINAL_FLOW_STATES:
            self._forget(flow_uuid)
        else:
            self._stored.add(flow_uuid)
            self._stored.update(staged.atoms)

    def _forget(self, flow_uuid: str) -> None:
        atoms = [a for a, f in self._atom_flow.items() if f == flow_uuid]
        for uuid in atoms:
            self._atom_flow.pop(uuid, None)
            self._last_state.pop(uuid, None)
            self._stored.discard(uuid)
        self._stored.discard(flow_uuid)
        self._parents.pop(flow_uuid, None)

    # --- queries blockmgr needs beyond TaskFlow's API ------------------------------------

    def unfinished_flow_uuids(self, book_uuid: str | None = None) -> set[str]:
        """Uuids of flow details not in a final state (of one logbook, or of all)."""
        self.flush()
        fd_t = TABLES.flowdetails
        stmt = sa.select(fd_t.c.uuid).where(
            sa.or_(fd_t.c.state.is_(None), fd_t.c.state.not_in(sorted(FINAL_FLOW_STATES))))
        if book_uuid is not None:
            stmt = stmt.where(fd_t.c.parent_uuid == book_uuid)
        with self._engine.connect() as conn:
            return {row[0] for row in conn.execute(stmt)}

    def prune_finished(self, book_uuid: str, older_than) -> int:
        """Delete succeeded/reverted flow details of ``book_uuid`` last updated before
        ``older_than`` (a naive UTC datetime); returns how many."""
        self.flush()
        fd_t, ad_t = TABLES.flowdetails, TABLES.atomdetails
        stamp = sa.func.coalesce(fd_t.c.updated_at, fd_t.c.created_at)
        select = sa.select(fd_t.c.uuid).where(
            fd_t.c.parent_uuid == book_uuid, fd_t.c.state.in_(sorted(PRUNABLE_FLOW_STATES)),
            stamp < older_than)
        with self._engine.begin() as conn:
            uuids = [row[0] for row in conn.execute(select)]
            if uuids:
                conn.execute(ad_t.delete().where(ad_t.c.parent_uuid.in_(uuids)))
                conn.execute(fd_t.delete().where(fd_t.c.uuid.in_(uuids)))
        return len(uuids)


class _Connection(impl_sqlalchemy.Connection):
    """Stock connection on the shared tables, with writes staged by the backend."""

    def __init__(self, backend: FlowPersistence, upgrade_lock):
        self._backend = backend
        self._upgrade_lock = upgrade_lock
        self._engine = backend.engine
        self._metadata = _METADATA
        self._tables = TABLES
        self._converter = impl_sqlalchemy._Alchemist(TABLES)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update_atom_details(self, atom_detail):
        if self._backend.stage_atom(atom_detail):
            return atom_detail
        return super().update_atom_details(atom_detail)

    def update_flow_details(self, flow_detail, ignore_missing=False):
        self._backend.stage_flow(flow_detail)
        return flow_detail

    def save_logbook(self, book):
        self._backend.flush()
        result = super().save_logbook(book)
        for fd in book:
            self._backend.remember(fd)
        return result

    def get_logbook(self, book_uuid, lazy=False):
        self._backend.flush()
        book = super().get_logbook(book_uuid, lazy=lazy)
        for fd in book:
            self._backend.remember(fd)
        return book

    def get_flow_details(self, fd_uuid, lazy=False):
        self._backend.flush()
        fd = super().get_flow_details(fd_uuid, lazy=lazy)
        self._backend.remember(fd)
        return fd

    def get_flows_for_book(self, book_uuid, lazy=False):
        self._backend.flush()
        for fd in super().get_flows_for_book(book_uuid, lazy=lazy):
            self._backend.remember(fd)
            yield fd

    def get_atom_details(self, ad_uuid):
        self._backend.flush()
        return super().get_atom_details(ad_uuid)

    def get_atoms_for_flow(self, fd_uuid):
        self._backend.flush()
        return super().get_atoms_for_flow(fd_uuid)

    def destroy_logbook(self, book_uuid):
        self._backend.flush()
        return super().destroy_logbook(book_uuid)


def _flow_row(fd: tf_models.FlowDetail) -> dict:
    row = fd.to_dict()
    row["meta"] = copy.deepcopy(row.get("meta"))
    return row


def _atom_row(ad: tf_models.AtomDetail) -> dict:
    row = copy.deepcopy(ad.to_dict())
    row["atom_type"] = tf_models.atom_detail_type(ad)
    return row


class MemoryPersistence(impl_memory.MemoryBackend):
    """TaskFlow's in-memory backend with the extra queries of :class:`FlowPersistence`.

    Lost at process exit: for tests and benchmarks only (``persistence_connection=memory``).
    """

    def __init__(self):
        super().__init__({"deep_copy": False})

    def upgrade(self) -> None:
        """Nothing to create."""

    def flush(self, flow_uuid: str | None = None) -> None:
        """Every write is immediate."""

    def add_flow_detail(self, book, flow_detail) -> None:
        # Save a book holding only the new flow: merging the whole host book would copy
        # every flow it holds on every launch.
        single = tf_models.LogBook(book.name, uuid=book.uuid)
        single.meta = book.meta
        single.add(flow_detail)
        with contextlib.closing(self.get_connection()) as conn:
            conn.save_logbook(single)

    def _flow_details(self, book_uuid):
        with contextlib.closing(self.get_connection()) as conn:
            books = [conn.get_logbook(book_uuid)] if book_uuid else list(conn.get_logbooks())
        return [fd for book in books for fd in book]

    def unfinished_flow_uuids(self, book_uuid: str | None = None) -> set[str]:
        return {fd.uuid for fd in self._flow_details(book_uuid)
                if fd.state not in FINAL_FLOW_STATES}

    def prune_finished(self, book_uuid: str, older_than) -> int:
        """Memory logbooks carry no per-flow timestamps: every finished flow is pruned."""
        with contextlib.closing(self.get_connection()) as conn:
            doomed = [fd.uuid for fd in conn.get_logbook(book_uuid)
                      if fd.state in PRUNABLE_FLOW_STATES]
        return _memory_prune(self, book_uuid, doomed)


def _memory_prune(backend: MemoryPersistence, book_uuid: str, doomed: list[str]) -> int:
    """Drop flow details from a memory logbook by rebuilding the book without them."""
    if not doomed:
        return 0
    with contextlib.closing(backend.get_connection()) as conn:
        book = conn.get_logbook(book_uuid)
        kept = [fd for fd in book if fd.uuid not in doomed]
        conn.destroy_logbook(book_uuid)
        fresh = tf_models.LogBook(book.name, uuid=book.uuid)
        fresh.meta = book.meta
        for fd in kept:
            fresh.add(fd)
        conn.save_logbook(fresh)
    return len(doomed)
