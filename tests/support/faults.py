"""Helpers for the fault suite (tests/integration/faults): scale, events, load, infrastructure.

* `SCALE` - `QCHEM_SOAK_SCALE` (default 1): multiplies event counts and fault durations, so
  `make soak` runs the same tests longer and harder.
* `tagged_events` - sample events whose entities (chemical ids, report ids) carry the test's
  topic prefix, so tests sharing the database never touch each other's rows.
* `BackgroundLoad` - produces records at a steady rate on a thread while faults are injected,
  and remembers where each one landed (topic, partition, offset).
* `infra`, `kafka_answers`, `wait_kafka` - the local broker and PostgreSQL scripts.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.kafka import kafka_config
from retry_topics.naming import TopicNames
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.services import ROOT

SCALE = float(os.environ.get("QCHEM_SOAK_SCALE", "1") or "1")
# infra/kafka.sh's broker: its home (QCHEM_KAFKA_HOME), the pid `kafka.sh kill` signals.
KAFKA_HOME = Path(os.environ.get("QCHEM_KAFKA_HOME") or ROOT / ".local" / "kafka")
KAFKA_PIDFILE = KAFKA_HOME / "kafka.pid"


def local_broker_answers_on(bootstrap: str) -> bool:
    """Whether `bootstrap` is the broker `infra/kafka.sh kill` would kill: the one started from
    KAFKA_HOME (running, and configured to listen there) - never another one on the machine."""
    config = KAFKA_HOME / "server.properties"
    return (
        KAFKA_PIDFILE.exists()
        and config.exists()
        and f"listeners=PLAINTEXT://{bootstrap}," in config.read_text()
    )


def soak_timeout(base_s: float = 300) -> int:
    """pytest-timeout for a fault test: the suite default, times the soak scale."""
    return round(base_s * max(1.0, SCALE))


def scaled(n: float, minimum: int = 1) -> int:
    """`n` multiplied by QCHEM_SOAK_SCALE, at least `minimum`."""
    return max(minimum, round(n * SCALE))


def names(settings: Settings, event_type: str) -> TopicNames:
    return TopicNames(settings.topic_prefix, event_type, settings.retries_for(event_type))


# --- events ------------------------------------------------------------------------------------


def tagged_events(
    event_type: str, count: int, *, tag: str, keys: int | None = None, seed: int | None = None
) -> list[Event]:
    """`sample_events` whose entity ids start with `tag` (unique chemicals and report ids).

    Keys and occurred_at keep sample_events' guarantees: strictly increasing in list order.
    """
    events = sample_events(event_type, count, keys=keys, seed=seed)
    out = []
    for event in events:
        payload = event.payload
        if event_type in ("ChemicalStatus", "ChemicalLookup"):
            payload = dataclasses.replace(payload, chemical_id=f"{tag}-{payload.chemical_id}")
            key = payload.chemical_id
        elif event_type == "Report":
            payload = dataclasses.replace(payload, report_id=f"{tag}-{payload.report_id}")
            key = payload.report_id
        else:
            key = event.key
        out.append(dataclasses.replace(event, key=key, payload=payload))
    return out


def interleave(main: Sequence[Any], other: Sequence[Any], every: int = 1) -> list[Any]:
    """`main` with one item of `other` after every `every` items; both keep their order."""
    merged: list[Any] = []
    rest = list(other)
    for i, item in enumerate(main, start=1):
        merged.append(item)
        if i % every == 0 and rest:
            merged.append(rest.pop(0))
    return merged + rest


# --- load --------------------------------------------------------------------------------------


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    tag: Any = None  # what the test wants back with the position (an Event, a case ...)
    position: tuple[str, int, int] | None = None  # (topic, partition, offset) once delivered
    partition: int | None = None  # None: the key decides (the default partitioner)


def event_records(settings: Settings, events: Iterable[Event]) -> list[Record]:
    return [
        Record(names(settings, e.event_type).main, e.key.encode(), encode_json(e), None, e)
        for e in events
    ]


def load_events(settings: Settings, events: Iterable[Event], rate: float) -> BackgroundLoad:
    """`events` produced to their main topics at `rate` per second on a thread, started."""
    return BackgroundLoad(
        settings.kafka_bootstrap_servers, event_records(settings, events), rate=rate
    ).start()


def with_copies(records: list[Record], types: set[str], partitions: int) -> list[Record]:
    """Each record of `types` twice, back to back (a producer's retry, an overlapping replay):
    every other second copy on another partition than its key's, as a producer that keys
    differently, or a replay through another route, would put it."""
    out: list[Record] = []
    n = 0
    for record in records:
        out.append(record)
        if getattr(record.tag, "event_type", None) in types:
            copy = dataclasses.replace(record, position=None)
            if n % 2:
                copy.partition = n % partitions  # may coincide with the key's: fine
            out.append(copy)
            n += 1
    return out


def fast_producer(bootstrap: str) -> Producer:
    return Producer(
        kafka_config(
            bootstrap,
            {
                "linger.ms": 5,
                "enable.idempotence": True,  # retries during a broker outage create no copies
                "message.timeout.ms": 180_000,  # outlive a broker restart
                "queue.buffering.max.messages": 1_000_000,
                "message.max.bytes": 2_000_000,
            },
        )
    )


@dataclass
class BackgroundLoad:
    """Produces `records` at `rate` per second on a thread (all at once when rate is None)."""

    bootstrap: str
    records: list[Record]
    rate: float | None = None
    errors: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _producer: Producer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0
    finished: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _produced: int = 0

    def start(self) -> BackgroundLoad:
        self._producer = fast_producer(self.bootstrap)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="background-load", daemon=True)
        self._thread.start()
        return self

    def _callback(self, record: Record) -> Callable[[KafkaError | None, Message], None]:
        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                with self._lock:
                    self.errors.append(str(err))
                return
            record.position = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))

        return done

    def _run(self) -> None:
        assert self._producer is not None
        producer = self._producer
        for i, record in enumerate(self.records):
            if self._stop.is_set():
                break
            if self.rate:
                due = self.started + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    producer.poll(0)
                    time.sleep(delay)
            while True:
                try:
                    producer.produce(
                        record.topic,
                        key=record.key,
                        value=record.value,
                        headers=record.headers,  # type: ignore[arg-type]
                        on_delivery=self._callback(record),
                        **({} if record.partition is None else {"partition": record.partition}),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            self._produced = i + 1
            if i % 500 == 0:
                producer.poll(0)
        producer.flush(180)
        self.finished = time.monotonic()

    def stop(self) -> None:
        """Produce nothing more: `join` returns the records produced so far."""
        self._stop.set()

    def join(self, timeout: float = 240) -> list[Record]:
        """Wait until every record produced is confirmed; those records, positions filled in."""
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background load did not finish"
        self.records = self.records[: self._produced]
        missing = [r for r in self.records if r.position is None]
        assert not self.errors and not missing, (
            f"{len(missing)} records not delivered: {self.errors[:3]}"
        )
        return self.records


def produce_now(bootstrap: str, records: list[Record]) -> list[Record]:
    """Produce `records` in one go; positions filled in."""
    return BackgroundLoad(bootstrap, records).start().join()


# --- infrastructure ----------------------------------------------------------------------------


def infra(script: str, *args: str, timeout: float = 180) -> float:
    """Run infra/<script> <args>; how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "infra" / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"infra/{script} {' '.join(args)}: {result.stdout[-1000:]}{result.stderr[-2000:]}"
    )
    return time.monotonic() - started


