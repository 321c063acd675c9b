"""What every production scenario shares: an isolated run of the real application, measured.

A scenario runs `ops.app.App` in this process - the real listeners, pipeline, writer,
breakers and DLQ monitor - against the real broker and database, injects a real fault, and
then reads back what happened from the places an operator would: `event_records`, the retry
tiers and the DLQ. In-process rather than as a child process because the faults and the
measurements need the running application's own objects (its pool, its breakers).

Isolation is by topic prefix: a run gets `scn-<name>-<8 hex>`, hence topics and consumer
groups of its own, hence `event_records` and dedup rows of its own (they are keyed by consumer
group). The dashboard (devtools/scenarios/dashboard.py) is computed from those rows only, so a
scenario can run twice in a row, next to a running application or a test suite. At the end the
run deletes its topics, consumer groups and rows.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError, Producer
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from common.settings import Settings
from consumers.handlers.base import Handler
from devtools import harness
from devtools.kafka import kafka_config, read_to_end
from devtools.scenarios.dashboard import (
    Check,
    Outcome,
    Row,
    Timeline,
    compute_dashboard,
    failure_marks,
)
from devtools.scenarios.watch import Watch
from ops.app import App
from ops.topics import admin_client, create_topics
from retry_topics import headers as rh
from retry_topics.naming import TopicNames, topic_names
from schemas.codec import encode_json
from schemas.events import Event
from storage.db import migrate
from storage.models import event_records

RawRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]
READY_TIMEOUT_S = 60.0
FORGET_REPLAYS = (
    "WITH gone AS (DELETE FROM dlq_replayed_records WHERE dlq_topic = ANY(:dlqs) "
    "RETURNING replay_id) DELETE FROM dlq_replays WHERE id IN (SELECT replay_id FROM gone)"
)


class ScenarioError(RuntimeError):
    """The run itself could not be set up (not a failed promise: that is a failed check)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A record this run produced or read back: where it is, its exact bytes, its time."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    timestamp_ms: int = 0


