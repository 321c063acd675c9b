"""Topic provisioning: every topic the application uses, created idempotently.

Per event type (retry_topics/naming.py): the main topic, one topic per retry tier, the DLQ.
Retention: main and retry topics MAIN_RETENTION_MS / RETRY_RETENTION_MS, the DLQ
DLQ_RETENTION_DAYS (30 days, ADR-003). Every topic of a type has the same partition count,
so a record keeps its partition number's neighbours when it moves between tiers.

The settings are the source of truth for the configuration this module sets (`topic_config`):
`create_topics` also reads the broker's configuration of topics that exist and alters what
differs (only those keys), so a topic created by hand or under older settings is brought in
line, and says what it changed. `list_topics` reports the broker's values, never the settings.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from common.settings import TOPIC_SEGMENT_MS, Settings
from retry_topics.naming import TopicSpec, topic_names

log = structlog.get_logger(__name__)


class KafkaUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TopicRow:
    name: str
    role: str
    event_type: str
    partitions: int
    retention_ms: int | None  # the broker's; None when the topic is missing
    delay_ms: int
    status: str  # created | updated | exists | missing
    # The broker's values of the keys `topic_config` sets.
    config: dict[str, str] = field(default_factory=dict)
    # What `create_topics` altered: key -> {"from": broker's old value, "to": new value}.
    changed: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # Where the broker still differs from the settings: key -> {"broker": ..., "wanted": ...}.
    differs: dict[str, dict[str, str | None]] = field(default_factory=dict)


def wanted_topics(settings: Settings) -> list[TopicSpec]:
    specs: list[TopicSpec] = []
    for event_type in settings.event_types:
        specs += topic_names(settings, event_type).all()
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
    retention = retention_ms(settings, spec)
    # Kafka deletes whole segments, so a record outlives retention.ms by up to segment.ms (7 days
    # by default). Daily segments keep a DLQ record's life within a day of the retention, the
    # margin settings.py demands of DEDUP_RETENTION_DAYS.
    config = {"retention.ms": str(retention), "segment.ms": str(min(retention, TOPIC_SEGMENT_MS))}
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


def broker_configs(
    admin: AdminClient, names: list[str], timeout: float = 30.0
) -> dict[str, dict[str, str | None]]:
    """name -> the broker's configuration of that (existing) topic, defaults included."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    futures = admin.describe_configs(resources, request_timeout=timeout)
    return {
        resource.name: {key: entry.value for key, entry in future.result(timeout=timeout).items()}
        for resource, future in futures.items()
    }


def _differences(
    settings: Settings, spec: TopicSpec, broker: dict[str, str | None]
) -> dict[str, dict[str, str | None]]:
    return {
        key: {"broker": broker.get(key), "wanted": wanted}
        for key, wanted in topic_config(settings, spec).items()
        if broker.get(key) != wanted
    }


def alter_configs(admin: AdminClient, configs: dict[str, dict[str, str | None]]) -> None:
    """Set these keys of these topics (name -> key -> value), leaving every other key as is."""
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in config.items()
            ],
        )
        for name, config in configs.items()
    ]
    if resources:
        for future in admin.incremental_alter_configs(resources, request_timeout=30).values():
            future.result(timeout=60)


def reconcile_configs(
    admin: AdminClient, settings: Settings, names: set[str]
) -> dict[str, dict[str, dict[str, str | None]]]:
    """Alter (incrementally: only the keys that differ) the configuration of the wanted topics
    in `names`; name -> key -> {"from", "to"} for what was changed."""
    specs = [spec for spec in wanted_topics(settings) if spec.name in names]
    configs = broker_configs(admin, [spec.name for spec in specs])
    changes = {}
    for spec in specs:
        differs = _differences(settings, spec, configs[spec.name])
        if differs:
            changes[spec.name] = {
                k: {"from": d["broker"], "to": d["wanted"]} for k, d in differs.items()
            }
    alter_configs(
        admin, {name: {k: c["to"] for k, c in changed.items()} for name, changed in changes.items()}
    )
    # The running app (`run`, logging configured) logs what it changed; the CLI prints it, and
    # an unconfigured structlog would print to stdout, into `--json` output.
    if structlog.is_configured():
        for name, changed in changes.items():
            log.info("topic_config_changed", topic=name, changed=changed)
    return changes


def create_topics(settings: Settings) -> list[TopicRow]:
    admin = admin_client(settings)
    existing = existing_topics(admin, settings)
    specs = wanted_topics(settings)
    changes = reconcile_configs(admin, settings, set(existing))
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
    statuses.update({name: "updated" for name in changes})
    return _rows(settings, admin, statuses, changes)


def list_topics(settings: Settings) -> list[TopicRow]:
    return _rows(settings, admin_client(settings), {}, {})


def _rows(
    settings: Settings,
    admin: AdminClient,
    statuses: dict[str, str],
    changes: dict[str, dict[str, dict[str, str | None]]],
) -> list[TopicRow]:
    """What the broker has of each wanted topic; `statuses` overrides exists/missing."""
    existing = existing_topics(admin, settings)
    specs = wanted_topics(settings)
    configs = broker_configs(admin, [spec.name for spec in specs if spec.name in existing])
    rows = []
    for spec in specs:
        broker = configs.get(spec.name, {})
        retention = broker.get("retention.ms")
        rows.append(
            TopicRow(
                name=spec.name,
                role=spec.role,
                event_type=spec.event_type,
                partitions=existing.get(spec.name, 0),
                retention_ms=int(retention) if retention is not None else None,
                delay_ms=spec.delay_ms,
                status=statuses.get(spec.name, "exists" if spec.name in existing else "missing"),
                config={k: v for k in topic_config(settings, spec) if (v := broker.get(k))},
                changed=changes.get(spec.name, {}),
                differs=_differences(settings, spec, broker) if broker else {},
            )
        )
    return rows


def describe_change(row: TopicRow) -> str:
    """' retention.ms 86400000 -> 2592000000, ...' for a row `create_topics` altered, or ''."""
    parts = [f"{key} {c['from']} -> {c['to']}" for key, c in row.changed.items()]
    return "  " + ", ".join(parts) if parts else ""


def describe_difference(row: TopicRow) -> str:
    """'  (broker: retention.ms 259200000, wanted 2592000000; `topics create` fixes it)'."""
    parts = [f"{key} {d['broker']}, wanted {d['wanted']}" for key, d in row.differs.items()]
    return f"  (broker: {'; '.join(parts)}; `topics create` fixes it)" if parts else ""


def as_dicts(rows: list[TopicRow]) -> list[dict[str, object]]:
    return [asdict(row) for row in rows]
