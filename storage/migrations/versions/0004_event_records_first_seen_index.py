"""event_records.first_seen_at index, for pruning past EVENT_RECORD_RETENTION_DAYS

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000

Housekeeping deletes old event records in batches (ops/housekeeping.py); without an index each
batch would scan the whole table. first_seen_at is never updated, so the index costs the
writer's upserts no HOT updates (updated_at would). A plain CREATE INDEX blocks writes while it
builds (seconds per ten million rows); on a larger table build it first, by hand:
CREATE INDEX CONCURRENTLY ix_event_records_first_seen_at ON event_records (first_seen_at);
this migration then finds it there.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_event_records_first_seen_at ON event_records (first_seen_at)"
    )


def downgrade() -> None:
    op.drop_index("ix_event_records_first_seen_at", table_name="event_records")
