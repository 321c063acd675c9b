"""Shared helpers of the benchmarks: datasets, topics, producing, the database, statistics.

Every measured round reads its own freshly produced copy of the same pre-encoded dataset from
topics under a fresh prefix (`bench<random>`), because the application derives its consumer
group from the prefix: a new prefix is the only way to make it read everything again.
"""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from common.settings import Settings, load_settings, redact_url
from devtools.kafka import kafka_config
from ops.topics import create_topics
from retry_topics.naming import TopicNames, topic_names
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events

EVENT_TYPE = "Report"
PARTITIONS = 6
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+psycopg2://qchem:qchem@127.0.0.1:5432/qchem_test"

Record = tuple[bytes, bytes]  # key, value


class ReportHandler:
    """A benchmark's Report handler: no dependency (no breaker, no pre-check), and nothing
    of its own in the database (`apply` does nothing). Subclasses say what `perform` does."""

    event_type: ClassVar[str] = EVENT_TYPE
    dependency: ClassVar[str | None] = None

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        pass


@dataclass
class RoundResult:
    """One round of a variant that drains a backlog (bench.throughput, bench.scaling)."""

    round: int
    events: int
    processed: int
    seconds: float
    rate: float
    produce_seconds: float = 0.0
    committed_seconds: float | None = None  # app: until committed offsets reached the end
    committed_rate: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    write_batch_mean: float | None = None  # app: events per database transaction


def warn(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- dataset, settings, topics -------------------------------------------------------------


def dataset(count: int, keys: int = 1000) -> list[Record]:
    """`count` valid Report events (1000 distinct keys), encoded once and reused every round."""
    return [
        (event.key.encode(), encode_json(event))
        for event in sample_events(EVENT_TYPE, count, keys=keys)
    ]


def new_prefix() -> str:
    return f"bench{secrets.token_hex(5)}"


def bench_settings(bootstrap: str, database_url: str, prefix: str) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=database_url,
        topic_prefix=prefix,
        topic_partitions=PARTITIONS,
        event_types=(EVENT_TYPE,),
    ).model_copy(update={"metrics_port": 0})  # a free port; METRICS_PORT=0 is refused


def names_of(settings: Settings) -> TopicNames:
    return topic_names(settings, EVENT_TYPE)


@dataclass
class Prefix:
    """A fresh topic prefix: its settings, topic names, and the consumer groups to delete."""

    settings: Settings
    names: TopicNames
    groups: list[str] = field(default_factory=list)


@contextmanager
def fresh_prefix(args: Any) -> Iterator[Prefix]:
    """A new prefix with its topics created (not timed); afterwards its topics and the groups
    the caller added to `groups` are deleted, unless --keep-topics."""
    settings = bench_settings(args.bootstrap, args.database_url, new_prefix())
    topics = prepare_topics(settings)
    prefix = Prefix(settings, names_of(settings))
    try:
        yield prefix
    finally:
        if not getattr(args, "keep_topics", False):
            delete_topics(args.bootstrap, topics, prefix.groups)


def prepare_topics(settings: Settings) -> list[str]:
    """Create the prefix's topics (main, retry tiers, DLQ); their names."""
    names = [row.name for row in create_topics(settings)]
    # The broker's metadata can lag the creation by a moment: wait until it shows them all.
    admin = AdminClient(kafka_config(settings.kafka_bootstrap_servers))
    deadline = time.monotonic() + 30
    while True:
        topics = admin.list_topics(timeout=10).topics
        short = [n for n in names if n not in topics or len(topics[n].partitions) != PARTITIONS]
        if not short:
            return names
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without {PARTITIONS} partitions after 30 s: {short}")
        time.sleep(0.2)


def delete_topics(bootstrap: str, topics: Sequence[str], groups: Sequence[str]) -> None:
    """Best effort: a benchmark must not leave gigabytes of topics on a shared broker."""
    admin = AdminClient(kafka_config(bootstrap))
    futures: dict[str, Any] = {}
    if groups:
        futures.update(admin.delete_consumer_groups(list(groups), request_timeout=15))
    if topics:
        futures.update(admin.delete_topics(list(topics), operation_timeout=30))
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except (KafkaException, TimeoutError) as exc:
            warn(f"could not delete {name}: {exc}")


# -- producing and offsets -----------------------------------------------------------------


