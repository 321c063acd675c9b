"""What the DLQ runbook changes: replays and purges, and their marks in PostgreSQL.

Replay (`qchem-events dlq replay`) sends DLQ records back to their type's MAIN topic with the
key, the original value and the source's own headers (content-type ...), and the origin
identity headers unchanged - so the dedup key is unchanged and an event whose effect was
applied meanwhile is not applied again (consumers/intake.py `_read_replay_headers`) - plus
`qchem-replay-count` = previous + 1 and `qchem-replay-id`. Records are produced in chunks
with an idempotent producer and marked in `dlq_replayed_records` only once the broker has
confirmed their delivery; a second identical replay therefore sends nothing. A replayed
record that fails again comes back to the DLQ as a new record carrying its replay count.

Purges are in ops/dlq_purge.py.
"""

from __future__ import annotations

import getpass
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from common import tracing
from common.settings import Settings
from ops.dlq import DlqProblem, DlqUsageError, Filters, dlq_topic, main_topic, rdkafka_log, read_dlq
from retry_topics import headers as rh
from retry_topics.dlq_record import DlqRecord
from storage.dlq_tables import dlq_purged_records, dlq_replayed_records, dlq_replays
from storage.secrets import replay_signing_key

CHUNK_MAX = 500  # records produced, confirmed and marked together
DELIVERY_TIMEOUT_S = 60.0
Marks = dict[tuple[int, int], dict[str, Any]]


def who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER") or "unknown"


MIN_RATE = 0.01  # one record every 100 s: slower is a mistake, not a plan
MAX_RATE = 1_000_000.0


def parse_rate(text: str) -> float:
    """`100`, `100/s` or `2.5/s` -> records per second."""
    raw = text.strip().removesuffix("/s")
    try:
        rate = float(raw)
    except ValueError:
        raise DlqUsageError(f"--rate: expected N or N/s such as 100/s, got {text!r}") from None
    # Bounded below too: 1e-300/s passed "above 0", then 1/rate overflowed mid-replay.
    if not MIN_RATE <= rate <= MAX_RATE:  # also false for nan
        raise DlqUsageError(
            f"--rate must be from {MIN_RATE} to {MAX_RATE:.0f} records per second, got {text!r}"
        )
    return rate


# -- marks in PostgreSQL -----------------------------------------------------------------------


def _marks(engine: Engine, table: Any, topic: str) -> Marks:
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.dlq_topic == topic)).mappings().all()
    except sa_exc.ProgrammingError:
        raise DlqProblem(f"table {table.name} is missing: run `qchem-events migrate`") from None
    return {(row["dlq_partition"], row["dlq_offset"]): dict(row) for row in rows}


def replayed_positions(engine: Engine, topic: str) -> Marks:
    """(partition, offset) -> {"replay_id", "replayed_at"} of the last replay that sent it."""
    return {
        pos: {"replay_id": str(row["replay_id"]), "replayed_at": row["replayed_at"].isoformat()}
        for pos, row in _marks(engine, dlq_replayed_records, topic).items()
    }


@dataclass(slots=True)
class Selection:
    event_type: str
    topic: str
    records: list[DlqRecord]  # visible (not purged) and matching, oldest first
    replayed: Marks
    hidden: int  # records hidden by a filter purge, left out


def select_records(
    settings: Settings, engine: Engine, event_type: str, filters: Filters, *, limited: bool = True
) -> Selection:
    """The type's DLQ records matching `filters`, without the purged ones."""
    topic = dlq_topic(settings, event_type)
    purged = set(_marks(engine, dlq_purged_records, topic))
    every = read_dlq(settings, event_type, filters.partition)
    visible = [r for r in every if r.position not in purged]
    chosen = (filters if limited else replace(filters, limit=None)).apply(visible)
    return Selection(
        event_type, topic, chosen, replayed_positions(engine, topic), len(every) - len(visible)
    )


# -- replay ------------------------------------------------------------------------------------


def replay_headers(record: DlqRecord, replay_id: uuid.UUID, key: bytes | None) -> rh.Headers:
    """The source's own headers, the origin identity (when valid), the replay headers, signed
    with the application's replay key (storage/secrets.py) so the listener believes them."""
    return rh.redrive_headers(record.headers, replay_id=str(replay_id), key=key)


@dataclass(slots=True)
class ReplayPlan:
    event_type: str
    target: str  # the main topic
    to_send: list[DlqRecord]
    skipped: list[DlqRecord]  # replayed before (and not --include-replayed)
    hidden: int


def plan_replay(
    settings: Settings,
    engine: Engine,
    event_type: str,
    filters: Filters,
    *,
    include_replayed: bool,
) -> ReplayPlan:
    chosen = select_records(settings, engine, event_type, filters, limited=False)
    skipped = (
        [] if include_replayed else [r for r in chosen.records if r.position in chosen.replayed]
    )
    to_send = [r for r in chosen.records if include_replayed or r.position not in chosen.replayed]
    if filters.limit is not None:
        to_send = to_send[: filters.limit]
    return ReplayPlan(event_type, main_topic(settings, event_type), to_send, skipped, chosen.hidden)


