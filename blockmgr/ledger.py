"""The request ledger: the database row is the request, the RPC message only a doorbell.

oslo.messaging acknowledges a message when a consumer receives it, before any code of ours
runs, so a process that stops between that acknowledgement and its first durable write
would lose the request. Every operation the API accepts is therefore written as a row of
``requests`` (:mod:`blockmgr.db.requests`) in the same transaction as the resource's status
change and its quota; the cast that follows carries the row's id and its arguments, and is
only a wake-up call. The rules:

* **One winner.** A process runs a request only after claiming it with one conditional
  UPDATE (pending, or its claim expired). A duplicate message, a redelivery, a second sweep
  or a second cluster member finds nothing to claim and does nothing. The request's flow is
  keyed by the request id (its flow detail uuid and the owner of its reservations), so a
  request taken over after a crash continues its own flow instead of starting another.
* **Sweeps instead of hope.** Each process sweeps the requests of the targets it serves
  (the scheduler: ``scheduler``; a volume backend: its ``host@backend`` or cluster name)
  when it starts, before consuming, and every ``[requests] sweep_interval``: what is
  pending with no message coming (lost, never sent) or whose claim expired (its process
  died) is rung again through the target's queue. A periodic sweep leaves a request never
  claimed alone until it has not changed for a whole interval: its message is most likely
  still queued, and a second one would only be a duplicate to discard.
* **A first claim may ride on the first write.** A backend that runs its flows itself,
  with their logbook in the service database, defers the first claim of a create to the
  transaction of its flow's first write (:func:`claim_in`), which then records the claim,
  the flow and its first step at once: one commit fewer per request. Until then the run
  writes nothing -- the tasks before that write only read -- and anything else that would
  write first claims the request on its own (:func:`ensure_claimed`). A run that finds the
  request no longer pending for a first claim stops with
  :class:`~blockmgr.exception.RequestNotClaimed` before anything is written, and the
  request is claimed the usual way (a retry) or left to its holder.
* **Claims expire unless renewed.** While a request runs its claim is renewed every third
  of ``claim_ttl``; a process that dies leaves claims that expire, and a process that
  restarts under the same name gives back its predecessor's claims at once.
* **Nothing stays unsettled.** A run that ends without settling its resource (a lost
  database connection, an interrupted revert) gives the request back for another try after
  ``retry_delay`` (doubling); after ``max_attempts`` the resource goes to its error status
  with the cause and every reservation the request held is released
  (:class:`RequestHooks.settle_failed`).

A request that the scheduler places is *handed off* to its backend (:func:`hand_off`) in the
transaction that records the placement.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import logging
import threading
import uuid
from typing import Callable

from oslo_db import exception as db_exc

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import periodic
from blockmgr.db import models
from blockmgr.db import requests as db_requests
from blockmgr.flows import faults

LOG = logging.getLogger(__name__)

#: :meth:`RequestHooks.precheck` verdicts.
RUN, DONE, WAIT, FAILED = "run", "done", "wait", "failed"

_NAMESPACE = uuid.UUID("0b7d8a36-3c52-4c1e-9a55-6f1f2a3e8d10")


@dataclasses.dataclass
class Served:
    """The request the current thread runs."""

    row: db_requests.RequestRow
    ledger: "Ledger"
    handed_off: bool = False
    #: Finished in the transaction of its flow's last write (:func:`finish_in`).
    finished: bool = False
    #: Not claimed yet: the flow's first write claims it (:func:`claim_in`), or
    #: :func:`ensure_claimed` before anything else is written.
    claim_deferred: bool = False
    #: A deferred claim was sent at least once (its commit may have happened unseen).
    claim_sent: bool = False


_current: contextvars.ContextVar[Served | None] = contextvars.ContextVar(
    "blockmgr_request", default=None)


def current() -> Served | None:
    return _current.get()


def current_id() -> str | None:
    """The id of the request this thread runs (the flow id its flow must use), or None."""
    served = _current.get()
    return served.row.id if served is not None else None


class RequestHooks:
    """What a runner of requests knows about its work (a volume backend, a scheduler)."""

    def precheck(self, row: db_requests.RequestRow) -> str:
        """Before a request claimed a second time runs: ``RUN`` it, it is ``DONE`` already
        (its flow finished before the crash), ``WAIT`` (someone else still works on it), or
        ``FAILED`` (its flow ended without settling: settle it as failed). Called only when
        ``row.attempts > 1``; raising counts as an unsettled attempt."""
        return RUN

    def unsettled(self, row: db_requests.RequestRow, error: BaseException) -> bool:
        """True if ``error`` ended the run without settling the resource, so the request
        must be tried again; False when the operation failed cleanly (the resource has its
        error status)."""
        return True

    def settle_failed(self, row: db_requests.RequestRow, reason: str) -> None:
        """Out of attempts: put the resource in its error status and release every
        reservation the request holds."""


def _transient(func):
    """Run a short ledger write again on a deadlock or a lost connection."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for attempt in range(1, 4):
            try:
                return func(*args, **kwargs)
            except (db_exc.DBDeadlock, db_exc.DBConnectionError):
                if attempt == 3:
                    raise
    return wrapper