def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Produce `records` to `topic` (keyed); seconds taken, all delivered or an error."""
    producer = Producer(
        kafka_config(
            bootstrap,
            {
                "enable.idempotence": True,
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
            },
        )
    )
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"{remaining} records undelivered, {len(failed)} failed: {failed[:3]}")
    return time.perf_counter() - started


def produce_backlog(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """`produce`, then make sure the topic holds exactly these records; seconds producing."""
    seconds = produce(bootstrap, topic, records)
    held = sum(end_offsets(bootstrap, topic).values())
    if held != len(records):
        raise RuntimeError(f"{topic} holds {held} records, expected {len(records)}")
    return seconds


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer(kafka_config(bootstrap, {"group.id": "bench-watermarks"}))
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def consume_timed(
    bootstrap: str,
    topic: str,
    extra: dict[str, Any],
    n: int,
    timeout: float,
    label: str,
    fetch: Callable[[Consumer], list[Message]],
    handle: Callable[[Consumer, Message], None],
) -> int:
    """Subscribe, `fetch` until `n` records are handled, and return the nanoseconds from the
    assignment to the last one: the loop the hand-written baselines share (bench/throughput.py
    raw, bench/scaling.py one-at-a-time). Non-fatal errors are skipped; `label` names the loop
    in the TimeoutError after `timeout` seconds."""
    assigned: list[int] = []

    def on_assign(_consumer: Consumer, _partitions: list[Any]) -> None:
        if not assigned:
            assigned.append(time.perf_counter_ns())

    consumer = Consumer(kafka_config(bootstrap, {"auto.offset.reset": "earliest", **extra}))
    consumer.subscribe([topic], on_assign=on_assign)
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label} read {count}/{n} records in {timeout}s")
            for message in fetch(consumer):
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                handle(consumer, message)
                count += 1
        return time.perf_counter_ns() - assigned[0]
    finally:
        consumer.close()


# -- database ------------------------------------------------------------------------------


def truncate(engine: Engine) -> None:
    """Empty dedup_keys and event_records; a warning (not a hang) if someone holds them."""
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text("TRUNCATE dedup_keys, event_records"))
    except Exception as exc:
        warn(f"TRUNCATE failed, tables not emptied: {str(exc).splitlines()[0]}")


def record_count(engine: Engine, group: str) -> int:
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM event_records WHERE consumer_group = :g")
        return int(conn.execute(query, {"g": group}).scalar_one())


def record_statuses(engine: Engine, group: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, count(*) FROM event_records WHERE consumer_group = :g "
                "GROUP BY status"
            ),
            {"g": group},
        )
        return {str(status): int(n) for status, n in rows}


def forget_rows(database_url: str, groups: list[str]) -> None:
    """The bench's own rows only: the database may be shared with tests and other runs."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for table in ("event_records", "dedup_keys"):
                query = text(f"DELETE FROM {table} WHERE consumer_group = ANY(:g)")
                conn.execute(query, {"g": groups})
    finally:
        engine.dispose()


def prepared_engine(database_url: str, log_level: str = "WARNING") -> Engine:
    """What every benchmark starts with: quiet logs, the schema migrated, an engine on it."""
    from ops.logging import configure
    from storage.db import migrate

    configure(log_level)
    migrate(database_url)
    return create_engine(database_url, pool_pre_ping=True)


def pg_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version()")).scalar_one())


# -- reporting -----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def machine_info(engine: Engine, database_url: str, bootstrap: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "postgresql": pg_version(engine),
        "database": redact_url(database_url),
        "bootstrap": bootstrap,
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += [
        "  ".join(
            c.rjust(w) if (i and c[:1].isdigit()) or c in ("-", "") else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(line.rstrip() for line in out)


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def round_rates(variant: dict[str, Any], rounds: int) -> list[str]:
    """A variant's rate in each round, as table cells (blank for a round it did not run)."""
    rates = [fmt_rate(r["rate"]) for r in variant["rounds"]]
    return [*rates, *([""] * (rounds - len(rates)))]


def machine_lines(report: dict[str, Any]) -> list[str]:
    """The report header every benchmark prints: command, machine, versions, services."""
    m = report["machine"]
    return [
        f"command:  {report['command']}",
        f"machine:  nproc={m['nproc']} (usable {m['cpus_usable']}), {m['platform']}",
        f"          loadavg start {m['loadavg_at_start']} end {m['loadavg_at_end']}",
        f"software: Python {m['python']}, confluent-kafka {m['confluent_kafka']}, "
        f"librdkafka {m['librdkafka']}",
        f"          {m['postgresql']}",
        f"services: kafka {m['bootstrap']}, {m['database']}",
    ]


APP_SETTING_NAMES = (
    "concurrency",
    "max_in_flight",
    "write_batch_max",
    "db_writers_per_listener",
    "db_pool_size",
    "commit_interval_s",
)


def app_settings_of(args: Any, *varied: str) -> dict[str, Any]:
    """The settings that shape the app's throughput and latency, for the report (the app's
    settings come from the environment, as in production); `varied` ones left out."""
    settings = bench_settings(args.bootstrap, args.database_url, "bench")
    return {k: getattr(settings, k) for k in APP_SETTING_NAMES if k not in varied}
