"""Background chores of a running application: pool and DLQ-depth gauges, pruning.

Pruning deletes in small batches (10,000 rows, each its own short transaction) so it never
holds locks that processing waits on. A dedup row older than DEDUP_RETENTION_DAYS no longer
protects against a redelivery of its event: settings.py refuses a retention shorter than any
topic keeps a record. An event record (the audit row `stats` and the scenarios read) goes
after EVENT_RECORD_RETENTION_DAYS, counted from its last update.
"""

from __future__ import annotations

import threading
import time

import structlog
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import TextClause, text
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops import metrics
from retry_topics.naming import topic_names
from storage import claims
from storage.dlq_tables import resolved_counts

log = structlog.get_logger(__name__)


PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 10_000
DLQ_DEPTH_EVERY_S = 5.0


_PRUNE_DEDUP = text(
    "DELETE FROM dedup_keys WHERE ctid IN (SELECT ctid FROM dedup_keys "
    "WHERE processed_at < now() - make_interval(days => :days) LIMIT :batch)"
)
# first_seen_at is indexed (migration 0004) and never updated, so the index costs the writer's
# upserts no HOT updates; updated_at keeps a row whose event was replayed lately. A row updated
# between the choice and the delete has a new ctid and is left alone.
_PRUNE_EVENT_RECORDS = text(
    "DELETE FROM event_records WHERE ctid IN (SELECT ctid FROM event_records "
    "WHERE first_seen_at < now() - make_interval(days => :days) "
    "AND updated_at < now() - make_interval(days => :days) LIMIT :batch)"
)


def _prune(engine: Engine, statement: TextClause, retention_days: int, batch: int) -> int:
    deleted = 0
    while True:
        with engine.begin() as conn:
            rowcount = conn.execute(statement, {"days": retention_days, "batch": batch}).rowcount
        deleted += rowcount
        if rowcount < batch:
            return deleted


def prune_dedup_rows(engine: Engine, retention_days: int, batch: int = PRUNE_BATCH) -> int:
    return _prune(engine, _PRUNE_DEDUP, retention_days, batch)


def prune_event_records(engine: Engine, retention_days: int, batch: int = PRUNE_BATCH) -> int:
    return _prune(engine, _PRUNE_EVENT_RECORDS, retention_days, batch)


def prune_old_rows(engine: Engine, settings: Settings) -> dict[str, int]:
    """Rows deleted per table, each table by its retention setting."""
    return {
        "event_records": prune_event_records(engine, settings.event_record_retention_days),
        "dedup_keys": prune_dedup_rows(engine, settings.dedup_retention_days),
        "effect_claims": prune_expired_claims(engine),
    }


def prune_expired_claims(engine: Engine, batch: int = PRUNE_BATCH) -> int:
    """Expired effect claims (storage/claims.py): one per email or look-up, kept no longer."""
    deleted = 0
    while True:
        with engine.begin() as conn:
            rowcount = claims.prune_expired(conn, batch)
        deleted += rowcount
        if rowcount < batch:
            return deleted


class Housekeeping:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)
        self._watermarks: Consumer | None = None
        metrics.DB_POOL_SIZE.set(settings.db_pool_size)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._watermarks is not None:
            self._watermarks.close()

    def _export_dlq_depth(self) -> None:
        """Unresolved records in each DLQ: retained (high minus low watermark; a time purge
        raises the low) minus those replayed, redriven or hidden since (storage/dlq_tables)."""
        if self._watermarks is None:
            self._watermarks = Consumer(
                {
                    **self.settings.kafka_common_config(),
                    "group.id": f"{self.settings.topic_prefix}-events.housekeeping",
                }
            )
        for event_type in self.settings.event_types:
            topic = topic_names(self.settings, event_type).dlq
            metadata = self._watermarks.list_topics(topic, timeout=5)
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                continue
            depth = 0
            lows: dict[int, int] = {}
            for partition in metadata.topics[topic].partitions:
                low, high = self._watermarks.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5
                )
                lows[partition] = low
                depth += max(0, high - low)
            resolved = resolved_counts(self.engine, topic, lows) if depth else 0
            metrics.DLQ_DEPTH.labels(event_type).set(max(0, depth - resolved))

    def _loop(self) -> None:
        next_prune = time.monotonic() + 30
        next_depth = time.monotonic()
        while not self._stop.wait(1.0):
            if time.monotonic() >= next_depth:
                next_depth = time.monotonic() + DLQ_DEPTH_EVERY_S
                try:
                    self._export_dlq_depth()
                except Exception as exc:
                    log.warning("dlq_depth_failed", error=str(exc))
            pool = self.engine.pool
            checked_out = getattr(pool, "checkedout", None)
            if checked_out is not None:
                metrics.DB_POOL_IN_USE.set(checked_out())
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                try:
                    deleted = prune_old_rows(self.engine, self.settings)
                    if any(deleted.values()):
                        log.info("old_rows_pruned", **deleted)
                except Exception as exc:
                    log.warning("prune_failed", error=str(exc))