class Ledger:
    """Claims, runs and settles the requests of ``targets`` for one process.

    :param owner_prefix: the stable name of this process's role (``host@backend`` of a
        volume worker or cluster member, ``scheduler:<host>``); the owner id is it plus a
        token of this start, so a restart recognises its predecessor's claims.
    """

    def __init__(self, db, conf, *, owner_prefix: str, targets, hooks: RequestHooks | None
                 = None):
        self.db = db
        self.conf = conf
        self.owner_prefix = owner_prefix + "/"
        self.owner = self.owner_prefix + uuid.uuid4().hex[:12]
        self.targets = tuple(targets)
        self.hooks = hooks or RequestHooks()
        self._running: set[str] = set()
        self._guard = threading.Lock()
        self._timers: list[periodic.PeriodicTimer] = []
        self._stopping = threading.Event()

    @property
    def ttl(self) -> float:
        return self.conf.requests.claim_ttl

    @property
    def running(self) -> set[str]:
        with self._guard:
            return set(self._running)

    # --- running one request ------------------------------------------------------------

    #: Whether :meth:`run` may defer a request's first claim to its flow's first write
    #: (module docstring): set by a backend that runs its flows itself with their logbook
    #: in the service database.
    defer_first_claims = False

    def run(self, request_id: str, call: Callable[[], object], *, defer_claim: bool = False):
        """Claim ``request_id`` and run ``call()`` as it, then settle the request. Returns
        what ``call`` returned, or None when the request was not ours to run.

        ``defer_claim``: the operation's first durable write is its flow's (it reads
        before that), so its first claim may be written with it when
        :attr:`defer_first_claims` allows."""
        if self._stopping.is_set():
            LOG.debug("Stopping: leaving request %s for a peer or the next start",
                      request_id)
            return None
        with self._guard:
            # Taken before anything is claimed: a deferred claim is written only with the
            # flow, so two threads of this process must never both start one.
            if request_id in self._running:
                LOG.debug("Request %s is running in this process already", request_id)
                return None
            self._running.add(request_id)
        try:
            if defer_claim and self.defer_first_claims:
                try:
                    return self._serve(Served(db_requests.RequestRow.first_claim(
                        request_id), self, claim_deferred=True), call)
                except exception.RequestNotClaimed:
                    LOG.debug("Request %s was not pending for a first claim; claiming it "
                              "as a request run before", request_id)
            row = self._claim(request_id)
            if row is None:
                LOG.debug("Request %s is finished or run elsewhere; skipping it",
                          request_id)
                return None
            faults.crash_point("ledger.claimed")
            return self._serve(Served(row, self), call)
        finally:
            with self._guard:
                self._running.discard(request_id)

    def _serve(self, served: Served, call: Callable[[], object]):
        row = served.row
        token = _current.set(served)
        try:
            try:
                verdict = self.hooks.precheck(row) if row.attempts > 1 else RUN
                if verdict == DONE:
                    if not served.finished:   # else its recovery just finished it
                        self._finish(row, db_requests.DONE,
                                     "finished before it was taken over")
                    return None
                if verdict == WAIT:
                    self._release(row, self.ttl, None)
                    return None
                if verdict == FAILED:
                    reason = "its flow ended without settling its resource"
                    self.hooks.settle_failed(row, reason)
                    self._finish(row, db_requests.FAILED, reason)
                    return None
                result = call()
            except exception.RequestNotClaimed:
                raise   # nothing of this run was written
            except BaseException as exc:
                if served.finished:
                    LOG.warning("Request %s finished, then its run raised %s: %s", row.id,
                                type(exc).__name__, exc)
                elif _claimed_now(served):
                    self._after_failure(row, exc)
                raise
            if not (served.handed_off or served.finished) and _claimed_now(served):
                self._finish(row, db_requests.DONE, None)
            return result
        finally:
            _current.reset(token)

    def _after_failure(self, row, exc: BaseException) -> None:
        reason = ("%s: %s" % (type(exc).__name__, getattr(exc, "msg", None) or exc))[:255]
        try:
            row = self._full(row)
        except Exception:
            LOG.exception("Could not read request %s after its failure", row.id)
        try:
            unsettled = self.hooks.unsettled(row, exc)
        except Exception:
            LOG.exception("Could not tell whether request %s settled; trying it again",
                          row.id)
            unsettled = True
        try:
            if not unsettled:
                self._finish(row, db_requests.DONE, reason)
            elif row.attempts >= self.conf.requests.max_attempts:
                LOG.error("Request %s (%s of %s %s) did not settle after %d attempt(s): "
                          "%s; settling it as failed", row.id, row.action, row.kind,
                          row.resource_id, row.attempts, reason)
                self.hooks.settle_failed(row, reason)
                self._finish(row, db_requests.FAILED, reason)
            else:
                delay = self.conf.requests.retry_delay * 2 ** (row.attempts - 1)
                LOG.warning("Request %s (%s of %s %s) did not settle (%s); trying it again "
                            "in %.1f s", row.id, row.action, row.kind, row.resource_id,
                            reason, delay)
                self._release(row, delay, reason)
        except Exception:
            LOG.exception("Could not record the outcome of request %s; its claim expires "
                          "and it is taken again", row.id)

    # The ledger's own writes are single statements on a Core connection: no ORM session
    # is built for them (a session costs about as much again as the statement).

    @_transient
    def _claim_deferred(self, served_now: Served) -> bool:
        with self.db.engine.begin() as conn:
            return _claim_first_in(conn, served_now)

    @_transient
    def _claim(self, request_id: str):
        with self.db.engine.begin() as conn:
            if db_requests.claim_first(conn, request_id, self.owner, self.ttl, self.targets):
                return db_requests.RequestRow.first_claim(request_id)
            return db_requests.claim(conn, request_id, self.owner, self.ttl, self.targets)

    @_transient
    def _full(self, row):
        if not row.partial:
            return row
        with self.db.engine.connect() as conn:
            return db_requests.get_row(conn, row.id) or row

    @_transient
    def _finish(self, row, state: str, result: str | None) -> None:
        with self.db.engine.begin() as conn:
            if not db_requests.finish(conn, row.id, self.owner, state, result):
                LOG.warning("Request %s was no longer claimed by %s when it finished",
                            row.id, self.owner)

    @_transient
    def _release(self, row, delay: float, result: str | None) -> None:
        with self.db.engine.begin() as conn:
            db_requests.release(conn, row.id, self.owner,
                                models.utcnow() + dt.timedelta(seconds=delay), result)

    # --- sweeps, renewals, start and stop ---------------------------------------------

    def start(self, ring: Callable[[db_requests.RequestRow], None],
              idle: Callable[[], bool] | None = None) -> int:
        """Give back the claims of this member's earlier processes, ring every request
        that may be claimed now (before the caller consumes messages), then sweep and renew
        periodically. ``idle()``: whether the process could take more work now; periodic
        sweeps ring only then (requests waiting in a busy process's queue are not lost).
        Returns how many requests were rung at start."""
        with self.db.writer() as session:
            given_back = db_requests.release_previous_claims(session, self.targets,
                                                             self.owner_prefix, self.owner)
        if given_back:
            LOG.info("%s: %d request(s) claimed by an earlier process of %s are pending "
                     "again", ", ".join(self.targets), given_back, self.owner_prefix[:-1])
        rung = self.sweep(ring)
        interval = self.conf.requests.sweep_interval
        self._timers = [
            periodic.PeriodicTimer("sweep-%s" % self.owner, interval,
                                   lambda: self.sweep(ring, idle, quiet_for=interval),
                                   initial_delay=interval).start(),
            periodic.PeriodicTimer("claims-%s" % self.owner, self.ttl / 3, self.renew,
                                   initial_delay=self.ttl / 3).start(),
        ]
        return rung

    def sweep(self, ring, idle: Callable[[], bool] | None = None,
              quiet_for: float = 0.0) -> int:
        """Ring the requests of this process's targets that may be claimed now; prune
        finished ones past their retention. Returns how many were rung.

        ``quiet_for`` (periodic sweeps: the sweep interval): a request never claimed is
        rung only once it has not changed for that long -- a younger one's message is
        still on its way, and ringing it again would only make a duplicate to discard."""
        if self._stopping.is_set() or (idle is not None and not idle()):
            return 0
        with self.db.reader() as session:
            rows = db_requests.claimable(session, self.targets,
                                         self.conf.requests.sweep_batch, quiet_for)
        rung = 0
        for row in rows:
            if row.id in self.running:
                continue
            try:
                ring(row)
                rung += 1
            except Exception as exc:
                LOG.warning("Could not ring request %s (%s); the next sweep tries again",
                            row.id, exc)
                break
        if rung:
            LOG.info("%s: rang %d request(s) found pending or with an expired claim",
                     ", ".join(self.targets), rung)
        retention = self.conf.requests.finished_retention
        if retention >= 0:
            with self.db.writer() as session:
                db_requests.prune(session, models.utcnow() - dt.timedelta(seconds=retention))
        return rung

    def renew(self) -> int:
        """Extend the claims of the requests running in this process."""
        if not self.running:
            return 0
        with self.db.writer() as session:
            return db_requests.renew(session, self.owner, self.ttl)

    def stop(self) -> None:
        """No new claims; stop sweeping. Claims of running requests stay (their flows
        persist); :meth:`release` gives back the rest when the process exits."""
        self._stopping.set()
        for timer in self._timers:
            timer.stop(timeout=1)

    def release(self) -> int:
        """Give back every claim of this process whose request is not running now, so a
        peer or the next start takes it at once instead of after the claim expired."""
        try:
            with self.db.writer() as session:
                return db_requests.release_all(session, self.owner, keep=self.running)
        except Exception:
            LOG.warning("Could not give back the claims of %s; they expire after %.0f s",
                        self.owner, self.ttl, exc_info=True)
            return 0


