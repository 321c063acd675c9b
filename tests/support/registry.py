"""Producing the way upstream services do: confluent-kafka's own AvroSerializer + a registry.

Nothing here is ours on the wire: the serializer registers the writer schema under
`<topic>-value` (TopicNameStrategy) and frames the record as 0x00 | id | Avro body.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.codec import SCHEMA_SOURCES, avro_datum
from schemas.events import Event


def registry_client(url: str) -> SchemaRegistryClient:
    """The upstream producers' registry client, with a timeout: confluent-kafka's default is
    none at all, so a registry that accepts a connection and stalls (a JVM pause on a loaded
    CI machine) hung a test in `recv` until pytest-timeout killed it at 300 s. With one, a
    stalled request fails after 10 s and the client's own retries (3, with backoff) ask
    again."""
    return SchemaRegistryClient({"url": url, "timeout": 10})


def producer_datum(event: Event, **payload_extra: Any) -> dict[str, Any]:
    """The event as a producer's dict (occurred_at a datetime), with payload fields added."""
    datum = avro_datum(event)
    datum["payload"].update(payload_extra)
    return datum


def schema_with(event_type: str, *, add: list[dict[str, Any]] = (), drop: tuple[str, ...] = (),
                retype: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Our schema for `event_type` with payload fields added, dropped or retyped (a v2)."""
    schema = copy.deepcopy(SCHEMA_SOURCES[event_type])
    payload = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
    payload["fields"] = [f for f in payload["fields"] if f["name"] not in drop]
    for name, avro_type in (retype or {}).items():
        next(f for f in payload["fields"] if f["name"] == name)["type"] = avro_type
    payload["fields"].extend(add)
    return schema


def serializer(client: SchemaRegistryClient, schema: dict[str, Any], **conf: Any) -> AvroSerializer:
    return AvroSerializer(client, json.dumps(schema), conf=conf or None)


def frame(
    ser: AvroSerializer, topic: str, datum: Any, field: MessageField = MessageField.VALUE
) -> bytes:
    value = ser(datum, SerializationContext(topic, field))
    assert value is not None
    return value
