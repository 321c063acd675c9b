"""Producing failed events to their next retry tier or the DLQ, with confirmed delivery.

The source offset of a routed event is marked done only from the delivery report of its copy
(offsets.py rule 2): if the process dies before the broker confirms, the source is redelivered
and routed again; the copy that may already exist carries the same origin identity, so dedup
applies its effect at most once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import structlog
from confluent_kafka import KafkaError, Message, Producer

log = structlog.get_logger(__name__)

DeliveryCallback = Callable[[KafkaError | None], None]
# (partition, offset, timestamp ms) of a delivered copy: the DLQ index keys on its position.
PositionCallback = Callable[[int, int, int], None]


class DeliveryProducer:
    """A confluent-kafka producer whose delivery reports are served by a thread of its own."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(
            {
                **config,
                "enable.idempotence": True,  # no duplicate copies from producer retries
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 30_000,
                # Room for a maximal original value plus the retry/DLQ headers (ops/topics.py).
                "message.max.bytes": 2 * 1_048_576 + 65_536,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="delivery-reports", daemon=True)
        self._thread.start()

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
        on_position: PositionCallback | None = None,
    ) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            try:
                if err is None and on_position is not None:
                    on_position(msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1])
                on_delivery(err)
            except Exception:
                log.exception("delivery_callback_failed", topic=topic)

        while True:
            try:
                self._producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=cast(list[tuple[str, str | bytes | None]], headers),
                    on_delivery=report,
                )
                return
            except BufferError:  # local queue full: let delivery reports drain it
                self._producer.poll(0.1)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def flush(self, timeout: float = 10.0) -> int:
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> int:
        remaining = self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
        return remaining