def served(func=None, *, defer_claim: bool = False):
    """Decorates an RPC endpoint method that runs requests: a message carrying
    ``request_id`` runs only if the endpoint's ``ledger`` claims that request; one without
    it (an older client, a test) runs as it comes. ``defer_claim``: the method writes
    nothing before its flow's first write (:meth:`Ledger.run`)."""
    if func is None:
        return functools.partial(served, defer_claim=defer_claim)

    @functools.wraps(func)
    def wrapper(self, context, *args, request_id=None, **kwargs):
        ledger = getattr(self, "ledger", None)
        if request_id is None or ledger is None:
            return func(self, context, *args, **kwargs)
        return ledger.run(request_id, lambda: func(self, context, *args, **kwargs),
                          defer_claim=defer_claim)
    return wrapper


def hand_off(session, target: str, action: str, arguments: dict) -> str | None:
    """Pass the request this thread runs on to ``target`` (as ``action(**arguments)``),
    in the caller's transaction. Returns its id (to ring ``target`` with, after the
    commit), or None when this thread runs no request (nothing recorded)."""
    served_now = _current.get()
    if served_now is None:
        return None
    if not db_requests.hand_off(session, served_now.row.id, served_now.ledger.owner, target,
                                action, arguments):
        raise db_exc.DBError("request %s is no longer claimed by %s"
                             % (served_now.row.id, served_now.ledger.owner))
    served_now.handed_off = True
    return served_now.row.id


