"""The Kafka client configuration of a test's or a benchmark's own clients, in one place.

The product builds its clients from `Settings.kafka_common_config()` (bootstrap servers,
security protocol, SASL, CA); a test or a benchmark that produces, reads back or
administers topics itself goes through `kafka_config`, so its clients connect as the
application does. A bare bootstrap address (a benchmark's --bootstrap, a fault proxy's
port) gives a plaintext client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from common.settings import Settings


def kafka_config(target: Settings | str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka configuration for `target` (settings or a bootstrap address), plus `extra`."""
    if isinstance(target, str):
        base: dict[str, Any] = {"bootstrap.servers": target}
    else:
        base = target.kafka_common_config()
    return {**base, **(extra or {})}


def read_to_end(
    target: Settings | str, topic: str, timeout: float = 20.0, *, partial_ok: bool = False
) -> list[Message]:
    """Every record of `topic` up to its end offsets as they are now, read from offset 0
    without joining a group (records with an error are left out). Not at the end within
    `timeout`: TimeoutError, or with `partial_ok` what was read by then."""
    group = f"reader-{time.monotonic_ns()}"
    extra = {"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    consumer = Consumer(kafka_config(target, extra))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends: dict[int, int] = {}
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                part, offset = msg.partition(), msg.offset()
                if msg.error() is not None or part is None or offset is None:
                    continue
                found.append(msg)
                if offset + 1 >= ends.get(part, 0):
                    ends.pop(part, None)
        if ends and not partial_ok:
            raise TimeoutError(f"could not read {topic} to its end within {timeout:.0f} s")
        return found
    finally:
        consumer.close()
