"""Volume types: named classes of volumes with extra specs and per-project access.

Why: volumes could not ask for a kind of backend; the scheduler had no extra specs to
match against the backends' capabilities.
What: creates ``volume_types`` (name, description, is_public, soft delete; index on
``(name, deleted)``), ``volume_type_extra_specs`` (unique ``(volume_type_id, key)``) and
``volume_type_projects`` (unique ``(volume_type_id, project_id)``).
Data: inserts the public type ``__DEFAULT__`` and gives it to every volume and snapshot that
has no type, as Cinder does since Train. Downgrade drops the tables and clears
``volume_type_id`` of volumes and snapshots that named a type.

Revision ID: 8d4f0b2c3e51
Revises: 7c3e9a1b2d40
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from alembic import op

revision = "8d4f0b2c3e51"
down_revision = "7c3e9a1b2d40"
branch_labels = None
depends_on = None

DEFAULT_TYPE_NAME = "__DEFAULT__"


def upgrade() -> None:
    op.create_table(
        "volume_types",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_types")),
    )
    op.create_index(op.f("ix_volume_types_name_deleted"), "volume_types", ["name", "deleted"])
    op.create_table(
        "volume_type_extra_specs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_type_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_types.id"],
                                name=op.f("fk_volume_type_extra_specs_volume_type_id_"
                                          "volume_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_type_extra_specs")),
        sa.UniqueConstraint("volume_type_id", "key",
                            name=op.f("uq_volume_type_extra_specs_volume_type_id_key")),
    )
    op.create_table(
        "volume_type_projects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("volume_type_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_types.id"],
                                name=op.f("fk_volume_type_projects_volume_type_id_"
                                          "volume_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_type_projects")),
        sa.UniqueConstraint("volume_type_id", "project_id",
                            name=op.f("uq_volume_type_projects_volume_type_id_project_id")),
    )
    default_id = str(uuid.uuid4())
    types = sa.table("volume_types", sa.column("id"), sa.column("name"),
                     sa.column("description"), sa.column("is_public"),
                     sa.column("created_at"), sa.column("deleted"))
    op.bulk_insert(types, [{
        "id": default_id, "name": DEFAULT_TYPE_NAME, "description": "Default Volume Type",
        "is_public": True, "deleted": False,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)}])
    for table in ("volumes", "snapshots"):
        rows = sa.table(table, sa.column("volume_type_id"))
        op.execute(rows.update().where(rows.c.volume_type_id.is_(None))
                   .values(volume_type_id=default_id))


def downgrade() -> None:
    for table in ("volumes", "snapshots"):
        rows = sa.table(table, sa.column("volume_type_id"))
        op.execute(rows.update().values(volume_type_id=None))
    op.drop_table("volume_type_projects")
    op.drop_table("volume_type_extra_specs")
    op.drop_index(op.f("ix_volume_types_name_deleted"), table_name="volume_types")
    op.drop_table("volume_types")
