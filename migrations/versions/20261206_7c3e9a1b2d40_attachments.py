"""Attachments: one row per consumer's hold on a volume.

Why: a volume handed to a consumer was not recorded anywhere, so it stayed ``available`` and
could be deleted, extended or unmanaged under the consumer.
What: creates ``volume_attachment`` (volume, instance, host, mountpoint, mode, connector and
connection info as JSON, ``attach_status``, attach/detach times, soft delete) with indexes on
``(volume_id, deleted)`` and ``(instance_uuid)``.
Data: none (new table only). Volumes keep their ``attach_status`` column as it was.

Revision ID: 7c3e9a1b2d40
Revises: 5a1e6c2d9b71
Create Date: 2026-12-06 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "7c3e9a1b2d40"
down_revision = "5a1e6c2d9b71"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_attachment",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("instance_uuid", sa.String(36), nullable=True),
        sa.Column("attached_host", sa.String(255), nullable=True),
        sa.Column("mountpoint", sa.String(255), nullable=True),
        sa.Column("attach_mode", sa.String(36), nullable=False),
        sa.Column("connector", sa.Text(), nullable=True),
        sa.Column("connection_info", sa.Text(), nullable=True),
        sa.Column("attach_status", sa.String(255), nullable=False),
        sa.Column("attach_time", sa.DateTime(), nullable=True),
        sa.Column("detach_time", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["volume_id"], ["volumes.id"],
                                name=op.f("fk_volume_attachment_volume_id_volumes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_attachment")),
    )
    op.create_index(op.f("ix_volume_attachment_volume_id_deleted"), "volume_attachment",
                    ["volume_id", "deleted"])
    op.create_index(op.f("ix_volume_attachment_instance_uuid"), "volume_attachment",
                    ["instance_uuid"])


def downgrade() -> None:
    op.drop_table("volume_attachment")
