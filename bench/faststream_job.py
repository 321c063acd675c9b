"""The throughput benchmark's job written on FastStream (confluent broker), the way its docs teach.

The job is the one qchem-events does per event: consume the Report topic in a consumer group,
decode and validate with `schemas.codec.decode`, record the event exactly once in PostgreSQL
(a dedup row with ON CONFLICT DO NOTHING, then the event record, in one transaction) and
commit the offset only once that transaction is durable.

* faststream       - a per-message subscriber: one transaction and one offset commit per event.
* faststream-batch - `batch=True, max_records=500`: one transaction and one commit per batch.

FastStream idioms used (0.7): a custom codec is the documented place for a wire format of one's
own; `AckPolicy.NACK_ON_ERROR` commits after the handler returns and seeks back when it raises
(plain `ACK` would commit past a failed write; `max_workers` is refused with manual commits);
a sync handler, which FastStream runs in its thread pool so the blocking transaction (psycopg2,
the app's driver, so that only the framework differs) does not stall the event loop;
`serializer=None` because the codec already validated; a WARNING logger (no per-message access
logs) because the app is benchmarked at WARNING. The broker runs in-process on its own event
loop (an anyio portal): `await broker.start()` / `await broker.stop()`, without the CLI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from anyio.from_thread import start_blocking_portal
from confluent_kafka import Message
from faststream import AckPolicy
from faststream.confluent import KafkaBroker
from faststream.confluent.annotations import KafkaMessage
from faststream.message import StreamMessage
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from bench import common as c
from bench.backlog import AppRun, CommitWatcher, last_record_at, wait_committed, warn_if_short
from schemas.codec import decode
from schemas.events import Event
from storage.models import dedup_keys, event_records

VARIANTS = ("faststream", "faststream-batch")
DESCRIPTIONS = {
    "faststream": "FastStream 0.7 confluent subscriber, 1 txn + commit per event",
    "faststream-batch": "FastStream 0.7 confluent batch subscriber (500), 1 txn + commit per batch",
}
TARGET = 3.0  # the issue's: qchem-events at least 3x FastStream doing the same job
BATCH_MAX = 500  # as the raw loop's consume(500)


class ReportCodec:
    """Decodes with the app's own validation (FastStream's CodecProto + BatchCodecProto)."""

    async def decode(self, msg: StreamMessage[Any]) -> Event:
        raw: Message = msg.raw_message
        return decode(raw.value(), raw.headers(), c.EVENT_TYPE)  # type: ignore[arg-type]

    async def decode_batch(self, msg: StreamMessage[Any]) -> list[Event]:
        raws: Sequence[Message] = msg.raw_message
        return [decode(r.value(), r.headers(), c.EVENT_TYPE) for r in raws]  # type: ignore[arg-type]

    async def encode(self, msg: Any, serializer: Any = None) -> tuple[bytes, str | None]:
        raise NotImplementedError("the benchmark only consumes")

    async def encode_batch(
        self, msgs: Any, serializer: Any = None
    ) -> list[tuple[bytes, str | None]]:
        raise NotImplementedError("the benchmark only consumes")


class RecordWriter:
    """The exactly-once record: the same tables and conflict rules as storage.writer."""

    def __init__(self, engine: Engine, group: str) -> None:
        self.engine, self.group = engine, group
        self.transactions = 0
        self.events = 0
        self.succeeded = 0  # fresh dedup rows, counted after the commit (the app's metric)
        self._dedup = (
            insert(dedup_keys)
            .on_conflict_do_nothing()
            .returning(dedup_keys.c.origin_partition, dedup_keys.c.origin_offset)
        )
        self._record = insert(event_records).on_conflict_do_nothing()

    def write(self, records: Iterable[tuple[Message, Event]]) -> None:
        pairs = list(records)
        keys = [
            {
                "consumer_group": self.group,
                "origin_topic": raw.topic(),
                "origin_partition": raw.partition(),
                "origin_offset": raw.offset(),
                "event_id": event.event_id,
            }
            for raw, event in pairs
        ]
        now = datetime.now(UTC)  # updated_at: the clock the benchmark times records by
        with self.engine.begin() as conn:
            fresh = {tuple(row) for row in conn.execute(self._dedup, keys)}
            rows = [
                {
                    **key,
                    "event_type": event.event_type,
                    "event_key": event.key[:500],
                    "status": "succeeded"
                    if (key["origin_partition"], key["origin_offset"]) in fresh
                    else "duplicate",
                    "updated_at": now,
                }
                for key, (_raw, event) in zip(keys, pairs, strict=True)
            ]
            conn.execute(self._record, rows)
        self.succeeded += len(fresh)
        self.transactions += 1
        self.events += len(pairs)


def build_broker(
    bootstrap: str,
    topic: str,
    group: str,
    writer: RecordWriter,
    batch: bool,
    on_assign: Callable[..., None],
) -> KafkaBroker:
    logger = logging.getLogger("bench.faststream")
    logger.setLevel(logging.WARNING)  # as the app's: no per-message access logs
    broker = KafkaBroker(bootstrap, serializer=None, logger=logger)
    options: dict[str, Any] = {
        "group_id": group,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "codec": ReportCodec(),
        "on_assign": on_assign,
    }
    if batch:

        @broker.subscriber(topic, batch=True, max_records=BATCH_MAX, **options)
        def handle_batch(events: list[Event], msg: KafkaMessage) -> None:
            raws = cast(tuple[Message, ...], msg.raw_message)  # a batch: the tuple
            writer.write(zip(raws, events, strict=True))

    else:

        @broker.subscriber(topic, **options)
        def handle(event: Event, msg: KafkaMessage) -> None:
            writer.write([(cast(Message, msg.raw_message), event)])

    return broker


def run(
    variant: str,
    bootstrap: str,
    topic: str,
    group: str,
    engine: Engine,
    n: int,
    limits: tuple[float, float],
) -> AppRun:
    """Consume the `n` records of `topic` with FastStream; timed from the first assignment."""
    assigned: list[tuple[float, float]] = []
    ready = threading.Event()

    def on_assign(_consumer: Any, _partitions: Any) -> None:
        if not assigned:
            assigned.append((time.perf_counter(), time.time()))
            ready.set()

    writer = RecordWriter(engine, group)
    broker = build_broker(bootstrap, topic, group, writer, variant == "faststream-batch", on_assign)
    watcher = CommitWatcher(bootstrap, group, topic)
    try:
        with start_blocking_portal() as portal:
            portal.call(broker.start)
            try:
                if not ready.wait(timeout=60):
                    raise TimeoutError("FastStream got no partitions within 60 s")
                t0, t0_wall = assigned[0]

                def label() -> str:
                    return f"{group}: {c.record_count(engine, group)}/{n} records"

                committed_s = wait_committed(watcher, n, t0, limits, label)
            finally:
                portal.call(broker.stop)
    finally:
        watcher.close()
    last = last_record_at(engine, group)
    statuses = c.record_statuses(engine, group)
    warn_if_short(group, statuses, n)
    return AppRun(
        seconds=committed_s if last is None else last - t0_wall,
        committed_seconds=committed_s,
        succeeded=writer.succeeded,
        statuses=statuses,
        write_batch_mean=writer.events / writer.transactions if writer.transactions else None,
    )


def versus(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median rate of every app variant over every FastStream variant (the issue's 3x)."""
    rates = {v["name"]: v["median_rate"] for v in variants if v["median_rate"]}
    return [
        {
            "app": app,
            "faststream": other,
            "ratio": rates[app] / rates[other],
            "target": TARGET,
            "met": rates[app] / rates[other] >= TARGET,
        }
        for app in rates
        if app.startswith("app-c")
        for other in rates
        if other in VARIANTS
    ]


def render_versus(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    table = [
        [r["app"], r["faststream"], f"{r['ratio']:.2f}x", "yes" if r["met"] else "NO"] for r in rows
    ]
    headers = ["app", "vs", "app / faststream", f"met (>= {TARGET:g}x)"]
    return "\n\nqchem-events against FastStream (median ev/s)\n" + c.format_table(headers, table)
