"""Everything blockmgr does with TaskFlow below its public API, in one place.

blockmgr runs every operation as a persisted TaskFlow flow and depends on a few TaskFlow
internals for speed and for its logbook backend. They live here, and nowhere else, so that a
TaskFlow upgrade has one module to review:

* **Engine** (:class:`SerialEngine`): TaskFlow's serial action engine on
  :class:`LeanStorage` (a cheaper lock, a plain retry loop around saves, direct reads of
  atom states), and reuse of a pooled flow's compilation and validation. Each keeps
  TaskFlow's behaviour; they only cost less engine CPU per flow.
* **Logbook backend** (:class:`SharedTablesBackend`, :class:`SharedTablesConnection`): the
  stock SQLAlchemy backend and connection on one module-level set of tables, so the lean
  backend of :mod:`blockmgr.flows.persistence` keeps TaskFlow's schema and row format.
* **Logbook schema** (:func:`defer_migrations`, :func:`head_revisions`): TaskFlow's migration
  module loaded on first use, and its head revision read from its alembic scripts.
* **Jobboard** (:func:`board_dumps`, :func:`board_loads`): the serialisation TaskFlow's
  Redis jobboard uses for postings, for the postings the cluster writes itself.

:data:`SUPPORTED_TASKFLOW` is the range these were checked against (``pyproject.toml`` pins
it); :func:`problems` says what is wrong with the installed TaskFlow, and a unit test fails
when it says anything.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
import threading
import time

MIGRATION_MODULE = "taskflow.persistence.backends.sqlalchemy.migration"


def defer_migrations() -> None:
    """Load TaskFlow's migration module (and alembic) on first attribute access.

    TaskFlow's SQL backend imports it -- and alembic and mako with it, about 0.15 s of a
    worker's start -- when the backend module is imported, for a schema ``db sync`` has
    normally brought to head already. Effective only before
    ``taskflow.persistence.backends.impl_sqlalchemy`` is first imported (this module calls
    it before importing it); a no-op after.
    """
    if MIGRATION_MODULE in sys.modules:
        return
    spec = importlib.util.find_spec(MIGRATION_MODULE)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[MIGRATION_MODULE] = module
    loader.exec_module(module)
    parent, _, child = MIGRATION_MODULE.rpartition(".")
    setattr(sys.modules[parent], child, module)


defer_migrations()

# Imported after the deferral above, on purpose.
from taskflow import exceptions as tf_exc  # noqa: E402
from taskflow import states as tf_states  # noqa: E402
from taskflow import storage as tf_storage  # noqa: E402
from taskflow.engines import helpers as tf_helpers  # noqa: E402
from taskflow.engines.action_engine import engine as tf_engine  # noqa: E402
from taskflow.persistence.backends import impl_sqlalchemy  # noqa: E402
from taskflow.utils import misc as tf_misc  # noqa: E402

#: The TaskFlow releases this module was checked against: ``(lowest, first unsupported)``.
SUPPORTED_TASKFLOW = ("6.5", "6.6")

#: Name of the atom under which TaskFlow's storage keeps a flow's injected store.
INJECTOR_NAME = tf_storage.Storage.injector_name

#: Private class attributes relied on below: ``(owner, name)``.
_CLASS_NAMES = (
    (tf_helpers, "_fetch_factory"),
    (impl_sqlalchemy, "_Alchemist"),
    (impl_sqlalchemy.SQLAlchemyBackend, "get_connection"),
    (impl_sqlalchemy.Connection, "validate"),
    (tf_storage, "RETRY_ATTEMPTS"),
    (tf_storage, "RETRY_WAIT_TIMEOUT"),
    (tf_storage.Storage, "_save_flow_detail"),
    (tf_storage.Storage, "_save_atom_detail"),
    (tf_storage.Storage, "injector_name"),
    (tf_engine.SerialActionEngine, "storage"),
)
#: Private names of TaskFlow's Redis jobboard relied on (checked only by :func:`problems`:
#: the jobboard and the redis client load only in cluster mode).
_JOBBOARD_NAMES = ("_dumps", "_loads", "OWNED_POSTFIX", "LAST_MODIFIED_POSTFIX")
#: Private instance attributes relied on below, per kind of object.
_INSTANCE_NAMES = {
    "backend": ("_engine", "_owns_engine", "_validated", "_upgrade_lock", "_max_retries"),
    "storage": ("_flowdetail", "_atom_name_to_uuid", "_lock"),
    "engine": ("_flow", "_flow_detail", "_backend", "_compiler", "_compiled",
               "_compilation", "_runtime", "_validated"),
}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def installed_version() -> str:
    return importlib.metadata.version("taskflow")


def problems() -> list[str]:
    """What is wrong with the installed TaskFlow for this module (empty: nothing).

    The version must be inside :data:`SUPPORTED_TASKFLOW`, and every private name used here
    must exist -- on its class, and on the objects a real (tiny) flow run builds.
    """
    found = []
    version = installed_version()
    low, high = SUPPORTED_TASKFLOW
    if not _version_tuple(low) <= _version_tuple(version) < _version_tuple(high):
        found.append("TaskFlow %s is outside the supported range >=%s,<%s"
                     % (version, low, high))
    from taskflow.jobs.backends import impl_redis

    for owner, name in _CLASS_NAMES + tuple((impl_redis.RedisJobBoard, name)
                                            for name in _JOBBOARD_NAMES):
        if not hasattr(owner, name):
            found.append("%s.%s is gone" % (getattr(owner, "__name__", owner), name))
    for kind, obj in _sample_objects().items():
        for name in _INSTANCE_NAMES[kind]:
            if name not in vars(obj):
                found.append("%s objects have no %s" % (kind, name))
    return found


def _sample_objects() -> dict:
    """A backend, an engine and its storage, from a one-task flow run."""
    from taskflow import task as tf_task
    from taskflow.patterns import linear_flow
    from taskflow.persistence import models as tf_models

    class _Noop(tf_task.Task):
        def execute(self):
            return None

    backend = impl_sqlalchemy.SQLAlchemyBackend({"connection": "sqlite://"})
    flow = linear_flow.Flow("compat-probe").add(_Noop("noop"))
    detail = tf_models.FlowDetail("compat-probe", uuid="compat-probe")
    engine = tf_engine.SerialActionEngine(flow, detail, None, {})
    engine.run()
    return {"backend": backend, "engine": engine, "storage": engine.storage}


# --- small accessors ---------------------------------------------------------------------

def fetch_factory(name: str):
    """The flow factory a flow detail names (``meta['factory']['name']``), imported."""
    return tf_helpers._fetch_factory(name)


def detail_converter(tables):
    """TaskFlow's row <-> detail converter for ``tables`` (``convert_flow_detail``,
    ``convert_atom_detail``)."""
    return impl_sqlalchemy._Alchemist(tables)


def engine_flow(engine):
    """The flow an engine runs."""
    return engine._flow


def engine_atom_details(engine):
    """The atom details of the flow detail an engine's storage owns (live objects)."""
    return iter(engine.storage._flowdetail)


