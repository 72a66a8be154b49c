"""Initial schema: resources, quotas and services.

Why: the first schema of blockmgr; every later revision starts from here.
What: creates ``groups``, ``group_snapshots``, ``volumes``, ``snapshots`` (soft deleted, with a
status checked against blockmgr.states), ``quotas``, ``quota_usages``, ``reservations`` (with the
owning flow id in ``owner``) and ``services``. Indexes on ``(host, status)`` and ``(status)`` let
recovery and periodic tasks read only in-flight rows; ``(deleted, project_id)`` serves listings;
``(deleted, expire)`` and ``(owner, deleted)`` serve the reservation sweeper.
Data: none (new tables only).

The columns are written out here, not imported from the models: a revision must keep creating
the schema of its time after the models move on.

Revision ID: 993b56c24f9e
Revises:
Create Date: 2026-11-22 05:51:19.777713
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "993b56c24f9e"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    ]


def _soft_delete() -> list[sa.Column]:
    return [
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        *_timestamps(),
    ]


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("cluster_name", sa.String(255), nullable=True),
        sa.Column("availability_zone", sa.String(255), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("status", sa.String(255), nullable=False),
        sa.Column("group_type_id", sa.String(36), nullable=True),
        sa.Column("volume_type_ids", sa.Text(), nullable=True),
        sa.Column("group_snapshot_id", sa.String(36), nullable=True),
        sa.Column("source_group_id", sa.String(36), nullable=True),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
    )
    op.create_index(op.f("ix_groups_host_status"), "groups", ["host", "status"])
    op.create_index(op.f("ix_groups_deleted_project_id"), "groups", ["deleted", "project_id"])

    op.create_table(
        "group_snapshots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("status", sa.String(255), nullable=False),
        sa.Column("group_type_id", sa.String(36), nullable=True),
        *_soft_delete(),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"],
                                name=op.f("fk_group_snapshots_group_id_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_snapshots")),
    )
    op.create_index(op.f("ix_group_snapshots_status"), "group_snapshots", ["status"])

    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("use_quota", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("cluster_name", sa.String(255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=True),
        sa.Column("status", sa.String(255), nullable=False),
        sa.Column("attach_status", sa.String(255), nullable=False),
        sa.Column("previous_status", sa.String(255), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("launched_at", sa.DateTime(), nullable=True),
        sa.Column("terminated_at", sa.DateTime(), nullable=True),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("display_description", sa.String(255), nullable=True),
        sa.Column("provider_location", sa.String(256), nullable=True),
        sa.Column("provider_auth", sa.String(256), nullable=True),
        sa.Column("provider_id", sa.String(255), nullable=True),
        sa.Column("volume_type_id", sa.String(36), nullable=True),
        sa.Column("snapshot_id", sa.String(36), nullable=True),
        sa.Column("source_volid", sa.String(36), nullable=True),
        sa.Column("group_id", sa.String(36), nullable=True),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("multiattach", sa.Boolean(), nullable=False),
        sa.Column("status_reason", sa.String(255), nullable=True),
        *_soft_delete(),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"],
                                name=op.f("fk_volumes_group_id_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
    )
    op.create_index(op.f("ix_volumes_host_status"), "volumes", ["host", "status"])
    op.create_index(op.f("ix_volumes_deleted_project_id"), "volumes", ["deleted", "project_id"])
    op.create_index(op.f("ix_volumes_group_id"), "volumes", ["group_id"])

    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("use_quota", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("group_snapshot_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(255), nullable=False),
        sa.Column("progress", sa.String(255), nullable=True),
        sa.Column("volume_size", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("display_description", sa.String(255), nullable=True),
        sa.Column("volume_type_id", sa.String(36), nullable=True),
        sa.Column("provider_location", sa.String(255), nullable=True),
        sa.Column("provider_id", sa.String(255), nullable=True),
        sa.Column("provider_auth", sa.String(255), nullable=True),
        sa.Column("status_reason", sa.String(255), nullable=True),
        *_soft_delete(),
        sa.ForeignKeyConstraint(["volume_id"], ["volumes.id"],
                                name=op.f("fk_snapshots_volume_id_volumes")),
        sa.ForeignKeyConstraint(["group_snapshot_id"], ["group_snapshots.id"],
                                name=op.f("fk_snapshots_group_snapshot_id_group_snapshots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
    )
    op.create_index(op.f("ix_snapshots_volume_id"), "snapshots", ["volume_id"])
    op.create_index(op.f("ix_snapshots_status"), "snapshots", ["status"])
    op.create_index(op.f("ix_snapshots_deleted_project_id"), "snapshots",
                    ["deleted", "project_id"])
    op.create_index(op.f("ix_snapshots_group_snapshot_id"), "snapshots", ["group_snapshot_id"])

    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotas")),
        sa.UniqueConstraint("project_id", "resource",
                            name=op.f("uq_quotas_project_id_resource")),
    )

    op.create_table(
        "quota_usages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("in_use", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("until_refresh", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_usages")),
        sa.UniqueConstraint("project_id", "resource",
                            name=op.f("uq_quota_usages_project_id_resource")),
    )

    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("usage_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("expire", sa.DateTime(), nullable=False),
        sa.Column("owner", sa.String(36), nullable=True),
        *_soft_delete(),
        sa.ForeignKeyConstraint(["usage_id"], ["quota_usages.id"],
                                name=op.f("fk_reservations_usage_id_quota_usages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sa.UniqueConstraint("uuid", name=op.f("uq_reservations_uuid")),
    )
    op.create_index(op.f("ix_reservations_deleted_expire"), "reservations", ["deleted", "expire"])
    op.create_index(op.f("ix_reservations_owner_deleted"), "reservations", ["owner", "deleted"])

    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("cluster_name", sa.String(255), nullable=True),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("rpc_current_version", sa.String(36), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        *_soft_delete(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("uuid", name=op.f("uq_services_uuid")),
    )
    op.create_index(op.f("ix_services_host_binary"), "services", ["host", "binary"])
    op.create_index(op.f("ix_services_topic_deleted"), "services", ["topic", "deleted"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes with it.
    for table in ("services", "reservations", "quota_usages", "quotas", "snapshots", "volumes",
                  "group_snapshots", "groups"):
        op.drop_table(table)
