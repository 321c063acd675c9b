"""Reading the dead-letter topics for the runbook: `qchem-events dlq summary|list|show`.

A DLQ is read with a throwaway consumer *assigned* to every partition from the low to the high
watermark - it never joins (or commits for) the application's consumer groups. Each record's
`qchem-*` headers are parsed into a `DlqRecord` (retry_topics/dlq_record.py); `Filters` select
records by error class, time (the DLQ record's timestamp: when it was dead-lettered),
partition and event id. Records hidden by a filter purge (`dlq_purged_records`) are left out;
records already replayed (`dlq_replayed_records`) are flagged. Replay and purge live in
ops/dlq_replay.py; the JSON form, summary and terminal text in ops/dlq_render.py. Pure parts
(parsing, filters) are unit-tested.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from common import event_types
from common.settings import Settings
from retry_topics import headers as rh
from retry_topics.dlq_record import MAX_TIME_MS, DlqRecord, make_record
from retry_topics.naming import kebab, topic_names
from schemas.validation import datetime_to_millis

MAX_AGE_DAYS = 10_000  # ~27 years: further back than any record; more overflowed the cutoff
READ_STALL_S = 30.0  # no progress for this long while reading a DLQ: give up
rdkafka_log = logging.getLogger("librdkafka.dlq")
rdkafka_log.setLevel(logging.CRITICAL)


class DlqUsageError(ValueError):
    """A bad argument (exit 2)."""


class DlqProblem(Exception):
    """Something found wrong while doing the work (exit 1)."""


# -- arguments ---------------------------------------------------------------------------------


def resolve_type(name: str) -> str:
    """`Email`, `email` or `chemical-status` -> the event type name; DlqUsageError if unknown."""
    known = event_types.names()
    for event_type in known:
        if name.lower() in (event_type.lower(), kebab(event_type)):
            return event_type
    raise DlqUsageError(f"unknown event type {name!r}; choose from {', '.join(known)}")


def parse_time(text: str, option: str = "--since") -> int:
    """An ISO 8601 date or date-time (UTC when no offset is given) -> epoch milliseconds."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            parsed = datetime.combine(date.fromisoformat(raw), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise DlqUsageError(
            f"{option}: expected an ISO 8601 date or time such as 2026-11-29 or "
            f"2026-11-29T03:00:00Z, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        ms = datetime_to_millis(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, before year 1 in UTC
        ms = -1
    if not 0 <= ms <= MAX_TIME_MS:
        raise DlqUsageError(
            f"{option}: {text!r} is outside 1970-01-01 .. 9999-12-31 UTC, the times a Kafka "
            "record can carry"
        )
    return ms


def parse_ref(text: str) -> tuple[str, int, int]:
    """`TYPE:PARTITION:OFFSET` -> (event type, partition, offset)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise DlqUsageError(f"expected TYPE:PARTITION:OFFSET such as Email:0:42, got {text!r}")
    return resolve_type(parts[0]), int(parts[1]), int(parts[2])


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC; None when absent, negative or past year 9999.

    Record timestamps and time headers come from whoever produced the record: a forged
    9223372036854775807 must print as None, not stop `dlq list` (issue 17 #7).
    """
    if ms is None or ms < 0:
        return None
    try:  # integer arithmetic: ms / 1000 as a float loses the last millisecond near 9999
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    except OverflowError:
        return None
    stamp = moment.isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    error_class: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    partition: int | None = None
    event_ids: frozenset[str] = field(default_factory=frozenset)
    limit: int | None = None

    @property
    def narrows(self) -> bool:
        """True when any filter selects records (a purge then hides instead of deleting)."""
        return bool(self.error_class or self.event_ids) or any(
            v is not None for v in (self.since_ms, self.until_ms, self.partition, self.limit)
        )

    def matches(self, record: DlqRecord) -> bool:
        if self.error_class is not None and (
            (record.error_class or "").lower() != self.error_class.lower()
        ):
            return False
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and record.timestamp_ms >= self.until_ms:
            return False
        if self.partition is not None and record.partition != self.partition:
            return False
        return not self.event_ids or record.event_id in self.event_ids

    def apply(self, records: Iterable[DlqRecord]) -> list[DlqRecord]:
        """Matching records, oldest first (then by partition and offset), up to the limit."""
        chosen = sorted(
            (r for r in records if self.matches(r)),
            key=lambda r: (r.timestamp_ms, r.partition, r.offset),
        )
        return chosen[: self.limit] if self.limit is not None else chosen

    def as_json(self) -> dict[str, Any]:
        return {
            "error_class": self.error_class,
            "since": iso(self.since_ms),
            "until": iso(self.until_ms),
            "partition": self.partition,
            "event_ids": sorted(self.event_ids),
            "limit": self.limit,
        }


