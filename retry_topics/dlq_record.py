"""A dead letter as a record: its `qchem-*` headers parsed, and its row of the DLQ index.

The pipeline writes the index row of every record it dead-letters (retry_topics/failure.py,
`pipeline_entry`); the runbook reads and indexes the DLQ topics with the same parser
(ops/dlq.py, ops/dlq_query.py). Both sit above this module, which knows only the headers
(retry_topics/headers.py) and the event codec.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from retry_topics import headers as rh
from schemas.codec import InvalidEvent, decode

log = structlog.get_logger(__name__)

MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DlqRecord:
    event_type: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    event_id: str | None = None
    origin: rh.Origin | None = None
    group: str | None = None
    attempt: int | None = None
    first_failure_ms: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    error_stack: str | None = None
    failure_kind: str | None = None
    dlq_reason: str | None = None
    replay_count: int = 0
    replay_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.event_type}:{self.partition}:{self.offset}"

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)


def _header_text(values: dict[str, bytes], name: str) -> str | None:
    raw = values.get(name)
    return None if raw is None else raw.decode("utf-8", "replace")


def _header_int(values: dict[str, bytes], name: str) -> int | None:
    raw = values.get(name)
    if raw is None or len(raw) > 20:
        return None
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def event_id_of(
    value: bytes | None, headers: list[tuple[str, bytes]], event_type: str
) -> str | None:
    """The event id of a valid event, else the `event_id` of any JSON object, else None."""
    try:
        return decode(value, headers, event_type, max_bytes=64 * 1_048_576).event_id
    except InvalidEvent:
        pass
    try:
        obj = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    found = obj.get("event_id") if isinstance(obj, dict) else None
    return found if isinstance(found, str) and len(found) <= 100 else None


def make_record(
    event_type: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> DlqRecord:
    """A DLQ record with its `qchem-*` headers parsed (missing or malformed ones are None)."""
    pairs = [(name, data or b"") for name, data in headers or ()]
    values = rh.as_dict(pairs)
    replay_count = _header_int(values, rh.REPLAY_COUNT)
    return DlqRecord(
        event_type=event_type,
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=key,
        value=value,
        headers=pairs,
        event_id=event_id_of(value, pairs, event_type),
        origin=rh.parse_origin(pairs),
        group=_header_text(values, rh.GROUP),
        attempt=_header_int(values, rh.ATTEMPT),
        first_failure_ms=_header_int(values, rh.FIRST_FAILURE),
        error_class=_header_text(values, rh.ERROR_CLASS),
        error_message=_header_text(values, rh.ERROR_MESSAGE),
        error_stack=_header_text(values, rh.ERROR_STACK),
        failure_kind=_header_text(values, rh.FAILURE_KIND),
        dlq_reason=_header_text(values, rh.DLQ_REASON),
        replay_count=min(max(replay_count or 0, 0), 1_000_000),
        replay_id=_header_text(values, rh.REPLAY_ID),
    )


def ms_to_time(ms: int) -> datetime:
    """A record timestamp as a datetime; forged ones clamp to 1970..9999."""
    return EPOCH + timedelta(milliseconds=min(max(ms, 0), MAX_TIME_MS))


def entry_row(record: DlqRecord, indexed_by: str) -> dict[str, Any]:
    """The index row of a DLQ record (the pipeline's and the sync's alike)."""
    origin = record.origin
    message = record.error_message
    return {
        "dlq_topic": record.topic,
        "dlq_partition": record.partition,
        "dlq_offset": record.offset,
        "event_type": record.event_type,
        "dead_lettered_at": ms_to_time(record.timestamp_ms),
        "event_id": record.event_id,
        "event_key": record.key[:500].decode("utf-8", "replace") if record.key else None,
        "consumer_group": (record.group or "")[:200] or None,
        "origin_topic": origin.topic[:250] if origin else None,
        "origin_partition": origin.partition if origin else None,
        "origin_offset": origin.offset if origin else None,
        "error_class": (record.error_class or "")[:200] or None,
        "failure_kind": (record.failure_kind or "")[:50] or None,
        "dlq_reason": (record.dlq_reason or "")[:100] or None,
        "error_message": message[:500] if message else None,
        "attempts": record.attempt if record.attempt is None or record.attempt < 2**31 else None,
        "replay_count": record.replay_count,
        "value_bytes": len(record.value) if record.value is not None else None,
        "indexed_by": indexed_by,
    }


def pipeline_entry(
    event_type: str,
    topic: str,
    position: tuple[int, int, int],
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> dict[str, Any] | None:
    """The row the pipeline writes with a dead letter's event record (partition, offset and
    timestamp from the broker's delivery report). Never raises: it runs in a delivery
    callback, and a record whose outcome is never written would hold its offset forever -
    without a row, `sync_index` indexes the record from the topic instead."""
    partition, offset, timestamp_ms = position
    try:
        record = make_record(
            event_type, topic, partition, offset, timestamp_ms, key, value, headers
        )
        return entry_row(record, "pipeline")
    except Exception:
        log.exception("dlq_index_entry_failed", topic=topic, partition=partition, offset=offset)
        return None
