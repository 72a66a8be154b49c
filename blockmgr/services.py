"""Service rows (``services``): who runs where, and whether it is alive.

A daemon registers one row per RPC server it runs (a volume worker: one per backend, host
``host@backend``) and heartbeats it every ``report_interval`` seconds. A service is **up**
while its last heartbeat is at most ``service_down_time`` seconds old; a row that never
heartbeat (the driver of a backend failed to set up) is down, and ``disabled_reason`` says why.

Times are naive UTC from the database host's point of view of each writer
(:func:`blockmgr.db.models.utcnow`); nodes must keep their clocks in sync (NTP), as in
Cinder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from blockmgr import exception
from blockmgr.db import models

VOLUME_BINARY = "blockmgr-volume"
SCHEDULER_BINARY = "blockmgr-scheduler"


def is_up(service: models.Service, down_time_s: int, now: dt.datetime | None = None) -> bool:
    """True while ``service`` heartbeat within the last ``down_time_s`` seconds."""
    if service.heartbeat_at is None or service.deleted:
        return False
    now = now or models.utcnow()
    return (now - service.heartbeat_at).total_seconds() <= down_time_s


def register(session, host: str, binary: str, topic: str, *, version: str | None = None,
             reason: str | None = None, availability_zone: str | None = None) -> int:
    """Find or create the live row for (``host``, ``binary``); returns its id.

    The row is (re)marked as not heartbeating: ``heartbeat_at`` stays as it was, so a
    restarting service keeps looking up only until ``service_down_time`` passes, and
    ``disabled_reason`` is set to ``reason`` (why it is not serving yet).
    """
    row = session.scalars(sa.select(models.Service).where(
        models.Service.host == host, models.Service.binary == binary,
        models.Service.deleted.is_(False)).order_by(models.Service.id)).first()
    if row is None:
        row = models.Service(host=host, binary=binary, topic=topic)
        session.add(row)
    row.topic = topic
    if availability_zone:
        row.availability_zone = availability_zone
    row.rpc_current_version = version
    row.disabled_reason = reason
    session.flush()
    return row.id


def set_reason(session, service_id: int, reason: str | None) -> None:
    """Record why the service is not serving (None: it is)."""
    session.execute(sa.update(models.Service).where(models.Service.id == service_id)
                    .values(disabled_reason=reason[:255] if reason else None))


def heartbeat(session, service_id: int) -> None:
    """One heartbeat: ``report_count += 1``, ``heartbeat_at = now``.

    :raises ServiceNotFound: the row was deleted (e.g. by an operator) meanwhile.
    """
    result = session.execute(
        sa.update(models.Service)
        .where(models.Service.id == service_id, models.Service.deleted.is_(False))
        .values(report_count=models.Service.report_count + 1, heartbeat_at=models.utcnow()))
    if result.rowcount != 1:
        raise exception.ServiceNotFound(service=service_id)


@dataclasses.dataclass(frozen=True)
class ServiceState:
    """A row with its computed liveness, for listings and the scheduler."""

    id: int
    host: str
    binary: str
    topic: str
    up: bool
    disabled: bool
    disabled_reason: str | None
    heartbeat_at: dt.datetime | None
    report_count: int
    version: str | None
    availability_zone: str = "nova"


def list_services(session, down_time_s: int, *, binary: str | None = None,
                  host: str | None = None, now: dt.datetime | None = None
                  ) -> list[ServiceState]:
    """Live (not deleted) services, optionally of one binary / one host (``host`` or
    ``host@backend``), ordered by binary then host."""
    stmt = sa.select(models.Service).where(models.Service.deleted.is_(False))
    if binary:
        stmt = stmt.where(models.Service.binary == binary)
    if host:
        stmt = stmt.where(sa.or_(models.Service.host == host,
                                 models.Service.host.like(host + "@%")))
    now = now or models.utcnow()
    return [ServiceState(id=row.id, host=row.host, binary=row.binary, topic=row.topic,
                         up=is_up(row, down_time_s, now), disabled=row.disabled,
                         disabled_reason=row.disabled_reason, heartbeat_at=row.heartbeat_at,
                         report_count=row.report_count, version=row.rpc_current_version,
                         availability_zone=row.availability_zone)
            for row in session.scalars(stmt.order_by(models.Service.binary,
                                                     models.Service.host))]


def is_backend_up(session, backend_host: str, down_time_s: int) -> bool:
    """True if the volume service serving ``backend_host`` (``host@backend``, any
    ``#pool`` ignored) is up and not disabled."""
    backend_host = backend_host.partition("#")[0]
    return any(s.up and not s.disabled
               for s in list_services(session, down_time_s, binary=VOLUME_BINARY)
               if s.host == backend_host)
