"""The quota engine: per-project limits, usages and reservations, and their reconciliation.

Vocabulary (Cinder's: ``docs/cinder-compat.md``, ``docs/quota.md``):

* a **limit** is a project's override in ``quotas`` or else the ``[quota]`` default; -1 means
  unlimited. ``per_volume_gigabytes`` is *limit-only*: checked with :meth:`limit_check`,
  never counted.
* a **usage** row per (project, resource) holds ``in_use`` (committed) and ``reserved`` (the
  positive deltas of live reservations).
* a **reservation** is one resource's delta of a :meth:`reserve` call. It lives until it is
  committed (the delta moves into ``in_use``), rolled back, expired, or released as an orphan.
  It may name an ``owner`` (a flow id) so an orphan is recognised by its owner being gone,
  not by its age.

Concurrency. Every call that changes a usage first locks the usage rows it touches, in one
fixed order (project, then resource name): ``SELECT ... FOR UPDATE`` on MariaDB/PostgreSQL,
the database write lock that ``BEGIN IMMEDIATE`` takes on SQLite. Reservation rows are only
created, committed or rolled back while their usage row is locked ("usages before
reservations", always), so the limit check and the update it guards are one atomic step and a
limit can never be exceeded. Missing usage rows are created on first use; two processes doing
so at once is resolved by the unique (project_id, resource) key (the loser's
``DBDuplicateEntry`` is ignored). When the engine owns the transaction it retries it on
deadlock; when it joins the caller's (``session=``), the caller owns retries.

Idempotency. :meth:`commit` and :meth:`rollback` of a uuid that is unknown or already resolved
do nothing: a task that ran before a crash runs again on resume, and its second commit must
not count twice.

Per-volume-type resources. Every volume type adds ``volumes_<type>``, ``snapshots_<type>``
and ``gigabytes_<type>`` (Cinder's names), unlimited unless overridden. Callers never name
them: they pass the type of what they count (``reserve(..., volume_type_id=...)``, or
``by_type=`` built with :func:`add_for_type` for several types) and
:meth:`QuotaEngine.expand` adds the per-type deltas, using :mod:`~blockmgr.quota.per_type`,
the one place that maps a type name to its resources. A type's rename moves its per-type
limits, usages and reservations with :meth:`QuotaEngine.rename_volume_type`.

Usage never goes below zero (a negative delta that would push it there is clamped and
logged) and negative deltas are never refused: a project over its limit may always shrink.

Layout: :mod:`~blockmgr.quota.limits`, :mod:`~blockmgr.quota.reservations`,
:mod:`~blockmgr.quota.housekeeping` and :mod:`~blockmgr.quota.renames` are the parts of
:class:`QuotaEngine` (:mod:`~blockmgr.quota.engine`); :mod:`~blockmgr.quota.per_type` names
the per-type resources; :mod:`~blockmgr.quota.checks` validates arguments and does the limit
arithmetic; :mod:`~blockmgr.quota.owners` names reservation owners;
:mod:`~blockmgr.quota.reconciler` runs the periodic reconcile; the SQL is in
:mod:`blockmgr.db.quota_sql`; transactions are retried by :mod:`blockmgr.db.transaction`.
"""

from blockmgr.quota.checks import MAX_QUOTA_VALUE
from blockmgr.quota.engine import TRANSACTION_ATTEMPTS
from blockmgr.quota.engine import QuotaEngine
from blockmgr.quota.owners import REQUEST_OWNERS
from blockmgr.quota.owners import parse_request_owner
from blockmgr.quota.per_type import add_for_type
from blockmgr.quota.owners import request_owner
from blockmgr.quota.records import Drift
from blockmgr.quota.records import Orphan

__all__ = ["MAX_QUOTA_VALUE", "TRANSACTION_ATTEMPTS", "QuotaEngine", "REQUEST_OWNERS",
           "add_for_type", "parse_request_owner", "request_owner", "Drift", "Orphan"]
