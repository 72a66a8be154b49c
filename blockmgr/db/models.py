"""SQLAlchemy 2.0 typed models.

The columns follow Cinder's where they matter (names, statuses, soft deletion, quota
tables; ``docs/cinder-compat.md``) so a Cinder operator recognises them. Rules kept here,
and nowhere else:

* Resources (volumes, snapshots, groups, group snapshots, services) are soft deleted:
  ``deleted``/``deleted_at`` are set and the status becomes ``deleted``.
* A status assignment is validated against :mod:`blockmgr.states` (illegal -> raises and
  nothing is written). Bulk updates go through the repository, which checks the same table.
* Indexes on ``(host, status)`` / ``(status)`` let recovery and periodic tasks touch only the
  in-flight rows of one host instead of scanning every volume.
* Reservations carry ``owner``: the id of the flow that must commit or roll them back, so an
  orphan is recognised by its owner being finished or gone, not by age.

Changing a model requires an alembic revision in ``migrations/versions``; a test compares them.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, MetaData,
                        String, Text, UniqueConstraint, func)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from blockmgr import states

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _uuid() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    """Naive UTC, the form every supported database stores without surprises."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class SoftDeleteMixin(TimestampMixin):
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)


class StatusMixin:
    """Validates every status assignment against the resource's transition table."""

    __status_kind__: str

    @validates("status")
    def _validate_status(self, key, value):
        value = str(value)
        if "status" in self.__dict__:
            current = self.__dict__["status"]
        elif sa_inspect(self).transient:
            current = None
        else:  # persistent but expired: load the stored status before judging the change
            current = getattr(self, "status")
        states.check_transition(self.__status_kind__, current, value,
                                resource_id=self.__dict__.get("id"))
        return value


