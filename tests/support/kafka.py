"""Small helpers for integration tests: produce records, wait for conditions, read topics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from common.settings import Settings
from devtools.kafka import kafka_config, read_to_end
from schemas.codec import encode_json
from schemas.events import Event


def producer(bootstrap: str) -> Producer:
    return Producer(kafka_config(bootstrap, {"linger.ms": 5, "enable.idempotence": True}))


def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[Event],
    *,
    encode: Callable[[Event], bytes] = encode_json,
    headers: list[tuple[str, bytes]] | None = None,
) -> int:
    p = producer(bootstrap)
    count = 0
    for event in events:
        p.produce(topic, key=event.key.encode(), value=encode(event), headers=headers)
        count += 1
        if count % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0, "not every record was delivered"
    return count


def produce_raw(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]],
) -> None:
    p = producer(bootstrap)
    for key, value, headers in records:
        p.produce(topic, key=key, value=value, headers=headers)
    assert p.flush(30) == 0


def wait_for(
    condition: Callable[[], Any], timeout: float, interval: float = 0.1, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def read_all(bootstrap: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """Every record currently in `topic`, read with a throwaway consumer."""
    return read_to_end(bootstrap, topic, timeout, partial_ok=True)


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer(kafka_config(settings, {"group.id": group}))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        tps = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer(kafka_config(settings, {"group.id": "end-offsets"}))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()


def wait_committed_to_end(settings: Settings, group: str, topic: str, *, timeout: float) -> None:
    """Until the group's committed offsets of `topic` are its end offsets."""
    wait_for(
        lambda: committed_offsets(settings, group, topic) == end_offsets(settings, topic),
        timeout=timeout,
        message=f"{group}'s offsets of {topic} committed to the end",
    )
