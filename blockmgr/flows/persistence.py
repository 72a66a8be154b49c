"""TaskFlow persistence for blockmgr flows: TaskFlow's SQLAlchemy schema, made cheap.

Stock ``impl_sqlalchemy`` costs 220-315 ms per 7-task flow, this backend about 12 ms: every
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
   * a reader asks (:meth:`flush`). A new flow is first written by its own first
     boundary, with its detail, atoms and store together (and, when :attr:`first_write`
     is set, whatever that adds: the request's claim), never by a flush of every flow.

   A 7-task flow costs 9 commits. The one behavioural difference from stock TaskFlow: a task
   that *finished* just before a crash is recorded as ``RUNNING`` and runs again on resume.
   Every blockmgr task is idempotent for that reason (the same is needed anyway for a crash
   *during* a task). ``commits="every-transition"`` restores stock durability.

Reads (``get_*``) flush everything staged first, so an in-process reader always sees the
current state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from typing import Callable

import sqlalchemy as sa
from sqlalchemy import pool as sa_pool
from taskflow import states as tf_states
from taskflow.persistence import models as tf_models
from taskflow.persistence.backends.sqlalchemy import tables as tf_tables

from blockmgr import exception
from blockmgr.db import session as db_session
from blockmgr.db import transaction
from blockmgr.flows import logbook_schema
from blockmgr.flows import taskflow_compat

_METADATA = sa.MetaData()
TABLES = tf_tables.fetch(_METADATA)

#: Atom states whose write must be durable before the engine goes on (a side effect follows).
_COMMIT_ATOM_STATES = frozenset({tf_states.RUNNING, tf_states.REVERTING})
#: Atom states of a task that has not run (yet).
_NOT_RUN = frozenset({None, tf_states.PENDING})
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
_INSERT_FLOW = TABLES.flowdetails.insert()
_INSERT_ATOM = TABLES.atomdetails.insert()
#: Deletes a flow detail and, through TaskFlow's ``ON DELETE CASCADE`` foreign key (in its
#: tables and its migrations; SQLite logbooks run with ``foreign_keys = ON``), its atoms:
#: one statement where two would cost a second execution for the same server work.
_DELETE_FLOW = TABLES.flowdetails.delete().where(
    TABLES.flowdetails.c.uuid == sa.bindparam("b_uuid"))


#: Attempts of one logbook write when the server picks it as a deadlock victim.
DEADLOCK_RETRIES = 5


def create_engine(url: str) -> sa.engine.Engine:
    """A pooled engine; for SQLite with the pragmas TaskFlow never sets."""
    if not url.startswith("sqlite"):
        engine = sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600,
                                  isolation_level="READ COMMITTED")
        db_session.trim_pool_round_trips(engine)
        return engine
    in_memory = url in taskflow_compat.SQLITE_IN_MEMORY
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
    """What one flow detail has changed since its last commit: the latest detail objects,
    turned into rows only when written (:meth:`FlowPersistence.flush`).

    Holding references is safe because TaskFlow's storage never changes a detail it has
    handed to the backend: every save builds a fresh clone, and the contained values (task
    results, meta) are replaced, never edited in place, by the engine. Serialising at
    write time skips the rows of every intermediate transition (a deep copy each).
    """

    flow: tf_models.FlowDetail | None = None
    atoms: dict = dataclasses.field(default_factory=dict)  # uuid -> AtomDetail


class FlowPersistence(taskflow_compat.SharedTablesBackend):
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
        super().__init__(url, engine or create_engine(url), owns_engine=engine is None)
        self.commits = commits
        self.prune_on_finish = prune_on_finish
        self._lock = threading.RLock()
        self._staged: dict[str, _Staged] = {}
        self._atom_flow: dict[str, str] = {}    # atom uuid -> flow uuid, for staging
        self._stored: set[str] = set()          # flow/atom uuids known to have a row
        self._writing: dict[str, threading.Lock] = {}
        self._parents: dict[str, str] = {}      # new flow uuid -> logbook uuid (not inserted)
        self._last_state: dict[str, str] = {}   # atom uuid -> last staged state
        self._deferrable: set[str] = set()      # atoms whose RUNNING may wait (declare_atoms)
        self._closing: set[str] = set()         # atoms that end their flow (declare_atoms)
        self._closed: dict[str, set[str]] = {}  # flow closed by a task -> its atom uuids
        #: Called as ``first_write(conn, flow_uuid)`` in the transaction of each flow's
        #: first write (the request ledger's deferred claim, ``ledger.claim_in``): what it
        #: returns (if anything) is called once that transaction committed; what it raises
        #: rolls the write back and reaches the engine unwrapped.
        self.first_write: Callable | None = None

    def make_connection(self, upgrade_lock):
        return _Connection(self, upgrade_lock)

    def upgrade(self) -> None:
        """Create or migrate TaskFlow's tables (its own alembic history on MySQL/PostgreSQL).

        A server database already at TaskFlow's head (``db sync`` ran) is only checked, with
        one query and without loading alembic (:mod:`blockmgr.flows.logbook_schema`).
        """
        if self.engine.dialect.name != "sqlite" and logbook_schema.is_current(self.engine):
            return
        with contextlib.closing(self.get_connection()) as conn:
            conn.upgrade()

    # --- staging ------------------------------------------------------------------------

    def add_flow_detail(self, book: tf_models.LogBook, flow_detail: tf_models.FlowDetail):
        """Stage a new flow detail under ``book`` (which must exist); written by the next
        :meth:`flush` of the flow, together with its atoms and store."""
        with self._lock:
            if flow_detail.uuid in self._stored or flow_detail.uuid in self._closed:
                # A new flow under the uuid of one this process read or ran before (a
                # request run again after a peer finished its earlier flow and deleted
                # it): what was known of that flow is stale, its rows may be gone.
                self._forget(flow_detail.uuid)
                self._staged.pop(flow_detail.uuid, None)
                self._closed.pop(flow_detail.uuid, None)
            self._parents[flow_detail.uuid] = book.uuid
            self._staged.setdefault(flow_detail.uuid, _Staged()).flow = flow_detail

    def stage_flow(self, flow_detail: tf_models.FlowDetail) -> None:
        with self._lock:
            if flow_detail.uuid in self._closed:
                return   # its end is written already (close_flow)
            staged = self._staged.setdefault(flow_detail.uuid, _Staged())
            staged.flow = flow_detail
            for ad in flow_detail:
                if ad.uuid not in self._atom_flow:
                    self._atom_flow[ad.uuid] = flow_detail.uuid
                    staged.atoms[ad.uuid] = ad
            boundary = flow_detail.state in _COMMIT_FLOW_STATES
        if boundary or self.commits == "every-transition":
            self.flush(flow_detail.uuid)

    def stage_atom(self, atom_detail: tf_models.AtomDetail) -> bool:
        """Stage an atom update; False if its flow is unknown (caller writes it directly)."""
        with self._lock:
            flow_uuid = self._atom_flow.get(atom_detail.uuid)
            if flow_uuid is None:
                return self._is_closed_atom(atom_detail.uuid)
            self._staged.setdefault(flow_uuid, _Staged()).atoms[atom_detail.uuid] = atom_detail
            entered = self._last_state.get(atom_detail.uuid) != atom_detail.state
            self._last_state[atom_detail.uuid] = atom_detail.state
        # Commit on *entering* RUNNING/REVERTING; later saves in that state (progress,
        # metadata) wait for the next boundary.
        if (entered and atom_detail.state in _COMMIT_ATOM_STATES
                and not self._may_defer(flow_uuid, atom_detail)) \
                or self.commits == "every-transition":
            self.flush(flow_uuid)
        return True

    @property
    def closes_flows(self) -> bool:
        """True if a task may write its flow's end in its own transaction (:meth:`close_flow`):
        finished flows are pruned and the logbook lives in the service's database (the
        engine is the service's, lent to this backend)."""
        return self.prune_on_finish and not self._owns_engine

    def declare_atoms(self, deferrable, closing=()) -> None:
        """Name the atoms (uuids) whose start need not be a boundary of its own.

        ``deferrable``: tasks without a side effect a crash could leave half-done
        (``FlowTask.durable_start`` False) that resume after a crash (``on_crash``
        RESUME). Such a task entering ``RUNNING`` is not committed while everything its
        flow has staged since the last boundary belongs to deferrable tasks too: a crash
        then leaves the logbook as a crash just after that boundary would, and only those
        side-effect-free tasks run again. Once a task with a side effect has finished,
        the next start is committed (its finish must not be lost: re-running it later,
        after users saw its effect, could fail or undo what they did since). Atoms staged
        but not run yet (``PENDING``) do not count: a new flow's first write is the first
        boundary, not its creation.

        ``closing``: the flow's last task when it writes the flow's end with its own
        (:meth:`close_flow`, only when :attr:`closes_flows`). Its start is never a boundary:
        until its transaction commits, a crash leaves the logbook as a crash during the
        task before it, which runs again (every task is idempotent); once it commits, the
        flow is gone from the logbook, so no state of it is ever lost in between. Both sets
        are forgotten with the flow.
        """
        with self._lock:
            self._deferrable.update(deferrable)
            if self.closes_flows:
                self._closing.update(closing)

    def _may_defer(self, flow_uuid: str, atom_detail: tf_models.AtomDetail) -> bool:
        if atom_detail.state != tf_states.RUNNING:
            return False
        if atom_detail.uuid in self._closing:
            return True
        if atom_detail.uuid not in self._deferrable:
            return False
        with self._lock:
            staged = self._staged.get(flow_uuid)
            return staged is not None and all(
                uuid in self._deferrable or ad.state in _NOT_RUN
                for uuid, ad in staged.atoms.items())

    # --- a flow's end written by its last task ------------------------------------------

    def close_flow(self, conn, flow_uuid: str) -> Callable[[], None]:
        """Delete ``flow_uuid``'s rows in the caller's transaction on ``conn`` (which must
        be this backend's engine), for a last task that writes the flow's end together
        with its own final write (:attr:`closes_flows`). Returns what to call once that
        transaction committed: from then on whatever the engine still saves for the flow
        (the task's success, the flow's) is dropped, not written.

        The statements run at ``READ COMMITTED`` when they are the transaction's first
        (no next-key locks to deadlock on, as :meth:`_write_rows`).
        """
        with self._lock:
            stored = flow_uuid in self._stored
        if stored:
            conn.execute(_DELETE_FLOW, {"b_uuid": flow_uuid})
        return functools.partial(self._closed_by_task, flow_uuid)

    def _closed_by_task(self, flow_uuid: str) -> None:
        with self._lock:
            atoms = {a for a, f in self._atom_flow.items() if f == flow_uuid}
            self._staged.pop(flow_uuid, None)
            self._forget(flow_uuid)
            self._writing.pop(flow_uuid, None)
            self._closed[flow_uuid] = atoms

    def _is_closed_atom(self, atom_uuid: str) -> bool:
        with self._lock:
            return any(atom_uuid in atoms for atoms in self._closed.values())

    def release_closed(self, flow_uuid: str) -> None:
        """The engine of ``flow_uuid`` stopped: stop dropping its saves."""
        with self._lock:
            self._closed.pop(flow_uuid, None)

    def remember(self, flow_detail: tf_models.FlowDetail) -> None:
        """Record that ``flow_detail`` and its atoms have rows (it was read from the DB)."""
        with self._lock:
            self._stored.add(flow_detail.uuid)
            for ad in flow_detail:
                self._stored.add(ad.uuid)
                self._atom_flow[ad.uuid] = flow_detail.uuid

    def flush(self, flow_uuid: str | None = None) -> None:
        """Write what ``flow_uuid`` (every flow if None) has staged, one transaction each.

        A flow that was never written is left out of a flush of every flow: its first
        write must be its own (the runner's, once the engine is prepared), which puts the
        flow detail, its atoms and its store in the logbook together. Written earlier --
        by a reader on another thread flushing everything before it queries, e.g. the
        queue drain asking which flows are unfinished -- a crash before that first own
        write would leave a flow detail without a store, which recovery can never run (its
        resource would stay transitional). Such a flow has done nothing yet, so a reader
        misses nothing by not seeing it.

        :raises FlowLogbookWriteFailed: a write failed (the error it wraps is its cause);
            what was staged stays staged.
        """
        with self._lock:
            uuids = ([flow_uuid] if flow_uuid is not None
                     else [u for u in self._staged if u not in self._parents])
        for uuid in uuids:
            with self._lock:
                writing = self._writing.setdefault(uuid, threading.Lock())
            with writing:
                with self._lock:
                    staged = self._staged.pop(uuid, None)
                if staged is not None and (staged.flow is not None or staged.atoms):
                    try:
                        self._write(uuid, staged)
                    except exception.RequestNotClaimed:
                        raise   # nothing of the flow is written; its runner discards it
                    except Exception as exc:
                        # Kept for the next flush: each staged state was reached by the
                        # engine (a boundary whose write failed stopped the side effect
                        # after it), so writing them later is like a crash just after.
                        with self._lock:
                            newer = self._staged.get(uuid)
                            if newer is not None:
                                staged.atoms.update(newer.atoms)
                                staged.flow = newer.flow or staged.flow
                            self._staged[uuid] = staged
                        raise exception.FlowLogbookWriteFailed(
                            flow_id=uuid, reason="%s: %s" % (type(exc).__name__, exc)) from exc

    def _write(self, flow_uuid: str, staged: _Staged) -> None:
        """Write what ``flow_uuid`` has staged in one transaction, run again when the
        server picked it as a deadlock victim (:func:`blockmgr.db.transaction.run`).

        Each flow writes only its own rows, but InnoDB gap locks taken by one flow's prune
        (``DELETE ... WHERE parent_uuid``) can still collide with another flow's inserts. The
        victim's transaction was rolled back, so running it again is safe. A lost connection
        is not retried here: the commit may have happened, and the caller keeps what was
        staged for the next flush.
        """
        state = staged.flow.state if staged.flow is not None else None
        prune = self.prune_on_finish and state in PRUNABLE_FLOW_STATES
        committed = transaction.run(
            self.engine.begin, lambda conn: self._write_rows(conn, flow_uuid, staged, prune),
            attempts=DEADLOCK_RETRIES, connection=False, what="Logbook write")
        if committed is not None:
            committed()
        with self._lock:
            if prune or state in FINAL_FLOW_STATES:
                self._forget(flow_uuid)
                self._writing.pop(flow_uuid, None)
            else:
                self._parents.pop(flow_uuid, None)
                self._stored.add(flow_uuid)
                self._stored.update(staged.atoms)

    def _write_rows(self, conn, flow_uuid: str, staged: _Staged,
                    prune: bool) -> Callable[[], None] | None:
        """The statements of one write of ``flow_uuid``, on ``conn`` (in a transaction);
        returns what :attr:`first_write` asked to call after the commit."""
        transaction.read_committed(conn)
        committed = None
        if self.first_write is not None and flow_uuid in self._parents:
            committed = self.first_write(conn, flow_uuid)
        if prune:
            conn.execute(_DELETE_FLOW, {"b_uuid": flow_uuid})
        else:
            # Parameter dicts against fixed statements: compiled once, then cached
            # (inline .values(...) would rebuild the statement's cache key every time);
            # several atoms go in one executemany.
            if staged.flow is not None:
                row = _flow_row(staged.flow)
                if flow_uuid in self._stored:
                    conn.execute(_UPDATE_FLOW, dict(row, b_uuid=flow_uuid))
                else:
                    conn.execute(_INSERT_FLOW, dict(
                        row, parent_uuid=self._parents[flow_uuid]))
            updates, inserts = [], []
            for uuid, ad in staged.atoms.items():
                if uuid in self._stored:
                    updates.append(dict(_atom_row(ad), b_uuid=uuid))
                else:
                    inserts.append(dict(_atom_row(ad), parent_uuid=flow_uuid))
            if updates:
                conn.execute(_UPDATE_ATOM, updates)
            if inserts:
                conn.execute(_INSERT_ATOM, inserts)
        return committed

    def discard(self, flow_uuid: str) -> None:
        """Forget a flow that was never written (its run stopped before its first write
        committed): nothing of it is staged or remembered any more."""
        with self._lock:
            self._staged.pop(flow_uuid, None)
            self._closed.pop(flow_uuid, None)
            self._writing.pop(flow_uuid, None)
            self._forget(flow_uuid)

    def _forget(self, flow_uuid: str) -> None:
        atoms = [a for a, f in self._atom_flow.items() if f == flow_uuid]
        for uuid in atoms:
            self._atom_flow.pop(uuid, None)
            self._last_state.pop(uuid, None)
            self._stored.discard(uuid)
            self._deferrable.discard(uuid)
            self._closing.discard(uuid)
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
        with self.engine.connect() as conn:
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
        with self.engine.begin() as conn:
            uuids = [row[0] for row in conn.execute(select)]
            if uuids:
                conn.execute(ad_t.delete().where(ad_t.c.parent_uuid.in_(uuids)))
                conn.execute(fd_t.delete().where(fd_t.c.uuid.in_(uuids)))
        return len(uuids)


