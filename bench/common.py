"""Shared helpers of the benchmarks: datasets, topics, producing, the database, statistics.

Every measured round reads its own freshly produced copy of the same pre-encoded dataset from
topics under a fresh prefix (`bench<random>`), because the application derives its consumer
group from the prefix: a new prefix is the only way to make it read everything again.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from common.settings import Settings, load_settings, redact_url
from ops.topics import create_topics
from retry_topics.naming import TopicNames, topic_names
from schemas.codec import encode_json
from schemas.samples import sample_events

EVENT_TYPE = "Report"
PARTITIONS = 6
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+psycopg2://qchem:qchem@127.0.0.1:5432/qchem_test"

Record = tuple[bytes, bytes]  # key, value


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


def prepare_topics(settings: Settings) -> list[str]:
    """Create the prefix's topics (main, retry tiers, DLQ); their names."""
    names = [row.name for row in create_topics(settings)]
    # The broker's metadata can lag the creation by a moment: wait until it shows them all.
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
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
    admin = AdminClient({"bootstrap.servers": bootstrap})
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
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
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


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


class CommitWatcher:
    """Reads a group's committed offsets of one topic without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def committed(self) -> int:
        """Records committed over all partitions (0 for a partition with no commit yet)."""
        try:
            offsets = self._consumer.committed(self._partitions, timeout=5)
        except KafkaException:
            return -1
        return sum(max(tp.offset, 0) for tp in offsets)

    def close(self) -> None:
        self._consumer.close()


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


def prepared_engine(database_url: str) -> Engine:
    """What every benchmark starts with: quiet logs, the schema migrated, an engine on it."""
    from ops.logging import configure
    from storage.db import migrate

    configure("WARNING")
    migrate(database_url)
    return create_engine(database_url, pool_pre_ping=True)


def pg_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version()")).scalar_one())


# -- profiling (pyinstrument samples one thread: one profiler per thread) -----------------------


class ThreadProfiler:
    """Profiles every thread started while active, merged by role (listener, worker, writer)."""

    def __init__(self) -> None:
        self._original = threading.Thread.run
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sessions: list[tuple[str, Any]] = []

    def start(self) -> None:
        from pyinstrument import Profiler

        original, lock, threads, sessions = (
            self._original,
            self._lock,
            self._threads,
            self._sessions,
        )

        def run(thread: threading.Thread) -> None:
            profiler = Profiler(interval=0.002, async_mode="disabled")
            with lock:
                threads.append(thread)
            profiler.start()
            try:
                original(thread)
            finally:
                session = profiler.stop()
                with lock:
                    sessions.append((thread.name, session))

        threading.Thread.run = run  # type: ignore[method-assign,assignment]

    def write(self, directory: Path, prefix: str) -> None:
        from pyinstrument.renderers import ConsoleRenderer
        from pyinstrument.session import Session

        threading.Thread.run = self._original  # type: ignore[method-assign]
        for thread in self._threads:
            thread.join(timeout=10)
        roles: dict[str, Any] = {}
        with self._lock:
            for name, session in self._sessions:
                role = re.sub(r"[_-]\d+$", "", name.replace(prefix, "<prefix>"))
                roles[role] = Session.combine(roles[role], session) if role in roles else session
        directory.mkdir(parents=True, exist_ok=True)
        for role, session in roles.items():
            stem = re.sub(r"[^A-Za-z0-9.-]+", "_", role)
            for flat, suffix in ((False, "tree"), (True, "flat")):
                renderer = ConsoleRenderer(unicode=False, color=False, flat=flat, short_mode=False)
                (directory / f"{stem}.{suffix}.txt").write_text(renderer.render(session))
        warn(f"profiles of {sorted(roles)} written to {directory}")


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


def render_text(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        "qchem-events throughput benchmark",
        f"command:  {report['command']}",
        f"machine:  nproc={m['nproc']} (usable {m['cpus_usable']}), {m['platform']}",
        f"          loadavg start {m['loadavg_at_start']} end {m['loadavg_at_end']}",
        f"software: Python {m['python']}, confluent-kafka {m['confluent_kafka']}, "
        f"librdkafka {m['librdkafka']}",
        f"          {m['postgresql']}",
        f"services: kafka {m['bootstrap']}, {m['database']}",
        f"dataset:  {cfg['events']:,} Report events ({cfg['keys']} keys, "
        f"{cfg['partitions']} partitions) per round, {cfg['rounds']} round(s), interleaved",
        "app:      " + ", ".join(f"{k}={v}" for k, v in cfg["app_settings"].items()),
        "",
    ]
    rounds = cfg["rounds"]
    headers = ["variant", *(f"round {i + 1}" for i in range(rounds)), "median ev/s"]
    headers.append(f"vs {report['baseline']}")
    rows = []
    for v in report["variants"]:
        rates = [fmt_rate(r["rate"]) for r in v["rounds"]]
        ratio = v["ratio_to_baseline"]
        rows.append(
            [
                v["name"],
                *rates,
                *([""] * (rounds - len(rates))),
                fmt_rate(v["median_rate"]),
                "-" if ratio is None else f"{ratio:.1%}",
            ]
        )
    lines += ["events/s (to the last durable outcome for app-*)", format_table(headers, rows)]
    detail = [
        [
            v["name"],
            f"{v['median_seconds']:.2f}",
            fmt_rate(v["median_committed_rate"]),
            f"{v['median_produce_seconds']:.2f}",
            "-" if v["median_write_batch"] is None else f"{v['median_write_batch']:.1f}",
            v["description"],
        ]
        for v in report["variants"]
    ]
    lines += [
        "",
        format_table(
            ["variant", "median s", "ev/s to committed", "produce s", "events/txn", "what"],
            detail,
        ),
    ]
    lines += [f"STALLED and run again: {stall}" for stall in report["stalls"]]
    return "\n".join(lines)


# -- running the whole app over a backlog (bench/scaling.py, bench/overhead.py) -------------


def last_record_at(engine: Engine, group: str) -> float | None:
    """Wall-clock time of the group's last event record (stamped just before its commit)."""
    with engine.connect() as conn:
        query = text("SELECT max(updated_at) FROM event_records WHERE consumer_group = :g")
        last = conn.execute(query, {"g": group}).scalar_one()
        return None if last is None else float(last.timestamp())