class Service(SoftDeleteMixin, Base):
    __tablename__ = "services"
    __table_args__ = (
        Index(None, "host", "binary"),
        Index(None, "topic", "deleted"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), default=_uuid, unique=True, nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    binary: Mapped[str] = mapped_column(String(255), nullable=False)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    cluster_name: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova", nullable=False)
    report_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    rpc_current_version: Mapped[str | None] = mapped_column(String(36))
    #: Last heartbeat; ``updated_at`` alone also moves on unrelated edits.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Group(StatusMixin, SoftDeleteMixin, Base):
    """A consistency group (Cinder's generic group with a consistent-snapshot type)."""

    __tablename__ = "groups"
    __status_kind__ = "group"
    __table_args__ = (
        Index(None, "host", "status"),
        Index(None, "deleted", "project_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    cluster_name: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(255), nullable=False)
    group_type_id: Mapped[str | None] = mapped_column(String(36))
    volume_type_ids: Mapped[str | None] = mapped_column(Text)
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_group_id: Mapped[str | None] = mapped_column(String(36))


class Volume(StatusMixin, SoftDeleteMixin, Base):
    __tablename__ = "volumes"
    __status_kind__ = "volume"
    __table_args__ = (
        Index(None, "host", "status"),
        Index(None, "deleted", "project_id"),
        Index(None, "group_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    use_quota: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    cluster_name: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(255), nullable=False)
    attach_status: Mapped[str] = mapped_column(String(255), default="detached", nullable=False)
    previous_status: Mapped[str | None] = mapped_column(String(255))
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    launched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    terminated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    provider_location: Mapped[str | None] = mapped_column(String(256))
    provider_auth: Mapped[str | None] = mapped_column(String(256))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    volume_type_id: Mapped[str | None] = mapped_column(String(36))
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_volid: Mapped[str | None] = mapped_column(String(36))
    group_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("groups.id"))
    bootable: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    #: Why the volume is in an error status, for operators (Cinder only logs it).
    status_reason: Mapped[str | None] = mapped_column(String(255))

    @validates("attach_status")
    def _validate_attach_status(self, key, value):
        return states.check_volume_attach_status(value)

    @property
    def name(self) -> str:
        return "volume-%s" % self.id


class Attachment(SoftDeleteMixin, Base):
    """One consumer's hold on a volume (Cinder's ``volume_attachment``): reserved, then
    connected (``connector`` in, ``connection_info`` out), then attached; deleted with
    ``attach_status`` ``detached`` once detached. ``attach_status`` changes are checked
    against :data:`blockmgr.states.ATTACHMENT_TRANSITIONS`."""

    __tablename__ = "volume_attachment"
    __table_args__ = (
        Index(None, "volume_id", "deleted"),
        Index(None, "instance_uuid"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    volume_id: Mapped[str] = mapped_column(String(36), ForeignKey("volumes.id"),
                                           nullable=False)
    project_id: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    instance_uuid: Mapped[str | None] = mapped_column(String(36))
    attached_host: Mapped[str | None] = mapped_column(String(255))
    mountpoint: Mapped[str | None] = mapped_column(String(255))
    attach_mode: Mapped[str] = mapped_column(String(36), default="rw", nullable=False)
    #: os-brick connector properties (JSON), as the consumer sent them.
    connector: Mapped[str | None] = mapped_column(Text)
    #: What the driver's initialize_connection returned (JSON).
    connection_info: Mapped[str | None] = mapped_column(Text)
    attach_status: Mapped[str] = mapped_column(String(255), nullable=False)
    attach_time: Mapped[dt.datetime | None] = mapped_column(DateTime)
    detach_time: Mapped[dt.datetime | None] = mapped_column(DateTime)

    @validates("attach_status")
    def _validate_attach_status(self, key, value):
        current = self.__dict__.get("attach_status")
        if current is None and not sa_inspect(self).transient:
            current = getattr(self, "attach_status")
        states.check_attach_transition(current, str(value), self.__dict__.get("id"))
        return str(value)


class GroupSnapshot(StatusMixin, SoftDeleteMixin, Base):
    __tablename__ = "group_snapshots"
    __status_kind__ = "group_snapshot"
    __table_args__ = (Index(None, "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    group_id: Mapped[str] = mapped_column(String(36), ForeignKey("groups.id"), nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(255), nullable=False)
    group_type_id: Mapped[str | None] = mapped_column(String(36))


class Snapshot(StatusMixin, SoftDeleteMixin, Base):
    __tablename__ = "snapshots"
    __status_kind__ = "snapshot"
    __table_args__ = (
        Index(None, "volume_id"),
        Index(None, "status"),
        Index(None, "deleted", "project_id"),
        Index(None, "group_snapshot_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    use_quota: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    volume_id: Mapped[str] = mapped_column(String(36), ForeignKey("volumes.id"), nullable=False)
    group_snapshot_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("group_snapshots.id"))
    status: Mapped[str] = mapped_column(String(255), nullable=False)
    progress: Mapped[str | None] = mapped_column(String(255))
    volume_size: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    volume_type_id: Mapped[str | None] = mapped_column(String(36))
    provider_location: Mapped[str | None] = mapped_column(String(255))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    provider_auth: Mapped[str | None] = mapped_column(String(255))
    status_reason: Mapped[str | None] = mapped_column(String(255))

    @property
    def name(self) -> str:
        return "snapshot-%s" % self.id


class Quota(TimestampMixin, Base):
    """A per-project limit that overrides the ``[quota]`` default. Deleting the row resets it."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("project_id", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
    resource: Mapped[str] = mapped_column(String(255), nullable=False)
    hard_limit: Mapped[int] = mapped_column(Integer, nullable=False)


class QuotaUsage(TimestampMixin, Base):
    """What a project uses (``in_use``) and has reserved but not committed (``reserved``)."""

    __tablename__ = "quota_usages"
    __table_args__ = (UniqueConstraint("project_id", "resource"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
    resource: Mapped[str] = mapped_column(String(255), nullable=False)
    in_use: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    until_refresh: Mapped[int | None] = mapped_column(Integer)


class Reservation(SoftDeleteMixin, Base):
    """One resource's delta of a reserve call, alive until committed, rolled back or expired."""

    __tablename__ = "reservations"
    __table_args__ = (
        Index(None, "deleted", "expire"),
        Index(None, "owner", "deleted"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    usage_id: Mapped[int] = mapped_column(Integer, ForeignKey("quota_usages.id"), nullable=False)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
    resource: Mapped[str] = mapped_column(String(255), nullable=False)
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expire: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    #: Id of the flow (TaskFlow flow detail uuid) that owns this reservation, if any.
    owner: Mapped[str | None] = mapped_column(String(36))


class Request(Base):
    """One accepted operation: the durable record of what a worker (or scheduler) must do.

    Written in the transaction that accepts the operation (the resource's status change and
    its quota), so it exists exactly when the operation was accepted. The RPC message that
    follows only says "look at request X"; a lost message is found again by a sweep
    (:mod:`blockmgr.ledger`, ``docs/operators-daemons.md``).

    ``target`` is who may run it: ``scheduler`` until placed, then the backend served
    (``host@backend`` or ``cluster@backend``). ``action`` and ``arguments`` are the RPC
    method and its keyword arguments on that target. ``state``: ``pending`` (anyone of the
    target may claim it once ``claim_expires_at`` is past or empty), ``claimed`` (by
    ``claimed_by`` until ``claim_expires_at``), ``done`` or ``failed`` (final).
    """

    __tablename__ = "requests"
    __table_args__ = (
        Index(None, "state", "target", "claim_expires_at"),
        Index(None, "resource_id", "state"),
        Index(None, "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(36), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    arguments: Mapped[str] = mapped_column(Text, nullable=False)
    context: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str] = mapped_column(String(255), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    claim_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    result: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class VolumeType(SoftDeleteMixin, Base):
    """A named class of volumes (Cinder's volume type): its extra specs steer the scheduler
    (``volume_backend_name``, capabilities) and the driver. A private type (``is_public``
    false) is visible only to the projects in :class:`VolumeTypeProject`. The type named
    ``__DEFAULT__`` is given to volumes created without a type."""

    __tablename__ = "volume_types"
    __table_args__ = (Index(None, "name", "deleted"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class VolumeTypeExtraSpec(TimestampMixin, Base):
    """One ``key = value`` extra spec of a volume type (removed with the key)."""

    __tablename__ = "volume_type_extra_specs"
    __table_args__ = (UniqueConstraint("volume_type_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_type_id: Mapped[str] = mapped_column(String(36), ForeignKey("volume_types.id"),
                                                nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    value: Mapped[str] = mapped_column(String(255), nullable=False)


class VolumeTypeProject(TimestampMixin, Base):
    """A project's access to a private volume type."""

    __tablename__ = "volume_type_projects"
    __table_args__ = (UniqueConstraint("volume_type_id", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_type_id: Mapped[str] = mapped_column(String(36), ForeignKey("volume_types.id"),
                                                nullable=False)
    project_id: Mapped[str] = mapped_column(String(255), nullable=False)
