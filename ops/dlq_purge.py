"""Purging the DLQ: Kafka deletes only prefixes of a partition, so records older than a cutoff
are deleted with the admin API (`delete_records` up to the first offset at or after the
cutoff); records selected by a filter are *hidden* instead (`dlq_purged_records`). Either way
the marks and index rows of deleted records go too. Called by ops/dlq_service.py `purge`,
which writes the audit row.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.dlq import DlqProblem, dlq_topic, partition_count, reader, watermarks
from ops.dlq_replay import who
from retry_topics.dlq_record import DlqRecord
from storage.dlq_index import dlq_entries
from storage.dlq_tables import dlq_purged_records, dlq_replayed_records


@dataclass(frozen=True, slots=True)
class PartitionCut:
    partition: int
    low: int
    cut: int  # records before this offset are deleted

    @property
    def count(self) -> int:
        return max(0, self.cut - self.low)


def plan_time_purge(settings: Settings, event_type: str, cutoff_ms: int) -> list[PartitionCut]:
    """Per partition: the first offset whose timestamp is at or after the cutoff."""
    topic = dlq_topic(settings, event_type)
    count = partition_count(settings, topic)
    consumer = reader(settings)
    try:
        marks = {p: watermarks(consumer, topic, p) for p in range(count)}
        wanted = [TopicPartition(topic, p, cutoff_ms) for p in range(count)]
        try:
            found = consumer.offsets_for_times(wanted, timeout=30)
        except KafkaException as exc:
            raise DlqProblem(f"cannot look up offsets by time in {topic}: {exc}") from None
        cuts = []
        for tp in found:
            if tp.error is not None:
                raise DlqProblem(f"cannot look up offsets by time in {topic}: {tp.error}")
            low, high = marks[tp.partition]
            cut = high if tp.offset < 0 else min(tp.offset, high)
            cuts.append(PartitionCut(tp.partition, low, max(cut, low)))
        return sorted(cuts, key=lambda c: c.partition)
    finally:
        consumer.close()


def delete_before(
    settings: Settings, engine: Engine, event_type: str, cuts: list[PartitionCut]
) -> int:
    """Delete the records before each cut (admin API); forget marks of deleted records."""
    from ops.topics import admin_client

    topic = dlq_topic(settings, event_type)
    todo = [TopicPartition(topic, c.partition, c.cut) for c in cuts if c.count > 0]
    if not todo:
        return 0
    admin = admin_client(settings)  # referenced until the futures are done
    futures = admin.delete_records(todo, request_timeout=30, operation_timeout=30)
    for tp, future in futures.items():
        try:
            future.result(timeout=90)
        except (KafkaException, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise DlqProblem(
                f"delete_records failed on {topic}[{tp.partition}]: {reason}"
            ) from None
    with engine.begin() as conn:
        for cut in cuts:
            for table in (dlq_replayed_records, dlq_purged_records, dlq_entries):
                conn.execute(
                    delete(table).where(
                        table.c.dlq_topic == topic,
                        table.c.dlq_partition == cut.partition,
                        table.c.dlq_offset < cut.cut,
                    )
                )
    return sum(c.count for c in cuts)


def hide_records(engine: Engine, records: list[DlqRecord], actor: str | None = None) -> int:
    """Mark records purged (list, summary and replay skip them); how many were new."""
    if not records:
        return 0
    rows = [
        {
            "dlq_topic": r.topic,
            "dlq_partition": r.partition,
            "dlq_offset": r.offset,
            "who": (actor or who())[:200],
        }
        for r in records
    ]
    stmt = (
        pg_insert(dlq_purged_records)
        .on_conflict_do_nothing()
        .returning(dlq_purged_records.c.dlq_offset)
    )
    with engine.begin() as conn:
        return len(conn.execute(stmt, rows).all())