@dataclass(slots=True)
class ReplayOutcome:
    replay_id: uuid.UUID
    dry_run: bool
    replayed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # refs of records not confirmed

    def as_json(self, plan: ReplayPlan) -> dict[str, Any]:
        return {
            "replay_id": str(self.replay_id),
            "dry_run": self.dry_run,
            "event_type": plan.event_type,
            "target_topic": plan.target,
            "replayed": self.replayed,
            "would_replay": len(plan.to_send) if self.dry_run else None,
            "skipped_already_replayed": self.skipped,
            "failed": len(self.failed),
            "failed_records": self.failed,
            "records": [r.ref for r in plan.to_send],
        }


def run_replay(
    settings: Settings,
    engine: Engine,
    plan: ReplayPlan,
    *,
    filter_json: dict[str, Any],
    rate: float,
    dry_run: bool,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayOutcome:
    outcome = ReplayOutcome(uuid.uuid4(), dry_run, skipped=len(plan.skipped))
    with engine.begin() as conn:
        conn.execute(
            insert(dlq_replays).values(
                id=outcome.replay_id,
                who=who()[:200],
                filter=filter_json,
                dry_run=dry_run,
                count=len(plan.to_send) if dry_run else 0,
                finished_at=datetime.now(UTC) if dry_run else None,
            )
        )
    if dry_run or not plan.to_send:
        if not dry_run:
            _finish(engine, outcome)
        return outcome
    producer = replay_producer(settings)
    pacer = Pacer(rate)
    key = replay_signing_key(engine)
    try:
        for i in range(0, len(plan.to_send), pacer.chunk_size):
            chunk = plan.to_send[i : i + pacer.chunk_size]
            delivered, failed = send_chunk(
                producer,
                plan.target,
                chunk,
                pacer,
                lambda r: replay_headers(r, outcome.replay_id, key),
            )
            outcome.failed += [r.ref for r in failed]
            _mark_replayed(engine, delivered, outcome.replay_id)
            outcome.replayed += len(delivered)
            if on_progress is not None:
                on_progress(len(chunk))
    finally:
        _finish(engine, outcome)
    return outcome


def replay_producer(settings: Settings) -> Producer:
    return Producer(
        {
            **settings.kafka_common_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            "logger": rdkafka_log,
        }
    )


class Pacer:
    """Keeps a replay at `rate` records per second; chunks no larger than a second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.chunk_size = max(1, min(CHUNK_MAX, int(rate)))
        self.started = time.monotonic()
        self.sent = 0

    def wait(self) -> None:
        delay = self.started + self.sent / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.sent += 1


def send_chunk(
    producer: Producer,
    target: str,
    chunk: list[DlqRecord],
    pacer: Pacer,
    headers: Callable[[DlqRecord], rh.Headers],
) -> tuple[list[DlqRecord], list[DlqRecord]]:
    """Produce a chunk at the pacer's rate and wait for the broker: (confirmed, failed)."""
    reports: dict[int, KafkaError | None] = {}
    for n, record in enumerate(chunk):
        pacer.wait()
        _produce(producer, target, record, headers(record), reports, n)
    if producer.flush(DELIVERY_TIMEOUT_S) > 0:
        producer.purge(in_queue=True, in_flight=False)
        producer.flush(5)
    confirmed = [n in reports and reports[n] is None for n in range(len(chunk))]
    return (
        [r for r, ok in zip(chunk, confirmed, strict=True) if ok],
        [r for r, ok in zip(chunk, confirmed, strict=True) if not ok],
    )


def _produce(
    producer: Producer,
    topic: str,
    record: DlqRecord,
    headers: rh.Headers,
    reports: dict[int, KafkaError | None],
    n: int,
) -> None:
    def delivered(err: KafkaError | None, _msg: Message) -> None:
        reports[n] = err

    # The replay hop's span, child of the dead letter's trace; it replaces the traceparent.
    with tracing.hop(headers, topic):
        while True:
            try:
                producer.produce(
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=delivered,
                )
                producer.poll(0)
                return
            except BufferError:  # local queue full: let delivery reports drain it
                producer.poll(0.1)


def _mark_replayed(engine: Engine, records: list[DlqRecord], replay_id: uuid.UUID) -> None:
    if not records:
        return
    rows = [
        {
            "dlq_topic": r.topic,
            "dlq_partition": r.partition,
            "dlq_offset": r.offset,
            "replay_id": replay_id,
            "replayed_at": datetime.now(UTC),
        }
        for r in records
    ]
    stmt = pg_insert(dlq_replayed_records)
    stmt = stmt.on_conflict_do_update(
        index_elements=["dlq_topic", "dlq_partition", "dlq_offset"],
        set_={
            "replay_id": stmt.excluded.replay_id,
            "replayed_at": stmt.excluded.replayed_at,
            "times": dlq_replayed_records.c.times + 1,  # the per-record replay cap counts these
        },
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)


def _finish(engine: Engine, outcome: ReplayOutcome) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(dlq_replays)
            .where(dlq_replays.c.id == outcome.replay_id)
            .values(finished_at=datetime.now(UTC), count=outcome.replayed)
        )