def _claim_first_in(conn, served_now: Served) -> bool:
    """Claim ``served_now``'s request on ``conn`` as a first claim. True also when this
    run sent the claim before and its ledger holds the request now: that commit happened,
    then the connection was lost before it was confirmed."""
    ledger, request_id = served_now.ledger, served_now.row.id
    sent_before, served_now.claim_sent = served_now.claim_sent, True
    if db_requests.claim_first(conn, request_id, ledger.owner, ledger.ttl, ledger.targets):
        return True
    if not sent_before:
        return False
    row = db_requests.get(conn, request_id)
    return (row is not None and row.state == db_requests.CLAIMED
            and row.claimed_by == ledger.owner)


def _claimed(served_now: Served) -> None:
    served_now.claim_deferred = False
    faults.crash_point("ledger.claimed")


def _claimed_now(served_now: Served) -> bool:
    """True if ``served_now`` is claimed, claiming it on its own now if its claim was
    deferred; False when another process holds it (this run wrote nothing)."""
    if not served_now.claim_deferred:
        return True
    try:
        ensure_claimed()
    except exception.RequestNotClaimed:
        LOG.debug("Request %s is held elsewhere; this run wrote nothing",
                  served_now.row.id)
        return False
    return True


def claim_in(conn, flow_id: str) -> Callable[[], None] | None:
    """Claim the request this thread runs in the caller's transaction on ``conn`` (the
    first write of its flow ``flow_id``) when its claim was deferred (module docstring).
    Returns what to call once that transaction committed, or None when there is nothing
    to claim here.

    :raises RequestNotClaimed: the request is not pending for a first claim; the
        caller's transaction must roll back.
    """
    served_now = _current.get()
    if served_now is None or not served_now.claim_deferred or served_now.row.id != flow_id:
        return None
    if not _claim_first_in(conn, served_now):
        raise exception.RequestNotClaimed(request_id=flow_id)
    return lambda: _claimed(served_now)


