"""dlq replays, replayed and purged records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dlq_replays",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dlq_replayed_records",
        sa.Column("dlq_topic", sa.String(length=250), nullable=False),
        sa.Column("dlq_partition", sa.Integer(), nullable=False),
        sa.Column("dlq_offset", sa.BigInteger(), nullable=False),
        sa.Column("replay_id", sa.Uuid(), nullable=False),
        sa.Column(
            "replayed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["replay_id"], ["dlq_replays.id"]),
        sa.PrimaryKeyConstraint("dlq_topic", "dlq_partition", "dlq_offset"),
    )
    op.create_table(
        "dlq_purged_records",
        sa.Column("dlq_topic", sa.String(length=250), nullable=False),
        sa.Column("dlq_partition", sa.Integer(), nullable=False),
        sa.Column("dlq_offset", sa.BigInteger(), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column(
            "purged_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("dlq_topic", "dlq_partition", "dlq_offset"),
    )


def downgrade() -> None:
    op.drop_table("dlq_purged_records")
    op.drop_table("dlq_replayed_records")
    op.drop_table("dlq_replays")
