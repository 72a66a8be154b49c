"""What a volume backend tells the request ledger (:mod:`blockmgr.ledger`) about its work.

A backend's request runs one persisted flow whose flow id is the request id, so the flow's
logbook says how far a request taken over after a crash had come:

* no flow: it never started -- run it (in a cluster, once the jobboard holds no job for it:
  a job posted but never written is dropped by a member's conductor); unless a newer
  request on the same resource is open
  (the API accepts one only once the resource left this request's transitional status, so
  this request's flow finished and was pruned): then it is done;
* finished (``SUCCESS``/``REVERTED``): done; its last transaction settled the resource;
* interrupted (running or reverting when its process died): resumed or reverted as at a
  start (:func:`blockmgr.volume.recovery.recover_one`); in a cluster the jobboard gives the
  flow to a live member, so the request waits for it;
* ended ``FAILURE``/``REVERT_FAILURE`` (its revert itself failed, e.g. on a lost database
  connection): settled as failed -- the resource goes to its error status with the cause
  and every reservation the request held is released.
"""

from __future__ import annotations

import contextlib
import logging

from taskflow import exceptions as tf_exc

from blockmgr import exception
from blockmgr import ledger
from blockmgr import states
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import persistence
from blockmgr.volume import recovery

LOG = logging.getLogger(__name__)

_INTERRUPTED_BY_ERROR = frozenset({"FAILURE", "REVERT_FAILURE"})


class BackendRequestHooks(ledger.RequestHooks):
    """:class:`blockmgr.ledger.RequestHooks` of one backend's :class:`VolumeManager`."""

    def __init__(self, manager):
        self.manager = manager

    @property
    def _clustered(self) -> bool:
        return getattr(self.manager.runner, "board", None) is not None

    def _flow_state(self, flow_id: str) -> str | None:
        try:
            with contextlib.closing(self.manager.runner.backend.get_connection()) as conn:
                return conn.get_flow_details(flow_id, lazy=True).state
        except tf_exc.NotFound:
            return None

    def _on_board(self, flow_id: str) -> bool:
        board = getattr(self.manager.runner, "board", None)
        return board is not None and flow_id in board.flow_uuids()

    def precheck(self, row) -> str:
        state = self._flow_state(row.id)
        if state is None and self._on_board(row.id):
            return ledger.WAIT   # posted, not yet written: the member's conductor decides
        if state is None:
            with self.manager.db.reader() as session:
                if db_requests.newer_open_request(session, row.id, row.resource_id):
                    return ledger.DONE
            return ledger.RUN
        if state in persistence.PRUNABLE_FLOW_STATES:
            return ledger.DONE
        if state in _INTERRUPTED_BY_ERROR:
            return ledger.FAILED
        if self._clustered:
            return ledger.WAIT
        details = self.manager.runner.load_details([row.id])
        if details and recovery.recover_one(self.manager, details[0]) is None:
            raise exception.FlowInterrupted(flow_id=row.id, task="recovery")
        state = self._flow_state(row.id)
        if state is None or state in persistence.PRUNABLE_FLOW_STATES:
            return ledger.DONE
        return ledger.FAILED

    def unsettled(self, row, error: BaseException) -> bool:
        if isinstance(error, exception.FlowLogbookWriteFailed):
            return True
        if not isinstance(error, exception.BlockmgrError):
            return True   # raised outside the flow (a lost connection): nothing settled
        state = self._flow_state(row.id)
        if state is not None:
            return state not in persistence.PRUNABLE_FLOW_STATES
        # No flow ran: refused before it started. Settled only if the resource is no
        # longer in a transitional status (e.g. a create refused because the row moved on).
        return self._transitional(row)

    def _transitional(self, row) -> bool:
        model = recovery._MODELS.get(row.kind)
        if model is None:
            return False
        try:
            with self.manager.db.reader() as session:
                status = repository.get(session, model, row.resource_id).status
        except exception.NotFound:
            return False
        return status in states.TRANSITIONAL[row.kind]

    def settle_failed(self, row, reason: str) -> None:
        if row.action == "detach_volume" and row.arguments.get("attachment_id"):
            # ``detaching`` is also a client's own hold (os-begin_detaching), so it is not
            # a transitional status recovery settles: the detach's attachment is.
            from blockmgr.flows import attachments

            attachments.fail_detach(self.manager.db, row.resource_id,
                                    row.arguments["attachment_id"], reason)
        recovery.settle_failed(self.manager.db, self.manager.quota, row.kind,
                               row.resource_id, row.id, reason)
