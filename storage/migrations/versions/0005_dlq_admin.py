"""DLQ index, manual review and audit for the admin API (issue 14)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:30:00.000000

* dlq_entries: one row per dead letter (its DLQ position, type, error class, failure kind,
  event id, origin, time) written by the pipeline in the transaction of the event's `dlq` /
  `invalid` record; the Kafka topic keeps the bytes. Summary and paged lists read this.
* dlq_reviews: the review state (pending is "no row") of business-critical dead letters.
* dlq_audit: every mutation with its actor (review, replay, purge).
* dlq_replays gains job columns (status, progress, target); dlq_replayed_records counts how
  often each position was sent (the per-record replay cap).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

POSITION = ["dlq_topic", "dlq_partition", "dlq_offset"]


def _position() -> list[sa.Column]:
    return [
        sa.Column("dlq_topic", sa.String(length=250), nullable=False),
        sa.Column("dlq_partition", sa.Integer(), nullable=False),
        sa.Column("dlq_offset", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "dlq_entries",
        *_position(),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=True),
        sa.Column("event_key", sa.String(length=500), nullable=True),
        sa.Column("consumer_group", sa.String(length=200), nullable=True),
        sa.Column("origin_topic", sa.String(length=250), nullable=True),
        sa.Column("origin_partition", sa.Integer(), nullable=True),
        sa.Column("origin_offset", sa.BigInteger(), nullable=True),
        sa.Column("error_class", sa.String(length=200), nullable=True),
        sa.Column("failure_kind", sa.String(length=50), nullable=True),
        sa.Column("dlq_reason", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=True),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("value_bytes", sa.Integer(), nullable=True),
        sa.Column("indexed_by", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint(*POSITION),
    )
    op.create_index(
        "ix_dlq_entries_time",
        "dlq_entries",
        ["dead_lettered_at", "dlq_topic", "dlq_partition", "dlq_offset"],
    )
    op.create_index(
        "ix_dlq_entries_type_time",
        "dlq_entries",
        ["event_type", "dead_lettered_at", "dlq_topic", "dlq_partition", "dlq_offset"],
    )
    op.create_table(
        "dlq_reviews",
        *_position(),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("replay_id", sa.Uuid(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(*POSITION),
    )
    op.create_table(
        "dlq_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("ref", sa.String(length=400), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dlq_audit_ref", "dlq_audit", ["ref"])
    op.add_column("dlq_replays", sa.Column("event_type", sa.String(length=50), nullable=True))
    op.add_column("dlq_replays", sa.Column("target_topic", sa.String(length=250), nullable=True))
    op.add_column(
        "dlq_replays",
        sa.Column("status", sa.String(length=20), server_default="finished", nullable=False),
    )
    op.add_column(
        "dlq_replays", sa.Column("total", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "dlq_replays", sa.Column("failed", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("dlq_replays", sa.Column("error", sa.String(length=500), nullable=True))
    op.add_column(
        "dlq_replayed_records",
        sa.Column("times", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("dlq_replayed_records", "times")
    for column in ("error", "failed", "total", "status", "target_topic", "event_type"):
        op.drop_column("dlq_replays", column)
    op.drop_index("ix_dlq_audit_ref", table_name="dlq_audit")
    op.drop_table("dlq_audit")
    op.drop_table("dlq_reviews")
    op.drop_index("ix_dlq_entries_type_time", table_name="dlq_entries")
    op.drop_index("ix_dlq_entries_time", table_name="dlq_entries")
    op.drop_table("dlq_entries")
