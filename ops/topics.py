"""Topic provisioning: every topic the application uses, created idempotently.

Per event type (retry_topics/naming.py): the main topic, one topic per retry tier, the DLQ.
Retention: main and retry topics MAIN_RETENTION_MS / RETRY_RETENTION_MS, the DLQ
DLQ_RETENTION_DAYS (30 days, ADR-003). Every topic of a type has the same partition count,
so a record keeps its partition number's neighbours when it moves between tiers.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from consumers.settings import Settings
from retry_topics.naming import TopicSpec


class KafkaUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TopicRow:
    name: str
    role: str
    event_type: str
    partitions: int
    retention_ms: int | None
    delay_ms: int
    status: str  # created | exists | missing


def wanted_topics(settings: Settings) -> list[TopicSpec]:
    specs: list[TopicSpec] = []
    for event_type in settings.event_types:
        specs += settings.topics(event_type).all()
    return specs


def retention_ms(settings: Settings, spec: TopicSpec) -> int:
    if spec.role == "dlq":
        return settings.dlq_retention_days * 24 * 3600 * 1000
    if spec.role == "retry":
        return settings.retry_retention_ms
    return settings.main_retention_ms


# librdkafka logs connection failures to stderr by itself; route them to Python logging, where
# the caller's one-line error says the same thing once.
_rdkafka_log = logging.getLogger("librdkafka.admin")
_rdkafka_log.setLevel(logging.CRITICAL)


# A record routed to a retry tier or the DLQ carries its original value (up to the broker's
# ~1 MiB default) plus our headers: those topics accept a little more than the main topic,
# or the copy of a maximal record could never be produced and its partition would stall.
ROUTED_MAX_MESSAGE_BYTES = 2 * 1_048_576


def topic_config(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    config = {"retention.ms": str(retention_ms(settings, spec))}
    if spec.role != "main":
        config["max.message.bytes"] = str(ROUTED_MAX_MESSAGE_BYTES)
    return config


def admin_client(settings: Settings) -> AdminClient:
    config: dict[str, Any] = {**settings.kafka_common_config(), "logger": _rdkafka_log}
    return AdminClient(config)


def existing_topics(admin: AdminClient, settings: Settings, timeout: float = 5.0) -> dict[str, int]:
    """name -> partition count; KafkaUnavailable when the broker does not answer."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({exc.args[0]})"
        ) from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def create_topics(settings: Settings) -> list[TopicRow]:
    admin = admin_client(settings)
    existing = existing_topics(admin, settings)
    specs = wanted_topics(settings)
    new = [
        NewTopic(
            spec.name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config=topic_config(settings, spec),
        )
        for spec in specs
        if spec.name not in existing
    ]
    statuses: dict[str, str] = {}
    if new:
        for name, future in admin.create_topics(new, operation_timeout=30).items():
            try:
                future.result(timeout=60)
                statuses[name] = "created"
            except KafkaException as exc:
                error = exc.args[0]
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    statuses[name] = "exists"  # someone else created it meanwhile
                else:
                    raise
    return _rows(settings, existing_topics(admin, settings), statuses)


def list_topics(settings: Settings) -> list[TopicRow]:
    return _rows(settings, existing_topics(admin_client(settings), settings), {})


def _rows(settings: Settings, existing: dict[str, int], statuses: dict[str, str]) -> list[TopicRow]:
    """What the broker has of each wanted topic; `statuses` overrides exists/missing."""
    return [
        TopicRow(
            name=spec.name,
            role=spec.role,
            event_type=spec.event_type,
            partitions=existing.get(spec.name, 0),
            retention_ms=retention_ms(settings, spec),
            delay_ms=spec.delay_ms,
            status=statuses.get(spec.name, "exists" if spec.name in existing else "missing"),
        )
        for spec in wanted_topics(settings)
    ]


def as_dicts(rows: list[TopicRow]) -> list[dict[str, object]]:
    return [asdict(row) for row in rows]
