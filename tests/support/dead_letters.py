"""Dead letters as the pipeline leaves them, for the admin API and page tests.

`dead_lettered` produces events to the type's main topic, marks them consumed by the
application's group (as if processed) and writes their DLQ copies with the headers the
pipeline writes - so a replay of one is processed by a running app like any replay.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from common.settings import Settings
from devtools.dead_letters import exhausted_headers
from devtools.kafka import kafka_config
from ops.topics import create_topics
from retry_topics import headers as rh
from retry_topics.naming import TopicNames, topic_names
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.kafka import end_offsets, produce_events, read_all, wait_for

SOURCE_HEADERS = [("content-type", b"application/json")]


def names_for(settings: Settings, event_type: str) -> TopicNames:
    """The type's topics, created, with their partition leaders in place."""
    create_topics(settings)
    names = topic_names(settings, event_type)

    def ready() -> bool:
        try:
            return all(len(end_offsets(settings, t)) > 0 for t in (names.main, names.dlq))
        except KafkaException:
            return False

    wait_for(ready, timeout=30, message="partition leaders")
    return names


def commit_to_end(settings: Settings, group: str, topic: str) -> None:
    """As if the app had consumed the topic (and dead-lettered what failed)."""
    consumer = Consumer(kafka_config(settings, {"group.id": group}))
    try:
        ends = end_offsets(settings, topic)
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False
        )
    finally:
        consumer.close()


def dead_lettered(
    settings: Settings,
    event_type: str,
    count: int,
    *,
    error_class: str = "DependencyDownError",
    kind: str = "transient",
    events: list[Event] | None = None,
) -> tuple[TopicNames, list[Any]]:
    """`count` events of the type, consumed and dead-lettered: (topic names, main records)."""
    names = names_for(settings, event_type)
    chosen = events if events is not None else sample_events(event_type, count)
    produce_events(settings.kafka_bootstrap_servers, names.main, chosen, headers=SOURCE_HEADERS)
    originals = read_all(settings.kafka_bootstrap_servers, names.main)
    commit_to_end(settings, names.group, names.main)
    now = int(time.time() * 1000)
    failure = rh.Failure(error_class, "it failed: password=hunter2", "Traceback ...", kind)
    producer = Producer(kafka_config(settings, {"acks": "all"}))
    for m in originals:
        headers = exhausted_headers(
            names,
            rh.Origin(names.main, m.partition(), m.offset(), m.timestamp()[1]),
            failure,
            source_headers=m.headers(),
            first_failure_ms=now - 7_000,
        )
        producer.produce(names.dlq, key=m.key(), value=m.value(), headers=headers)  # type: ignore[arg-type]
    assert producer.flush(30) == 0
    return names, originals


def produce_many(settings: Settings, event_type: str, count: int, error_classes: list[str]) -> None:
    """`count` DLQ records straight to the DLQ (no main-topic originals), error classes in
    turn - for paging and the benchmark."""
    names = names_for(settings, event_type)
    producer = Producer(kafka_config(settings, {"linger.ms": 20, "acks": "all"}))
    events = sample_events(event_type, count)
    now = int(time.time() * 1000)
    for n, event in enumerate(events):
        cls = error_classes[n % len(error_classes)]
        headers = exhausted_headers(
            names,
            rh.Origin(names.main, 0, n, now - 60_000),
            rh.Failure(cls, "failed", "Traceback ...", "transient"),
            source_headers=SOURCE_HEADERS,
            first_failure_ms=now - 30_000,
        )
        while True:
            try:
                producer.produce(
                    names.dlq,
                    key=event.key.encode(),
                    value=encode_json(event),
                    headers=headers,  # type: ignore[arg-type]
                )
                break
            except BufferError:
                producer.poll(0.1)
        if n % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
