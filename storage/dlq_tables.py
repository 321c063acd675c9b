"""Tables of the DLQ runbook (ops/dlq.py): replays, replayed records, purged records.

Kafka cannot mark or delete single records, so what an operator did to the DLQ is kept here:

* `dlq_replays`: one row per `qchem-events dlq replay` (dry runs too), with who ran it, when,
  the filter it used and how many records it sent;
* `dlq_replayed_records`: one row per DLQ record replayed (the last replay that sent it), so
  the same replay run twice sends nothing the second time (unless --include-replayed);
* `dlq_purged_records`: DLQ records hidden by a filter purge (list, summary and replay skip
  them); records older than a cutoff are deleted from the topic itself instead.

Migration: storage/migrations/versions/0002_dlq_replays.py (job columns and `times`: 0005).
The admin API's index, reviews and audit are in storage/dlq_index.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from storage.dlq_index import POSITION, position_columns
from storage.metadata import metadata

dlq_replays = Table(
    "dlq_replays",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("who", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("filter", JSONB, nullable=False),
    Column("count", Integer, nullable=False, server_default="0"),
    Column("dry_run", Boolean, nullable=False),
    # Job columns (migration 0005): the admin API runs replays in the background.
    Column("event_type", String(50)),
    Column("target_topic", String(250)),
    Column("status", String(20), nullable=False, server_default="finished"),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("error", String(500)),
)

dlq_replayed_records = Table(
    "dlq_replayed_records",
    metadata,
    *position_columns(),
    Column("replay_id", Uuid, ForeignKey("dlq_replays.id"), nullable=False),
    Column("replayed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # How often this position was sent (migration 0005): the per-record replay cap.
    Column("times", Integer, nullable=False, server_default="1"),
    PrimaryKeyConstraint(*POSITION),
)

dlq_purged_records = Table(
    "dlq_purged_records",
    metadata,
    *position_columns(),
    Column("who", String(200), nullable=False),
    Column("purged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint(*POSITION),
)


def record_redrive(
    engine: Engine,
    *,
    who: str,
    filter_: dict[str, Any],
    positions: list[tuple[str, int, int]],
) -> uuid.UUID:
    """Record a replay run and mark the DLQ records (topic, partition, offset) it sent."""
    replay_id = uuid.uuid4()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            dlq_replays.insert().values(
                id=replay_id,
                who=who,
                started_at=now,
                finished_at=now,
                filter=filter_,
                count=len(positions),
                dry_run=False,
            )
        )
        if positions:
            stmt = pg_insert(dlq_replayed_records)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(POSITION),
                set_={
                    "replay_id": stmt.excluded.replay_id,
                    "replayed_at": now,
                    "times": dlq_replayed_records.c.times + 1,
                },
            )
            conn.execute(
                stmt,
                [
                    {
                        "dlq_topic": t,
                        "dlq_partition": p,
                        "dlq_offset": o,
                        "replay_id": replay_id,
                        "replayed_at": now,
                    }
                    for t, p, o in positions
                ],
            )
    return replay_id


def resolved_counts(engine: Engine, topic: str, lows: dict[int, int]) -> int:
    """DLQ records of `topic` still retained (offset >= the partition's low watermark) that
    were replayed, redriven or hidden by a purge: they no longer need a person."""
    if not lows:
        return 0
    total = 0
    with engine.connect() as conn:
        for table in (dlq_replayed_records, dlq_purged_records):
            rows = conn.execute(
                select(table.c.dlq_partition, table.c.dlq_offset).where(table.c.dlq_topic == topic)
            ).all()
            total += sum(1 for p, o in rows if p in lows and o >= lows[p])
    return total
