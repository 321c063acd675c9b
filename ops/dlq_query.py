"""The DLQ index (storage/dlq_index.py): keeping it whole, and the queries the runbook asks.

Summary and paged lists are SQL over `dlq_entries`, so they answer in bounded time and memory
however deep the DLQ is (bench/dlq_index.py). The pipeline writes an entry with the event's
outcome (retry_topics/failure.py); `sync_index` adds what reached the topic otherwise (a tool,
a crash between the broker's confirmation and the write, records older than migration 0005)
and forgets what retention or a time purge deleted. It asks PostgreSQL which offsets between
the low and high watermark are missing and reads only those from Kafka: when the index is
whole, a sync is one watermark request and one index-only query per partition.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, case, delete, func, literal, or_, select, text, tuple_
from sqlalchemy.engine import Connection, Engine

from common.settings import Settings
from ops.dlq import (
    DlqUsageError,
    Filters,
    dlq_topic,
    iso,
    partition_count,
    read_dlq,
    reader,
    watermarks,
)
from retry_topics.dlq_record import EPOCH, entry_row, ms_to_time
from storage.dlq_index import dlq_entries, dlq_reviews, insert_entries
from storage.dlq_tables import dlq_purged_records, dlq_replayed_records

log = structlog.get_logger(__name__)
ANALYZE_AFTER = 10_000  # rows added by one sync that make it refresh the statistics
SYNC_WINDOW = 5_000  # offsets read from Kafka and inserted per step: bounded memory
STATUSES = ("new", "replayed", "hidden", "pending", "approved", "rejected")
PAGE_MAX = 500


def time_to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


# -- keeping the index whole -------------------------------------------------------------------


def _missing_ranges(conn: Connection, topic: str, partition: int, low: int, high: int) -> list:
    """[start, stop) ranges of offsets in low..high with no index row."""
    e = dlq_entries.c
    where = and_(
        e.dlq_topic == topic, e.dlq_partition == partition, e.dlq_offset >= low, e.dlq_offset < high
    )
    count = conn.execute(select(func.count()).where(where)).scalar_one()
    if count == high - low:
        return []
    nxt = func.lead(e.dlq_offset).over(order_by=e.dlq_offset)
    inner = select(e.dlq_offset.label("o"), nxt.label("n")).where(where).subquery()
    gaps = conn.execute(
        select(inner.c.o, inner.c.n).where(or_(inner.c.n.is_(None), inner.c.n > inner.c.o + 1))
    ).all()
    first = conn.execute(select(func.min(e.dlq_offset)).where(where)).scalar_one()
    ranges = [(low, first if first is not None else high)]
    ranges += [(o + 1, n if n is not None else high) for o, n in gaps]
    return [(a, b) for a, b in ranges if b > a]


def sync_index(settings: Settings, engine: Engine, event_type: str) -> int:
    """Index the type's DLQ records missing from the index; forget those Kafka deleted.
    Returns how many were added."""
    topic = dlq_topic(settings, event_type)
    count = partition_count(settings, topic)
    consumer = reader(settings)
    try:
        marks = {p: watermarks(consumer, topic, p) for p in range(count)}
    finally:
        consumer.close()
    added = 0
    for partition, (low, high) in marks.items():
        e = dlq_entries.c
        with engine.begin() as conn:
            conn.execute(
                delete(dlq_entries).where(
                    e.dlq_topic == topic, e.dlq_partition == partition, e.dlq_offset < low
                )
            )
            ranges = _missing_ranges(conn, topic, partition, low, high)
        for start, stop in ranges:
            for window in range(start, stop, SYNC_WINDOW):
                found = read_dlq(
                    settings,
                    event_type,
                    partition,
                    start=window,
                    stop=min(stop, window + SYNC_WINDOW),
                )
                with engine.begin() as conn:
                    insert_entries(conn, [entry_row(r, "sync") for r in found])
                added += len(found)
    if added >= ANALYZE_AFTER:
        # A backfill changes the table's size at once: without fresh statistics PostgreSQL
        # plans a page as a scan of every row (0.3 s at 100,000) instead of an index walk
        # that stops after the page (5 ms); autovacuum would get there only later.
        with engine.begin() as conn:
            conn.execute(text("ANALYZE dlq_entries"))
    return added


# -- the status of an entry -------------------------------------------------------------------

_purged = dlq_purged_records.alias("p")
_replayed = dlq_replayed_records.alias("r")
_review = dlq_reviews.alias("v")


def joined_entries() -> Any:
    e = dlq_entries
    on = lambda t: and_(  # noqa: E731
        t.c.dlq_topic == e.c.dlq_topic,
        t.c.dlq_partition == e.c.dlq_partition,
        t.c.dlq_offset == e.c.dlq_offset,
    )
    return (
        e.outerjoin(_purged, on(_purged))
        .outerjoin(_replayed, on(_replayed))
        .outerjoin(_review, on(_review))
    )


def status_column(critical: Sequence[str]) -> Any:
    """hidden (purged) | the review state of a critical type (no row: pending) | replayed | new"""
    return case(
        (_purged.c.dlq_offset.is_not(None), literal("hidden")),
        (
            dlq_entries.c.event_type.in_(list(critical) or [""]),
            func.coalesce(_review.c.state, literal("pending")),
        ),
        (_replayed.c.dlq_offset.is_not(None), literal("replayed")),
        else_=literal("new"),
    )


# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """What to list: the CLI's filters plus a status and a cursor (API and CLI alike)."""

    types: tuple[str, ...]
    filters: Filters = field(default_factory=Filters)
    status: str | None = None  # None: every status but hidden
    cursor: tuple[datetime, str, int, int] | None = None


def encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps(
        [
            row["dead_lettered_at"].isoformat(),
            row["dlq_topic"],
            row["dlq_partition"],
            row["dlq_offset"],
        ]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str, int, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        stamp, topic, partition, offset = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if not (isinstance(topic, str) and type(partition) is int and type(offset) is int):
            raise ValueError
        return moment, topic, partition, offset
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise DlqUsageError("cursor: not a cursor this API returned") from None


def where_clauses(settings: Settings, query: Query) -> list[Any]:
    e = dlq_entries.c
    f = query.filters
    topics = [dlq_topic(settings, t) for t in query.types]
    clauses: list[Any] = [e.event_type.in_(query.types), e.dlq_topic.in_(topics)]
    if f.error_class is not None:
        clauses.append(func.lower(e.error_class) == f.error_class.lower())
    if f.since_ms is not None:
        clauses.append(e.dead_lettered_at >= ms_to_time(f.since_ms))
    if f.until_ms is not None:
        clauses.append(e.dead_lettered_at < ms_to_time(f.until_ms))
    if f.partition is not None:
        clauses.append(e.dlq_partition == f.partition)
    if f.event_ids:
        clauses.append(e.event_id.in_(sorted(f.event_ids)))
    status = status_column(settings.critical_types)
    if query.status is None:
        clauses.append(status != "hidden")
    else:
        clauses.append(status == query.status)
    return clauses


def _columns(settings: Settings) -> list[Any]:
    return [
        dlq_entries,
        status_column(settings.critical_types).label("status"),
        _replayed.c.times.label("times_replayed"),
        _review.c.actor.label("review_actor"),
        _review.c.reason.label("review_reason"),
        _review.c.updated_at.label("review_at"),
    ]


def entry_at(
    settings: Settings, engine: Engine, event_type: str, partition: int, offset: int
) -> dict[str, Any] | None:
    """The index row of one position, with its status; None when not indexed."""
    e = dlq_entries.c
    stmt = (
        select(*_columns(settings))
        .select_from(joined_entries())
        .where(
            e.dlq_topic == dlq_topic(settings, event_type),
            e.event_type == event_type,
            e.dlq_partition == partition,
            e.dlq_offset == offset,
        )
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return dict(row) if row is not None else None


def list_page(
    settings: Settings, engine: Engine, query: Query, size: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of index rows (oldest first) and the cursor of the next page (None: last)."""
    e = dlq_entries.c
    order = (e.dead_lettered_at, e.dlq_topic, e.dlq_partition, e.dlq_offset)
    clauses = where_clauses(settings, query)
    if query.cursor is not None:
        clauses.append(tuple_(*order) > tuple_(*query.cursor))
    stmt = (
        select(*_columns(settings))
        .select_from(joined_entries())
        .where(*clauses)
        .order_by(*order)
        .limit(size + 1)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    more = len(rows) > size
    rows = rows[:size]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def iter_entries(
    settings: Settings, engine: Engine, query: Query, page: int = PAGE_MAX
) -> Iterator[dict[str, Any]]:
    """Every matching index row, a page at a time (memory bounded by `page`)."""
    left = query.filters.limit
    while True:
        size = page if left is None else min(page, left)
        rows, cursor = list_page(settings, engine, query, size)
        yield from rows
        if left is not None:
            left -= len(rows)
        if cursor is None or (left is not None and left <= 0):
            return
        query = replace(query, cursor=decode_cursor(cursor))


def entry_json(row: dict[str, Any]) -> dict[str, Any]:
    """An index row for the API and `dlq list --json --index`."""
    ref = f"{row['event_type']}:{row['dlq_partition']}:{row['dlq_offset']}"
    at = row.get("review_at")
    return {
        "id": ref,
        "ref": ref,
        "event_type": row["event_type"],
        "topic": row["dlq_topic"],
        "partition": row["dlq_partition"],
        "offset": row["dlq_offset"],
        "dead_lettered_at": iso(time_to_ms(row["dead_lettered_at"])),
        "event_id": row["event_id"],
        "event_key": row["event_key"],
        "error_class": row["error_class"],
        "error_message": row["error_message"],
        "failure_kind": row["failure_kind"],
        "dlq_reason": row["dlq_reason"],
        "attempts": row["attempts"],
        "replay_count": row["replay_count"],
        "times_replayed": row.get("times_replayed") or 0,
        "value_bytes": row["value_bytes"],
        "origin": None
        if row["origin_topic"] is None
        else {
            "topic": row["origin_topic"],
            "partition": row["origin_partition"],
            "offset": row["origin_offset"],
        },
        "status": row.get("status"),
        "review": None
        if row.get("review_actor") is None
        else {
            "actor": row["review_actor"],
            "reason": row.get("review_reason"),
            "at": at.isoformat() if at else None,
        },
    }
