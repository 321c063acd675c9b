"""Tables of the admin API (issue 14): the DLQ index, review states and the audit trail.

* `dlq_entries`: one row per dead letter, keyed by its DLQ position. The pipeline writes it in
  the same transaction as the event's `dlq`/`invalid` event record (storage/writer.py), so a
  dead letter is queryable as soon as its outcome is durable; records that reached the topic
  some other way (produced by a tool, or before migration 0005) are added by
  `ops.dlq_service.sync_index`, which reads only the offsets missing from the index. The
  topic stays the source of the bytes: a row holds what a summary or a filter needs.
* `dlq_reviews`: the review state of a business-critical dead letter (CRITICAL_TYPES); no row
  means pending. approved -> replayed when the approval's replay is confirmed.
* `dlq_audit`: every mutation (review, replay, purge) with its actor and what it did.

Migration: storage/migrations/versions/0005_dlq_admin.py.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from storage.metadata import metadata
from storage.pg_text import pg_text

# A DLQ record's position: the key of every table that says something about one record (here
# and in storage/dlq_tables.py).
POSITION = ("dlq_topic", "dlq_partition", "dlq_offset")


def position_columns() -> list[Column[object]]:
    """New columns each call: a Column belongs to one table."""
    return [
        Column("dlq_topic", String(250), nullable=False),
        Column("dlq_partition", Integer, nullable=False),
        Column("dlq_offset", BigInteger, nullable=False),
    ]


dlq_entries = Table(
    "dlq_entries",
    metadata,
    *position_columns(),
    Column("event_type", String(50), nullable=False),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(100)),
    Column("event_key", String(500)),
    Column("consumer_group", String(200)),
    Column("origin_topic", String(250)),
    Column("origin_partition", Integer),
    Column("origin_offset", BigInteger),
    Column("error_class", String(200)),
    Column("failure_kind", String(50)),
    Column("dlq_reason", String(100)),
    Column("error_message", String(500)),
    Column("attempts", Integer),
    Column("replay_count", Integer, nullable=False, server_default="0"),
    Column("value_bytes", Integer),
    Column("indexed_by", String(20), nullable=False),  # pipeline | sync
    PrimaryKeyConstraint(*POSITION),
)
# Keyset pages in time order, over every type or one type (ops/dlq_service.py `list_page`).
Index(
    "ix_dlq_entries_time",
    dlq_entries.c.dead_lettered_at,
    dlq_entries.c.dlq_topic,
    dlq_entries.c.dlq_partition,
    dlq_entries.c.dlq_offset,
)
Index(
    "ix_dlq_entries_type_time",
    dlq_entries.c.event_type,
    dlq_entries.c.dead_lettered_at,
    dlq_entries.c.dlq_topic,
    dlq_entries.c.dlq_partition,
    dlq_entries.c.dlq_offset,
)

dlq_reviews = Table(
    "dlq_reviews",
    metadata,
    *position_columns(),
    Column("event_type", String(50), nullable=False),
    Column("state", String(20), nullable=False),  # approved | rejected | replayed
    Column("actor", String(200), nullable=False),
    Column("reason", String(1000)),
    Column("replay_id", Uuid),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint(*POSITION),
)

dlq_audit = Table(
    "dlq_audit",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(200), nullable=False),
    Column("action", String(50), nullable=False),
    Column("ref", String(400)),  # TYPE:PARTITION:OFFSET of a single record, else None
    Column("detail", JSONB, nullable=False),
)
Index("ix_dlq_audit_ref", dlq_audit.c.ref)


def insert_entries(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Index dead letters; a position already indexed (by the other path) is kept as it is."""
    if rows:
        # Record bytes (a key, an error quoting them) may hold what PostgreSQL text refuses.
        clean = [
            {k: pg_text(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows
        ]
        conn.execute(pg_insert(dlq_entries).on_conflict_do_nothing(), clean)
