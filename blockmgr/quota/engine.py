"""The quota engine: limits, reservations and housekeeping in one object (see
:mod:`blockmgr.quota`)."""

from __future__ import annotations

from typing import Callable, TypeVar

from oslo_config import cfg
from sqlalchemy.orm import Session

from blockmgr.db import transaction
from blockmgr.db.session import Database
from blockmgr.quota.housekeeping import HousekeepingMixin
from blockmgr.quota.limits import LimitsMixin
from blockmgr.quota.renames import RenamesMixin
from blockmgr.quota.reservations import ReservationsMixin

T = TypeVar("T")

#: How many times an engine-owned transaction is tried when the database reports a deadlock,
#: a lost connection or a lost race creating a row.
TRANSACTION_ATTEMPTS = 8


class QuotaEngine(LimitsMixin, ReservationsMixin, HousekeepingMixin, RenamesMixin):
    """Limits, usages and reservations of every project in one database.

    Thread-safe; one instance per process and database is enough. ``conf`` must have the
    ``[quota]`` group registered; options are read on every call, so overrides apply at once.
    """

    #: Project-wide resources that are counted and reserved. Each volume type adds its own
    #: (``volumes_<type>``, ...): :meth:`counted_resources` lists them all.
    RESOURCES = ("volumes", "snapshots", "gigabytes", "groups")
    #: Resources that only have a limit, checked by :meth:`limit_check`.
    LIMIT_ONLY = ("per_volume_gigabytes",)

    def __init__(self, db: Database, conf: cfg.ConfigOpts):
        self._db = db
        self._conf = conf
        self._sqlite = db.dialect == "sqlite"
        # (project_id, resource) pairs known to have a usage row. Usage rows are never
        # deleted, so this only saves the existence check before the locking read.
        self._known_usages: set[tuple[str, str]] = set()

    def run_in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a new writer transaction, retrying it as a whole on
        deadlock, a lost database connection or a lost row-creation race. ``work`` must be
        safe to run again."""
        return self._run(work)

    def _run(self, work: Callable[[Session], T]) -> T:
        """``work`` in the engine's own transaction, retried as a whole on deadlock, a lost
        connection, or a lost race creating a usage row (:mod:`blockmgr.db.transaction`)."""
        return transaction.run_in_transaction(self._db, work, duplicate=True,
                                              attempts=TRANSACTION_ATTEMPTS,
                                              what="Quota transaction")
