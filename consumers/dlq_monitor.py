"""The DLQ monitor: redrives dead letters of auto-redrive event types while their dependency
is healthy (scenario 2: "DLQ Monitor: retry every 5 minutes ... service restored -> process
DLQ -> all emails sent").

Every DLQ_REDRIVE_INTERVAL_S, for each type in AUTO_REDRIVE_TYPES whose dependency breaker is
closed, the monitor reads its DLQ from where it stopped last time up to the current end and
sends the *transient* failures back to the main topic (origin identity kept, replay count
bumped, see headers.redrive_headers). Invalid and permanent failures stay for a person, and
business-critical types are never redriven automatically - the runbook CLI replays those.
The monitor's position is a consumer group of its own (`<group>.dlq-monitor`), committed only
after the broker confirmed the redriven copies.

It lives with the runtime (not in retry_topics/) because it needs the runtime's breakers and
handler types to know whether a dependency is healthy again.
"""

from __future__ import annotations

import threading
import uuid

import structlog
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.engine import Engine

from common import tracing
from common.settings import Settings
from common.telemetry import NULL_TELEMETRY, Telemetry
from consumers.breakers import Breakers
from consumers.handlers import HANDLER_TYPES
from retry_topics import headers as rh
from retry_topics.naming import TopicNames, topic_names
from retry_topics.router import DeliveryProducer
from storage.dlq_tables import record_redrive
from storage.secrets import replay_signing_key

log = structlog.get_logger(__name__)

REDRIVABLE_KINDS = {b"transient", b"dependency_down", b"database_down"}


class DlqMonitor:
    def __init__(
        self,
        settings: Settings,
        producer: DeliveryProducer,
        breakers: Breakers,
        engine: Engine | None = None,
        telemetry: Telemetry = NULL_TELEMETRY,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.producer = producer
        self.breakers = breakers
        self.telemetry = telemetry
        self.types = [t for t in settings.auto_redrive_types if t in settings.event_types]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dlq-monitor", daemon=True)

    def start(self) -> None:
        if self.types:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.dlq_redrive_interval_s):
            for event_type in self.types:
                try:
                    self.redrive_once(event_type)
                except Exception as exc:  # the next pass tries again
                    log.warning("dlq_redrive_failed", event_type=event_type, error=str(exc))

    def healthy(self, event_type: str) -> bool:
        """The type's dependency breaker is closed - after probing it if it is due: with no
        traffic, nothing else would ever test the dependency and close the breaker."""
        dependency: str | None = getattr(HANDLER_TYPES[event_type], "dependency", None)
        return dependency is None or self.breakers.get(dependency).probe_now()

    def redrive_once(self, event_type: str) -> int:
        """One pass over a type's DLQ; the number of records sent back."""
        if not self.healthy(event_type):
            log.info("dlq_redrive_skipped_dependency_down", event_type=event_type)
            return 0
        names = topic_names(self.settings, event_type)
        consumer = Consumer(
            {
                **self.settings.kafka_common_config(),
                "group.id": f"{names.group}.dlq-monitor",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            return self._redrive(consumer, names, event_type)
        finally:
            consumer.close()

    def _redrive(self, consumer: Consumer, names: TopicNames, event_type: str) -> int:
        metadata = consumer.list_topics(names.dlq, timeout=10)
        partitions = [TopicPartition(names.dlq, p) for p in metadata.topics[names.dlq].partitions]
        committed = consumer.committed(partitions, timeout=10)
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions
        }
        starts = {tp.partition: max(tp.offset, 0) for tp in committed}
        todo = {p for p, end in ends.items() if starts[p] < end}
        if not todo:
            return 0
        consumer.assign([TopicPartition(names.dlq, p, starts[p]) for p in todo])
        redrive_id = f"auto-{uuid.uuid4()}"
        key = replay_signing_key(self.engine) if self.engine is not None else None
        sent = 0
        failed: list[str] = []
        next_offsets: dict[int, int] = {}
        positions: list[tuple[str, int, int]] = []
        while todo and not self._stop.is_set():
            for message in consumer.consume(500, timeout=1.0):
                if message.error():
                    continue
                partition, offset = message.partition(), message.offset()
                if partition not in todo or offset is None or partition is None:
                    continue
                headers = rh.message_headers(message) or []
                if rh.as_dict(headers).get(rh.FAILURE_KIND) in REDRIVABLE_KINDS:
                    copy = rh.redrive_headers(headers, replay_id=redrive_id, key=key)
                    with tracing.hop(copy, names.main):  # a replay hop of the event's trace
                        self.producer.produce(
                            names.main,
                            key=message.key(),
                            value=message.value(),
                            headers=copy,
                            on_delivery=lambda err: failed.append(str(err)) if err else None,
                        )
                    sent += 1
                    positions.append((names.dlq, partition, offset))
                next_offsets[partition] = offset + 1
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
        if self.producer.flush(30) or failed:
            raise RuntimeError(f"redrive not confirmed by the broker: {failed[:1]}")
        if next_offsets:
            consumer.commit(
                offsets=[TopicPartition(names.dlq, p, o) for p, o in next_offsets.items()],
                asynchronous=False,
            )
        if positions and self.engine is not None:  # the DLQ depth no longer counts them
            record_redrive(
                self.engine,
                who="dlq-monitor",
                filter_={"auto_redrive": event_type},
                positions=positions,
            )
        if sent:
            self.telemetry.for_event_type(event_type).redriven(sent)
            log.info("dlq_redriven", event_type=event_type, records=sent, redrive_id=redrive_id)
        return sent
