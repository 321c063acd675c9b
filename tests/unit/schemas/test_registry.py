"""Schema Registry framed Avro (schemas/registry.py) with confluent-kafka's mock:// registry.

Producers are confluent-kafka's own AvroSerializer; the real Apicurio registry is exercised by
tests/integration/consumers/test_schema_registry.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField

from common import event_types
from consumers.breakers import DependencyGuard
from schemas.codec import AVRO, SCHEMA_SOURCES, decode, encode_avro, encode_json, headers_for
from schemas.registry import REGISTRY_REASONS, RegistryUnavailable, WriterSchemas, field_path
from schemas.samples import sample_events
from schemas.validation import InvalidEvent
from tests.support.registry import frame, producer_datum, schema_with, serializer

TOPIC = "qchem.t.main"
OPTIONAL_HAZARD = {"name": "hazard", "type": ["null", "string"], "default": None}


@pytest.fixture
def client() -> SchemaRegistryClient:
    # A fresh in-process registry per test: mock:// clients share state by URL.
    return SchemaRegistryClient.new_client({"url": f"mock://{id(object())}"})


def schemas_of(client: Any, guard: Any = None) -> WriterSchemas:
    return WriterSchemas(client, dict(SCHEMA_SOURCES), guard=guard)


@pytest.mark.parametrize("event_type", event_types.names())
def test_every_type_round_trips_through_the_serializer(
    client: SchemaRegistryClient, event_type: str
) -> None:
    ser = serializer(client, schema_with(event_type))
    for event in sample_events(event_type, 5, seed=1):
        value = frame(ser, TOPIC, producer_datum(event))
        assert value[:1] == b"\x00"
        assert decode(value, None, event_type, registry=schemas_of(client)) == event


def test_added_optional_field_is_accepted(client: SchemaRegistryClient) -> None:
    event = sample_events("ChemicalStatus", 1, seed=2)[0]
    ser = serializer(client, schema_with("ChemicalStatus", add=[OPTIONAL_HAZARD]))
    value = frame(ser, TOPIC, producer_datum(event, hazard="flammable"))
    assert decode(value, None, "ChemicalStatus", registry=schemas_of(client)) == event


def test_removed_field_with_a_default_is_accepted(client: SchemaRegistryClient) -> None:
    event = sample_events("ChemicalLookup", 1, seed=3)[0]
    ser = serializer(client, schema_with("ChemicalLookup", drop=("cas_number",)))
    datum = producer_datum(event)
    del datum["payload"]["cas_number"]
    decoded = decode(frame(ser, TOPIC, datum), None, "ChemicalLookup", registry=schemas_of(client))
    assert decoded.payload.cas_number is None
    assert decoded.payload.chemical_id == event.payload.chemical_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"drop": ("regulation",)}, "payload.regulation"),
        ({"retype": {"status": "int"}}, "payload.status"),
    ],
)
def test_incompatible_writer_is_invalid_naming_the_field(
    client: SchemaRegistryClient, change: dict[str, Any], field: str
) -> None:
    writer = schema_with("ChemicalStatus", **change)
    schema_id = client.register_schema(f"{TOPIC}-value", Schema(json.dumps(writer), "AVRO"))
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"
    with pytest.raises(InvalidEvent) as caught:
        decode(value, None, "ChemicalStatus", registry=schemas_of(client))
    assert caught.value.reason == "incompatible_schema"
    assert field in caught.value.detail
    assert "BACKWARD" in caught.value.detail


def test_unknown_schema_id_is_invalid(client: SchemaRegistryClient) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(b"\x00\x00\x00\x30\x39\x02", None, "Email", registry=schemas_of(client))
    assert caught.value.reason == "unknown_schema_id"
    assert "12345" in caught.value.detail


def test_framed_without_a_registry_is_invalid_with_its_own_reason() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(b"\x00\x00\x00\x00\x01\x02", None, "Email")
    assert caught.value.reason == "no_schema_registry"
    assert "SCHEMA_REGISTRY_URL" in caught.value.detail


def test_a_json_schema_id_is_not_avro(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("x-value", Schema('{"type": "object"}', "JSON"))
    with pytest.raises(InvalidEvent) as caught:
        schemas_of(client).for_type(schema_id, "Email")
    assert caught.value.reason == "not_avro_schema"


def test_an_unparsable_writer_schema_is_invalid() -> None:
    class Broken:
        def get_schema(self, schema_id: int) -> Schema:
            return Schema('{"type": "record", "name": "X", "fields": [{"name": "a"}]}', "AVRO")

    with pytest.raises(InvalidEvent) as caught:
        schemas_of(Broken()).for_type(1, "Email")
    assert caught.value.reason == "bad_writer_schema"


def test_every_registry_reason_is_covered() -> None:
    # The tests above, by reason: keeps REGISTRY_REASONS and the tests in step.
    covered = {"unknown_schema_id", "incompatible_schema", "not_avro_schema", "bad_writer_schema"}
    assert covered == REGISTRY_REASONS


def test_garbage_after_a_good_frame_is_bad_avro(client: SchemaRegistryClient) -> None:
    event = sample_events("Email", 1, seed=4)[0]
    value = frame(serializer(client, schema_with("Email")), TOPIC, producer_datum(event))
    for broken in (value[:-3], value + b"\x00\x01"):
        with pytest.raises(InvalidEvent) as caught:
            decode(broken, None, "Email", registry=schemas_of(client))
        assert caught.value.reason == "bad_avro"


def test_json_and_header_tagged_avro_still_decode_with_a_registry(
    client: SchemaRegistryClient,
) -> None:
    registry = schemas_of(client)
    for event in sample_events("Report", 3, seed=5):
        assert decode(encode_json(event), None, "Report", registry=registry) == event
        assert decode(encode_avro(event), headers_for(AVRO), "Report", registry=registry) == event


def test_a_framed_key_is_decoded_too(client: SchemaRegistryClient) -> None:
    event = sample_events("Email", 1, seed=6)[0]
    value = frame(serializer(client, schema_with("Email")), TOPIC, producer_datum(event))
    key = frame(serializer(client, "string"), TOPIC, event.key, MessageField.KEY)  # type: ignore[arg-type]
    assert decode(value, None, "Email", registry=schemas_of(client), key=key) == event
    unknown_key = b"\x00\x00\x00\x03\x09" + key[5:]
    with pytest.raises(InvalidEvent) as caught:
        decode(value, None, "Email", registry=schemas_of(client), key=unknown_key)
    assert caught.value.reason == "unknown_schema_id"


class CountingClient:
    """A registry that answers (or fails) on demand and counts the questions."""

    def __init__(self, inner: SchemaRegistryClient) -> None:
        self.inner = inner
        self.calls = 0
        self.failure: Exception | None = None

    def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return self.inner.get_schema(schema_id)


def test_each_schema_id_is_fetched_once(client: SchemaRegistryClient) -> None:
    counting = CountingClient(client)
    registry = schemas_of(counting)
    ser = serializer(client, schema_with("Email"))
    for event in sample_events("Email", 20, seed=7):
        decode(frame(ser, TOPIC, producer_datum(event)), None, "Email", registry=registry)
    assert counting.calls == 1


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError("refused"),
        SchemaRegistryError(500, 50001, "storage down"),
        SchemaRegistryError(503, -1, "unavailable"),
    ],
    ids=["unreachable", "500", "503"],
)
def test_registry_failures_are_unavailable_never_invalid(
    client: SchemaRegistryClient, failure: Exception
) -> None:
    counting = CountingClient(client)
    counting.failure = failure
    ser = serializer(client, schema_with("Email"))
    value = frame(ser, TOPIC, producer_datum(sample_events("Email", 1, seed=8)[0]))
    with pytest.raises(RegistryUnavailable):
        decode(value, None, "Email", registry=schemas_of(counting))
    counting.failure = None  # back: the same record now decodes
    assert decode(value, None, "Email", registry=schemas_of(counting)).event_type == "Email"


def test_the_breaker_opens_and_stops_asking(client: SchemaRegistryClient) -> None:
    counting = CountingClient(client)
    counting.failure = ConnectionRefusedError("refused")
    guard = DependencyGuard("schema_registry", fail_max=3, reset_timeout_s=60)
    registry = schemas_of(counting, guard=guard)
    for _ in range(10):
        with pytest.raises(RegistryUnavailable):
            registry.for_type(1, "Email")
    assert counting.calls == 3  # then the open breaker answers without asking
    assert guard.state == "open"


def test_an_unknown_id_is_asked_once_not_per_record(client: SchemaRegistryClient) -> None:
    counting = CountingClient(client)
    registry = schemas_of(counting)
    for _ in range(50):
        with pytest.raises(InvalidEvent, match="unknown_schema_id"):
            decode(b"\x00\x00\x00\x04\x00\x02", None, "Email", registry=registry)
    assert counting.calls == 1


def test_unknown_ids_do_not_open_the_breaker(client: SchemaRegistryClient) -> None:
    guard = DependencyGuard("schema_registry", fail_max=2, reset_timeout_s=60)
    registry = schemas_of(client, guard=guard)
    for n in range(5):
        with pytest.raises(InvalidEvent):
            registry.for_type(777 + n, "Email")
    assert guard.state == "closed"


def test_a_real_client_against_a_closed_port_is_unavailable() -> None:
    registry = WriterSchemas.from_url("http://127.0.0.1:9", dict(SCHEMA_SOURCES), timeout_s=1)
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        registry.for_type(1, "Email")


def test_field_path_names_nested_fields() -> None:
    schema = SCHEMA_SOURCES["ChemicalStatus"]
    assert field_path(schema, "/fields/6/type/fields/2") == "payload.regulation"
    assert field_path(schema, "/fields/3/type") == "producer"
    assert field_path(schema, "/") == "(the record itself)"