def board_dumps(board, obj) -> bytes:
    """``obj`` serialised as TaskFlow's Redis jobboard stores postings and stamps."""
    return board._dumps(obj)


def board_loads(board, raw: bytes):
    """A posting written by TaskFlow's Redis jobboard (or :func:`board_dumps`), read."""
    return board._loads(raw)


# --- logbook schema ----------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*=\s*['\"]?([0-9A-Za-z_]+|None)['\"]?",
                         re.MULTILINE)


def head_revisions() -> frozenset[str]:
    """The head revision(s) of TaskFlow's logbook migrations, read from its alembic scripts
    (``revision`` / ``down_revision`` lines) without importing alembic."""
    spec = importlib.util.find_spec("taskflow.persistence.backends.sqlalchemy")
    versions = os.path.join(os.path.dirname(spec.origin), "alembic", "versions")
    revisions, parents = set(), set()
    for name in os.listdir(versions):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(versions, name), encoding="utf-8") as script:
            found = dict(_ASSIGNMENT.findall(script.read()))
        if "revision" in found:
            revisions.add(found["revision"])
        if found.get("down_revision") not in (None, "None"):
            parents.add(found["down_revision"])
    return frozenset(revisions - parents)


# --- logbook backend ---------------------------------------------------------------------

SQLITE_IN_MEMORY = impl_sqlalchemy.SQLITE_IN_MEMORY


class SharedTablesBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow's SQLAlchemy backend on a given engine, whose connections are
    :meth:`make_connection`'s (a :class:`SharedTablesConnection` subclass).

    :param owns_engine: dispose the engine on ``close()`` (False: it is lent, e.g. the
        service's own).
    """

    def __init__(self, url: str, engine, *, owns_engine: bool):
        super().__init__({"connection": url}, engine=engine)
        self._owns_engine = owns_engine

    def make_connection(self, upgrade_lock):
        raise NotImplementedError

    def get_connection(self):
        conn = self.make_connection(self._upgrade_lock)
        if not self._validated:
            conn.validate(max_retries=self._max_retries)
            self._validated = True
        return conn


class SharedTablesConnection(impl_sqlalchemy.Connection):
    """TaskFlow's SQLAlchemy connection on a shared ``MetaData`` and table set.

    Stock builds a fresh ``MetaData`` and three ``Table`` objects per connection, which
    defeats SQLAlchemy's statement cache; this one is otherwise stock.
    """

    def __init__(self, backend, upgrade_lock, metadata, tables):
        self._backend = backend
        self._upgrade_lock = upgrade_lock
        self._engine = backend.engine
        self._metadata = metadata
        self._tables = tables
        self._converter = impl_sqlalchemy._Alchemist(tables)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- engine ------------------------------------------------------------------------------

class _Compiled:
    """Stands in for TaskFlow's ``PatternCompiler`` when the compilation is already known."""

    def __init__(self, compilation):
        self._compilation = compilation

    def compile(self):
        return self._compilation


class ExclusiveLock:
    """A reentrant lock with the ``read_lock()``/``write_lock()`` API of fasteners'
    ``ReaderWriterLock``.

    TaskFlow's storage takes its reader/writer lock around every call -- about 150 times
    per 7-task flow -- and fasteners implements it in Python (a condition variable, thread
    bookkeeping, a generator context manager each time). A serial engine has one thread
    using its storage, so readers never run concurrently anyway; one ``RLock`` (C-level,
    reentrant, so a writer may read, as with fasteners) gives the same exclusion for a
    fraction of the cost. Readers of another thread (a caller inspecting a finished
    engine) are serialised instead of shared, which is only stricter.
    """

    __slots__ = ("_lock",)

    def __init__(self):
        self._lock = threading.RLock()

    def read_lock(self):
        return self._lock

    def write_lock(self):
        return self._lock


class LeanStorage(tf_storage.Storage):
    """TaskFlow's storage with a cheaper lock and a plain retry loop around saves.

    Stock ``_save_*`` are wrapped by ``tenacity.retry`` (retry ``StorageFailure`` 3 times,
    5 s apart); building tenacity's retry state costs more than the save itself with our
    backends (~30 saves per flow). The loop below retries exactly as tenacity did.
    """

    def __init__(self, flow_detail, backend=None, scope_fetcher=None):
        super().__init__(flow_detail, backend=backend, scope_fetcher=scope_fetcher)
        self._lock = ExclusiveLock()
        self._rlock = self._lock.read_lock()   # the one RLock behind both "sides"

    def _save_flow_detail(self, conn, original_flow_detail, flow_detail):
        updated = _retrying(conn.update_flow_details, flow_detail)
        original_flow_detail.update(updated)
        return original_flow_detail

    def _save_atom_detail(self, conn, original_atom_detail, atom_detail):
        updated = _retrying(conn.update_atom_details, atom_detail)
        original_atom_detail.update(updated)
        return original_atom_detail

    def set_task_progress(self, task_name, progress, details=None):
        """Skip a save that would not change what ``get_task_progress`` answers.

        The engine sets progress 0.0 on every task it starts, right after saving the
        ``RUNNING`` state; a task that never ran already reads 0.0 (no value stored), so
        that second save of the atom (a copy and a backend write each) changed nothing.
        Progress with details, and any other value, is saved as stock does.
        """
        if details is None and self.get_task_progress(task_name) == progress:
            return
        super().set_task_progress(task_name, progress, details=details)

    # The four reads below are what the engine's scheduler asks most (~190 times per 7-task
    # flow). Stock goes through a decorator, the lock's ``read_lock()`` and a generic lookup
    # that can clone; these take the same lock directly. An unknown name falls back to
    # stock, which raises TaskFlow's NotFound.

    def _source(self, atom_name):
        return self._flowdetail.find(self._atom_name_to_uuid[atom_name])

    def get_atom_state(self, atom_name):
        with self._rlock:
            try:
                return self._source(atom_name).state
            except KeyError:
                return super().get_atom_state(atom_name)

    def get_atom_intention(self, atom_name):
        with self._rlock:
            try:
                return self._source(atom_name).intention
            except KeyError:
                return super().get_atom_intention(atom_name)

    def get_atom_uuid(self, atom_name):
        with self._rlock:
            try:
                return self._source(atom_name).uuid
            except KeyError:
                return super().get_atom_uuid(atom_name)

    def get_atoms_states(self, atom_names):
        with self._rlock:
            try:
                return {name: (ad.state, ad.intention)
                        for name, ad in ((n, self._source(n)) for n in set(atom_names))}
            except KeyError:
                return super().get_atoms_states(atom_names)


def _retrying(save, detail):
    for attempt in range(1, tf_storage.RETRY_ATTEMPTS + 1):
        try:
            return save(detail)
        except tf_exc.StorageFailure:
            if attempt == tf_storage.RETRY_ATTEMPTS:
                raise
            time.sleep(tf_storage.RETRY_WAIT_TIMEOUT)
    raise AssertionError("unreachable")


#: Benchmark knob, read once at import: ``BLOCKMGR_STOCK_ENGINE`` lists the engine parts to
#: run as stock TaskFlow (``storage``: TaskFlow's ``Storage`` instead of
#: :class:`LeanStorage`; ``reuse``: compile and validate every flow instead of reusing a
#: pooled flow's; ``linear``: run every flow on the action engine, not
#: ``blockmgr.flows.linear``), or ``all``, to measure what each saves
#: (``docs/benchmarks.md``). Unset in production.
STOCK_ENGINE_PARTS = frozenset(
    part.strip() for part in os.environ.get("BLOCKMGR_STOCK_ENGINE", "").split(",")
    if part.strip())


def stock_engine(part: str) -> bool:
    """Whether ``part`` runs as stock TaskFlow (:data:`STOCK_ENGINE_PARTS`)."""
    return part in STOCK_ENGINE_PARTS or "all" in STOCK_ENGINE_PARTS


_stock = stock_engine


class SerialEngine(tf_engine.SerialActionEngine):
    """TaskFlow's serial engine on :class:`LeanStorage`, reusing a pooled flow's
    compilation and validation.

    ``pooled`` (optional) is any object with a ``compilation`` attribute (None until the
    first compile, then kept there) and a ``validated`` set of store-name sets. Validation
    (every atom's arguments can be found) depends only on the flow's structure and on which
    names the store holds (``store_names``), so once a pooled flow validated against a set
    of store names it is not walked again for that set.
    """

    def __init__(self, flow, flow_detail, backend, options, *, pooled=None,
                 store_names=None):
        super().__init__(flow, flow_detail, backend, options)
        self.pooled = pooled
        self._store_names = None if _stock("reuse") else store_names
        if pooled is not None and pooled.compilation is not None and not _stock("reuse"):
            self._compiler = _Compiled(pooled.compilation)

    @tf_misc.cachedproperty
    def storage(self):
        def _scope_fetcher(atom_name):
            if self._compiled:
                return self._runtime.fetch_scopes_for(atom_name)
            return None

        storage_class = tf_storage.Storage if _stock("storage") else LeanStorage
        return storage_class(self._flow_detail, backend=self._backend,
                             scope_fetcher=_scope_fetcher)

    def compile(self):
        super().compile()
        if self.pooled is not None and not _stock("reuse"):
            self.pooled.compilation = self._compilation

    def validate(self):
        pooled, names = self.pooled, self._store_names
        if pooled is not None and names is not None and names in pooled.validated:
            self._validated = True
            return
        super().validate()
        if pooled is not None and names is not None:
            pooled.validated.add(names)
