"""The request ledger: one row per accepted operation.

Why: a request acknowledged by the message broker but not yet started was lost when its
worker stopped; the row, written in the transaction that accepts the operation, makes the
database the record of every request (messages only wake the worker up).
What: creates ``requests`` with indexes on ``(state, target, claim_expires_at)`` (the
sweeps), ``(resource_id, state)`` (open requests of a resource) and ``(finished_at)``
(pruning).
Data: none (new table only). Operations accepted before this revision have no row.

Revision ID: 5a1e6c2d9b71
Revises: 993b56c24f9e
Create Date: 2026-12-06 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5a1e6c2d9b71"
down_revision = "993b56c24f9e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
    )
    op.create_index(op.f("ix_requests_state_target_claim_expires_at"), "requests",
                    ["state", "target", "claim_expires_at"])
    op.create_index(op.f("ix_requests_resource_id_state"), "requests",
                    ["resource_id", "state"])
    op.create_index(op.f("ix_requests_finished_at"), "requests", ["finished_at"])


def downgrade() -> None:
    op.drop_table("requests")