class _Connection(taskflow_compat.SharedTablesConnection):
    """Stock connection on the shared tables, with writes staged by the backend."""

    def __init__(self, backend: FlowPersistence, upgrade_lock):
        super().__init__(backend, upgrade_lock, _METADATA, TABLES)

    def update_atom_details(self, atom_detail):
        if self.backend.stage_atom(atom_detail):
            return atom_detail
        return super().update_atom_details(atom_detail)

    def update_flow_details(self, flow_detail, ignore_missing=False):
        self.backend.stage_flow(flow_detail)
        return flow_detail

    def save_logbook(self, book):
        self.backend.flush()
        result = super().save_logbook(book)
        for fd in book:
            self.backend.remember(fd)
        return result

    def get_logbook(self, book_uuid, lazy=False):
        self.backend.flush()
        book = super().get_logbook(book_uuid, lazy=lazy)
        for fd in book:
            self.backend.remember(fd)
        return book

    def get_flow_details(self, fd_uuid, lazy=False):
        self.backend.flush()
        self.backend.flush(fd_uuid)   # also when it was never written (see flush)
        fd = super().get_flow_details(fd_uuid, lazy=lazy)
        self.backend.remember(fd)
        return fd

    def get_flows_for_book(self, book_uuid, lazy=False):
        self.backend.flush()
        for fd in super().get_flows_for_book(book_uuid, lazy=lazy):
            self.backend.remember(fd)
            yield fd

    def get_atom_details(self, ad_uuid):
        self.backend.flush()
        return super().get_atom_details(ad_uuid)

    def get_atoms_for_flow(self, fd_uuid):
        self.backend.flush()
        return super().get_atoms_for_flow(fd_uuid)

    def destroy_logbook(self, book_uuid):
        self.backend.flush()
        return super().destroy_logbook(book_uuid)


def _flow_row(fd: tf_models.FlowDetail) -> dict:
    """Column values of a flow detail, taken just before they are written."""
    return fd.to_dict()


def _atom_row(ad: tf_models.AtomDetail) -> dict:
    """Column values of an atom detail, taken just before they are written (the JSON
    columns serialise them during the statement, so no copy is needed)."""
    row = ad.to_dict()
    row["atom_type"] = tf_models.atom_detail_type(ad)
    return row