# -- Kafka and PostgreSQL ----------------------------------------------------------------------


def dlq_topic(settings: Settings, event_type: str) -> str:
    return topic_names(settings, event_type).dlq


def main_topic(settings: Settings, event_type: str) -> str:
    return topic_names(settings, event_type).main


def reader(settings: Settings) -> Consumer:
    """A throwaway consumer: a group id of its own, never subscribed, never committing."""
    return Consumer(
        {
            **settings.kafka_common_config(),
            "group.id": f"{settings.topic_prefix}-dlq-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "logger": rdkafka_log,
        }
    )


def partition_count(settings: Settings, topic: str) -> int:
    from ops.topics import admin_client, existing_topics

    count = existing_topics(admin_client(settings), settings).get(topic)
    if not count:
        raise DlqProblem(f"topic {topic} does not exist (run `qchem-events topics create`)")
    return count


def _message_headers(message: Message) -> list[tuple[str, bytes]]:
    try:
        return list(rh.message_headers(message) or [])
    except rh.UnreadableHeaders:
        # A header name that is not UTF-8 (produced straight to the DLQ): the client cannot
        # hand the headers over at all; show the record without them rather than fail.
        return []


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) of a partition; retried while a new topic's leader is being elected."""
    deadline = time.monotonic() + 15
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise DlqProblem(
                    f"cannot read the offsets of {topic}[{partition}]: {exc}"
                ) from None
            time.sleep(0.5)


def read_one(settings: Settings, event_type: str, partition: int, offset: int) -> DlqRecord:
    """The DLQ record at `partition`/`offset`; DlqProblem when there is none."""
    found = read_dlq(settings, event_type, partition, start=offset, stop=offset + 1)
    if not found or found[0].offset != offset:
        raise DlqProblem(f"no record at {event_type}:{partition}:{offset} in the DLQ")
    return found[0]


def _read_ranges(
    consumer: Any, topic: str, partitions: list[int], start: int | None, stop: int | None
) -> tuple[dict[int, int], list[TopicPartition]]:
    """Where reading each partition ends (its high watermark now, or `stop`), and where it
    starts; partitions with nothing in that range are left out."""
    ends: dict[int, int] = {}
    assignment = []
    for p in partitions:
        low, high = watermarks(consumer, topic, p)
        first = max(low, start) if start is not None else low
        high = min(high, stop) if stop is not None else high
        if high > first:
            ends[p] = high
            assignment.append(TopicPartition(topic, p, first))
    return ends, assignment


def read_dlq(
    settings: Settings,
    event_type: str,
    partition: int | None = None,
    *,
    start: int | None = None,
    stop: int | None = None,
) -> list[DlqRecord]:
    """Every record of the type's DLQ (or of one partition, from `start` to before `stop`),
    up to the high watermark as it was when reading began."""
    topic = dlq_topic(settings, event_type)
    count = partition_count(settings, topic)
    if partition is not None and partition >= count:
        raise DlqUsageError(f"--partition {partition}: {topic} has partitions 0..{count - 1}")
    consumer = reader(settings)
    try:
        partitions = [partition] if partition is not None else list(range(count))
        ends, assignment = _read_ranges(consumer, topic, partitions, start, stop)
        records: list[DlqRecord] = []
        if not assignment:
            return records
        consumer.assign(assignment)
        last_progress = time.monotonic()
        while ends:
            if time.monotonic() - last_progress > READ_STALL_S:
                raise DlqProblem(f"reading {topic} stalled; partitions left: {sorted(ends)}")
            for message in consumer.consume(500, timeout=0.5):
                part, offset, error = message.partition(), message.offset(), message.error()
                if part is None or offset is None:
                    continue
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(part, None)
                    continue
                last_progress = time.monotonic()
                if part not in ends or offset >= ends[part]:
                    continue
                records.append(
                    make_record(
                        event_type,
                        topic,
                        part,
                        offset,
                        message.timestamp()[1],
                        message.key(),
                        message.value(),
                        _message_headers(message),
                    )
                )
                if offset + 1 >= ends[part]:
                    del ends[part]
        return records
    finally:
        consumer.close()
