"""Tables (SQLAlchemy Core). Migrations in storage/migrations mirror this file.

Idempotency rests on `dedup_keys`: one row per *effect applied*, keyed by where the event
first arrived (consumer group, origin topic/partition/offset), with the event id unique per
group so the same event produced twice is caught as well. A dedup row is written in the same
transaction as the handler's effects and the event record, and only on success: an event that
went to a retry tier or the DLQ has none, so its retry or replay is processed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from storage.metadata import metadata

dedup_keys = Table(
    "dedup_keys",
    metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("origin_topic", String(250), nullable=False),
    Column("origin_partition", Integer, nullable=False),
    Column("origin_offset", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer_group", "origin_topic", "origin_partition", "origin_offset"),
    UniqueConstraint("consumer_group", "event_id", name="uq_dedup_keys_group_event"),
)
Index("ix_dedup_keys_processed_at", dedup_keys.c.processed_at)

# One row per origin record and group; updated on every outcome.
# status: succeeded | retrying | dlq | invalid | duplicate
event_records = Table(
    "event_records",
    metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("origin_topic", String(250), nullable=False),
    Column("origin_partition", Integer, nullable=False),
    Column("origin_offset", BigInteger, nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("event_id", String(36)),
    Column("event_key", String(500)),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("last_error", Text),
    Column("processing_ms", Integer),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer_group", "origin_topic", "origin_partition", "origin_offset"),
)
Index("ix_event_records_type_status", event_records.c.event_type, event_records.c.status)
Index("ix_event_records_event_id", event_records.c.event_id)
# Pruning past EVENT_RECORD_RETENTION_DAYS (ops/housekeeping.py); migration 0004.
Index("ix_event_records_first_seen_at", event_records.c.first_seen_at)

chemicals = Table(
    "chemicals",
    metadata,
    Column("chemical_id", String(100), primary_key=True),
    Column("cas_number", String(50)),
    Column("status", String(50), nullable=False),
    Column("regulation", String(200), nullable=False),
    # The occurred-at of the event that set `status`: an older event never overwrites it.
    Column("status_occurred_at", DateTime(timezone=True), nullable=False),
    Column("status_event_id", String(36), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

chemical_status_history = Table(
    "chemical_status_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("chemical_id", String(100), nullable=False),
    Column("status", String(50), nullable=False),
    Column("regulation", String(200), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(36), nullable=False),
    # False when a newer status was already in place (a late or replayed event).
    Column("applied", Boolean, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_chemical_status_history_chemical", chemical_status_history.c.chemical_id)

reports = Table(
    "reports",
    metadata,
    Column("report_id", String(100), primary_key=True),
    Column("report_type", String(100), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("content", Text, nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

chemical_lookups = Table(
    "chemical_lookups",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("chemical_id", String(100), nullable=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("data", JSONB, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Before an outside effect (an email, a look-up call) a copy of an event claims its id here,
# so overlapping copies perform it once (storage/claims.py). Expired claims are pruned.
effect_claims = Table(
    "effect_claims",
    metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("origin_topic", String(250), nullable=False),
    Column("origin_partition", Integer, nullable=False),
    Column("origin_offset", BigInteger, nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("consumer_group", "event_id"),
)
Index("ix_effect_claims_claimed_until", effect_claims.c.claimed_until)

# Secrets the application makes for itself, e.g. the key that signs replay headers
# (retry_topics/signing.py): shared by every instance and the CLI through the database.
app_secrets = Table(
    "app_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Emails have no table of their own: the SMTP server is their effect; the event record and
# dedup row say that it was sent.