def ensure_claimed() -> None:
    """Claim the request this thread runs on its own if its claim was deferred: before
    anything but its flow's first write is written (a revert, a write by a task).

    :raises RequestNotClaimed: it is not pending for a first claim (nothing was written).
    """
    served_now = _current.get()
    if served_now is None or not served_now.claim_deferred:
        return
    if not served_now.ledger._claim_deferred(served_now):
        raise exception.RequestNotClaimed(request_id=served_now.row.id)
    _claimed(served_now)


def finish_in(conn) -> Callable[[], None]:
    """Finish the request this thread runs in the caller's transaction on ``conn`` (its
    flow's last write: ``engine.FlowRunner.close_in``), so the resource's final status
    and the request's end commit together. Returns what to call once that transaction
    committed; the request is then not finished again when its run returns. Nothing is
    written when this thread runs no request or has handed it off, or when the claim is
    no longer this process's (its run ends as any run whose claim was lost)."""
    served_now = _current.get()
    if served_now is None or served_now.handed_off:
        return lambda: None
    claimed = claim_in(conn, served_now.row.id)
    if not db_requests.finish(conn, served_now.row.id, served_now.ledger.owner,
                              db_requests.DONE, None):
        return lambda: None

    def committed():
        if claimed is not None:
            claimed()
        served_now.finished = True
    return committed


def follow_up(db, context, *, target: str, action: str, arguments: dict) -> str | None:
    """Record the request that continues the one this thread runs (a failed create sent
    back to the scheduler), with an id derived from it so that recording it again after a
    crash adds nothing. Returns its id, or None when this thread runs no request."""
    served_now = _current.get()
    if served_now is None:
        return None
    ensure_claimed()
    row = served_now.row
    request_id = str(uuid.uuid5(_NAMESPACE, "%s/%s" % (row.id, action)))
    ctx = context.to_dict() if isinstance(context, bm_context.RequestContext) else context
    try:
        with db.writer() as session:
            db_requests.add(session, kind=row.kind, resource_id=row.resource_id,
                            action=action, arguments=arguments, context=dict(ctx or {}),
                            target=target, request_id=request_id)
    except db_exc.DBDuplicateEntry:
        pass
    return request_id