class ScenarioRun:
    """One isolated run: settings, topics, the application, observation and clean-up."""

    def __init__(
        self,
        base: Settings,
        name: str,
        event_types: tuple[str, ...],
        *,
        mark_pool: bool = False,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.mark_pool = mark_pool  # put "pool fully checked out" on the timeline
        self.run_id = uuid.uuid4().hex[:8]
        self.settings = base.model_copy(
            update={
                "topic_prefix": f"scn-{name}-{self.run_id}",
                "event_types": event_types,
                "metrics_port": 0,  # never clash with an application running on :9400
                **overrides,
            }
        )
        # Entity ids (chemical ids, report ids) of this run: its domain rows are its own too.
        self.entity_prefix = f"SCN-{self.run_id.upper()}"
        self.timeline = Timeline()
        self.checks: list[Check] = []
        self.facts: dict[str, Any] = {}
        self.highlights: list[str] = []
        self.engine: Engine = create_engine(
            self.settings.sqlalchemy_url, pool_size=4, max_overflow=4, pool_pre_ping=True
        )
        self.app: App | None = None
        self.watch: Watch | None = None
        self._cleanups: list[tuple[str, dict[str, Any]]] = []
        self._started = time.monotonic()

    # -- names ------------------------------------------------------------------------------

    def names(self, event_type: str) -> TopicNames:
        return topic_names(self.settings, event_type)

    @property
    def groups(self) -> list[str]:
        return [self.names(t).group for t in self.settings.event_types]

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> ScenarioRun:
        migrate(self.settings.sqlalchemy_url)
        create_topics(self.settings)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def running(self, handlers: dict[str, Handler] | None = None) -> Iterator[App]:
        """The real application, started and assigned its partitions; stopped afterwards."""
        try:
            with harness.running_app(self.settings, handlers, timeout=READY_TIMEOUT_S) as app:
                self.app = app
                self.timeline.start()
                watch = self.watch = Watch(pool_size=self.settings.db_pool_size)
                with harness.in_background(
                    lambda stop: watch.sample(app, stop, self.timeline, self.mark_pool)
                ):
                    yield app
        except harness.AppNotReady as exc:
            raise ScenarioError(str(exc)) from None
        finally:
            if self.app is not None and self.app.failed.is_set():
                self.check("no listener crashed", False, "a listener thread died")

    def close(self) -> None:
        """Delete the run's topics, consumer groups and rows (best effort, never raises)."""
        admin = admin_client(self.settings)
        topics = [s.name for t in self.settings.event_types for s in self.names(t).all()]
        with suppress(Exception):
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                with suppress(Exception):
                    future.result(timeout=60)
        groups = self.groups + [f"{g}.dlq-monitor" for g in self.groups]
        with suppress(Exception):
            for future in admin.delete_consumer_groups(groups, request_timeout=15).values():
                with suppress(Exception):
                    future.result(timeout=30)
        dlqs = [self.names(t).dlq for t in self.settings.event_types]
        statements = [
            ("DELETE FROM event_records WHERE consumer_group = ANY(:groups)", {}),
            ("DELETE FROM dedup_keys WHERE consumer_group = ANY(:groups)", {}),
            # Replays and DLQ-monitor redrives of the run's DLQs, with the runs that sent them.
            (FORGET_REPLAYS, {}),
            ("DELETE FROM dlq_purged_records WHERE dlq_topic = ANY(:dlqs)", {}),
            *self._cleanups,
        ]
        for sql, params in statements:  # one transaction each: a failure spoils no other
            with suppress(Exception), self.engine.begin() as conn:
                conn.execute(text(sql), {"groups": self.groups, "dlqs": dlqs, **params})
        self.engine.dispose()

    def on_cleanup(self, sql: str, **params: Any) -> None:
        """A DELETE for the run's domain rows, run by `close` (`:groups` is bound too)."""
        self._cleanups.append((sql, params))

    # -- checks and waiting -----------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> bool:
        """Wait for `condition`; on timeout record a failed check instead of raising."""
        if poll(condition, timeout):
            return True
        self.check(f"{what} within {timeout:.0f} s", False, "timed out")
        return False

    # -- Kafka --------------------------------------------------------------------------------

    def produce(self, topic: str, records: list[RawRecord]) -> list[Record]:
        """Produce and wait for every delivery report; where each record landed."""
        producer = Producer(
            kafka_config(self.settings, {"linger.ms": 5, "enable.idempotence": True})
        )
        landed: dict[int, tuple[int, int]] = {}
        errors: list[str] = []

        def report(n: int) -> Callable[[KafkaError | None, Any], None]:
            def delivered(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    landed[n] = (msg.partition(), msg.offset())

            return delivered

        for n, (key, value, headers) in enumerate(records):
            producer.produce(
                topic, key=key, value=value, headers=cast(Any, headers), on_delivery=report(n)
            )
            producer.poll(0)
        if producer.flush(30) or errors or len(landed) != len(records):
            raise ScenarioError(f"could not produce to {topic}: {errors[:1] or 'timed out'}")
        return [
            Record(topic, *landed[n], key, value, headers)
            for n, (key, value, headers) in enumerate(records)
        ]

    def produce_events(self, events: list[Event]) -> list[Record]:
        by_topic: dict[str, list[Event]] = {}
        for event in events:
            by_topic.setdefault(self.names(event.event_type).main, []).append(event)
        produced: list[Record] = []
        for topic, batch in by_topic.items():
            produced += self.produce(topic, [(e.key.encode(), encode_json(e), None) for e in batch])
        return produced

    def read_topic(self, topic: str, timeout: float = 20.0) -> list[Record]:
        """Every record of `topic` up to its current end, read without joining a group."""
        try:
            messages = read_to_end(self.settings, topic, timeout)
        except TimeoutError as exc:
            raise ScenarioError(str(exc)) from None
        return [
            Record(
                topic,
                cast(int, msg.partition()),
                cast(int, msg.offset()),
                msg.key(),
                msg.value(),
                rh.message_headers(msg) or [],
                msg.timestamp()[1],
            )
            for msg in messages
        ]

    # -- database -----------------------------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        query = (
            select(event_records.c.status, func.count())
            .where(event_records.c.consumer_group.in_(self.groups))
            .group_by(event_records.c.status)
        )
        with self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query)}

    def rows(self) -> list[Row]:
        c = event_records.c
        query = select(
            c.event_type,
            c.status,
            c.attempts,
            c.processing_ms,
            c.origin_topic,
            c.origin_partition,
            c.origin_offset,
            c.updated_at,
        ).where(c.consumer_group.in_(self.groups))
        with self.engine.connect() as conn:
            return [Row(*row) for row in conn.execute(query)]

    def mark_finished(self, text: str) -> None:
        """Mark `text` at the time the run's last event record was written."""
        query = select(func.max(event_records.c.updated_at)).where(
            event_records.c.consumer_group.in_(self.groups)
        )
        with self.engine.connect() as conn:
            last = conn.execute(query).scalar()
        self.timeline.mark(text, at=last.timestamp() if last is not None else None)

    # -- the result ---------------------------------------------------------------------------

    def outcome(self, title: str, promise: str) -> Outcome:
        """Read back the retry tiers and DLQs, compute the dashboard, and wrap it all up."""
        dlq_origins: set[tuple[str, int, int]] = set()
        for event_type in self.settings.event_types:
            names = self.names(event_type)
            tiers: dict[str, list[Record]] = {}
            for spec in names.retry_tiers:
                tiers[spec.name.rsplit(".", 1)[1]] = self.read_topic(spec.name)
            tiers["DLQ"] = dead = self.read_topic(names.dlq)
            replays = [
                r for r in self.read_topic(names.main) if rh.REPLAY_ID in rh.as_dict(r.headers)
            ]
            tiers["main (replayed)"] = replays
            for record in dead:
                origin = rh.parse_origin(record.headers)
                if origin is not None:
                    dlq_origins.add((origin.topic, origin.partition, origin.offset))
            self.timeline.extend(
                failure_marks(
                    {t: [(r.timestamp_ms, r.headers or []) for r in rs] for t, rs in tiers.items()},
                    self.timeline.t0,
                )
            )
        if self.watch is not None:
            self.facts.update(self.watch.facts())
        return Outcome(
            scenario=self.name,
            title=title,
            promise=promise,
            run_prefix=self.settings.topic_prefix,
            checks=list(self.checks),
            dashboard=compute_dashboard(self.rows(), dlq_origins),
            timeline=self.timeline.marks(),
            facts=self.facts,
            highlights=self.highlights,
            duration_s=round(time.monotonic() - self._started, 1),
        )


def poll(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def entity_pattern(prefix: str) -> str:
    """A LIKE pattern matching the run's entity ids (chemical ids, report ids)."""
    return re.sub(r"([%_\\])", r"\\\1", prefix) + "-%"
