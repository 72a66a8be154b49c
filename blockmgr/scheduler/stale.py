"""Volumes left ``creating`` on a worker that never came back: the scheduler errors them.

A create is placed and handed off to the chosen backend in the request ledger
(:mod:`blockmgr.ledger`). When that worker restarts, or (in a cluster) a live member takes
over, the request runs. When a worker alone on its backend never comes back, nothing would:
Cinder leaves the volume ``creating`` for ever. Here the scheduler's periodic sweep moves it to ``error``
(``volume.create.error`` notification, the reason in ``status_reason``), and ends its open
request as ``failed`` in the same transaction, once **all** hold:

* the volume is ``creating`` on backend B and was placed (``scheduled_at``, else
  ``created_at``) at least ``[scheduler] stale_create_timeout`` seconds ago;
* B's volume service is down (``service_down_time``) and silent that long too (last
  heartbeat older than the timeout, or none, or no service row at all).

A flow B had started is not waited for: B is gone. If B comes back it resumes the flow,
whose last step (``creating`` -> ``available``) fails on the ``error`` status; the flow
reverts and the row stays ``error`` (deleting it removes whatever the flow had created).

**Error, not reschedule.** Rescheduling would place the volume on another backend while
its original request may still sit in B's queue (or its flow in B's logbook). A worker B
that came back in the same instant could take that request and create the volume too: two
backend objects for one row. An error is safe in every order: B's flow refuses a volume
that is not ``creating`` and, if it had already started, fails at its last step and
reverts. The user retries the create; quota is exact either way (the volume keeps its
usage until deleted, like any volume in ``error``).
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import rpc
from blockmgr import services
from blockmgr import states
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests

LOG = logging.getLogger(__name__)

V = states.VolumeStatus


def sweep_interval(timeout: float) -> float:
    """How often the sweep runs for a given timeout: 60 s, or a quarter of it if less."""
    return max(1.0, min(60.0, timeout / 4.0))


class StaleCreates:
    """One sweep per :meth:`sweep` call; see the module docstring.

    """

    def __init__(self, conf, *, db, notifier):
        self.conf = conf
        self.db = db
        self.notifier = notifier

    @property
    def timeout(self) -> int:
        return self.conf.scheduler.stale_create_timeout

    def sweep(self, now: dt.datetime | None = None) -> list[str]:
        """Error the stale creates; returns their volume ids."""
        if not self.timeout:
            return []
        now = now or models.utcnow()
        cutoff = now - dt.timedelta(seconds=self.timeout)
        vol = models.Volume
        with self.db.reader() as session:
            svcs = {s.host: s for s in services.list_services(
                session, self.conf.service_down_time, binary=services.VOLUME_BINARY)}
            rows = session.execute(sa.select(vol.id, vol.host).where(
                vol.deleted.is_(False), vol.status == V.CREATING.value, vol.host.is_not(None),
                sa.func.coalesce(vol.scheduled_at, vol.created_at) <= cutoff)).all()
        by_backend: dict[str, list[str]] = {}
        for volume_id, host in rows:
            backend = rpc.backend_of(host)
            svc = svcs.get(backend)
            if svc is None or (not svc.up and (svc.heartbeat_at is None
                                               or svc.heartbeat_at <= cutoff)):
                by_backend.setdefault(backend, []).append(volume_id)
        failed = []
        for backend, volume_ids in sorted(by_backend.items()):
            svc = svcs.get(backend)
            reason = ("its volume service %s has been down for over %d s (%s); the create "
                      "request was lost with the worker or waits in a queue nobody reads"
                      % (backend, self.timeout,
                         "no service row" if svc is None else
                         "last heartbeat %s" % (svc.heartbeat_at or "never")))
            for volume_id in volume_ids:
                if self._fail(volume_id, backend, reason):
                    failed.append(volume_id)
        return failed

    def _fail(self, volume_id: str, backend: str, reason: str) -> bool:
        try:
            with self.db.writer() as session:
                row = repository.get(session, models.Volume, volume_id)
                if row.status != V.CREATING or rpc.backend_of(row.host) != backend:
                    return False   # moved on since the read
                repository.transition(session, models.Volume, volume_id, V.ERROR,
                                      expected=(V.CREATING,), status_reason=reason[:255])
                # Its request waits for a backend that is gone: it ends with the volume.
                db_requests.fail_open(session, volume_id, reason)
        except (exception.NotFound, exception.InvalidStatusTransition):
            return False
        LOG.warning("Volume %s: %s", volume_id, reason)
        self.notifier.error(bm_context.get_admin_context(), "volume.create.error",
                            {"volume_id": volume_id, "state": V.ERROR.value,
                             "reason": reason, "method": "create_volume",
                             "request_spec": {}})
        return True