def run_app_backlog(
    settings: Settings, engine: Engine, handler: Any, n: int, timeout: float, stall_s: float
) -> dict[str, Any]:
    """Run the App with `handler` over a backlog of `n` records already in the main topic.

    Timed from partition assignment to the last event record written (`seconds`); the time
    until the committed offsets reach the end (`committed_seconds`, polled every 0.2 s, so
    coarser and including the commit interval) is returned too, with the record statuses and
    the successes counted by the app's own metric (which no TRUNCATE by a test can undo).
    """
    from prometheus_client import REGISTRY

    from ops.app import App  # the bench helpers above must not need the whole app

    labels = {"event_type": EVENT_TYPE, "outcome": "success"}
    before = REGISTRY.get_sample_value("qchem_events_processed_total", labels) or 0.0

    names = names_of(settings)
    app = App(settings, handlers={EVENT_TYPE: handler})
    watcher = CommitWatcher(settings.kafka_bootstrap_servers, names.group, names.main)
    try:
        app.start()
        for listener in app.listeners:
            if not listener.assigned.wait(timeout=60):
                raise TimeoutError("the app got no partitions within 60 s")
        t0, t0_wall = time.perf_counter(), time.time()
        progress = (0, t0)  # committed offsets, when they last moved
        while True:
            time.sleep(0.2)
            if app.failed.is_set():
                raise RuntimeError("a listener crashed (see stderr)")
            committed, now = watcher.committed(), time.perf_counter()
            if committed >= n:
                committed_s = now - t0
                break
            if committed > progress[0]:
                progress = (committed, now)
            elif now - progress[1] > stall_s or now - t0 > timeout:
                raise TimeoutError(
                    f"{names.group}: {committed}/{n} committed after {now - t0:.0f} s, "
                    f"none for {now - progress[1]:.0f} s"
                )
        statuses = record_statuses(engine, names.group)
        last = last_record_at(engine, names.group)
    finally:
        app.stop()
        watcher.close()
    seconds = committed_s if last is None else last - t0_wall
    after = REGISTRY.get_sample_value("qchem_events_processed_total", labels) or 0.0
    return {
        "seconds": seconds,
        "committed_seconds": committed_s,
        "statuses": statuses,
        "succeeded": int(after - before),
    }


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


def app_settings_of(settings: Settings) -> dict[str, Any]:
    """The settings that shape the app's throughput and latency, for the report."""
    return {k: getattr(settings, k) for k in APP_SETTING_NAMES if hasattr(settings, k)}