def kafka_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """The broker answers a metadata request and has a controller (it is serving)."""
    try:
        metadata = AdminClient(kafka_config(bootstrap)).list_topics(timeout=timeout)
        return bool(metadata.brokers)
    except Exception:
        return False


def wait_kafka(bootstrap: str, timeout: float = 120) -> float:
    """Block until the broker answers again; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if kafka_answers(bootstrap):
            return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"Kafka at {bootstrap} did not answer within {timeout}s")


def ensure_kafka_up(bootstrap: str) -> None:
    """Whatever happened in a test, leave a serving broker for the tests after it."""
    if not kafka_answers(bootstrap):
        subprocess.run([str(ROOT / "infra" / "kafka.sh"), "up"], capture_output=True, timeout=180)
        wait_kafka(bootstrap)


def postgres_start(timeout: float = 60) -> None:
    """`infra/postgres.sh start`; somebody else having started it meanwhile is fine."""
    result = subprocess.run(
        [str(ROOT / "infra" / "postgres.sh"), "start"], capture_output=True, text=True, timeout=60
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run(
            [str(ROOT / "infra" / "postgres.sh"), "status"], capture_output=True, timeout=30
        )
        if status.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"PostgreSQL did not come back: {result.stdout}{result.stderr}")


def ensure_postgres_up() -> None:
    postgres_start()


def tolerant(engine: Engine, sql: str, **params: Any) -> Any:
    """A scalar query, None while the database is away."""
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()
    except Exception:
        return None


def processed(engine: Engine, group: str) -> int:
    """Effects applied so far by a consumer group (its dedup rows); 0 while the DB is away."""
    return (
        tolerant(engine, "SELECT count(*) FROM dedup_keys WHERE consumer_group = :g", g=group) or 0
    )


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
