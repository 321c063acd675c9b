"""Schema Registry framed Avro end to end: the real app, a real Apicurio registry, real Kafka.

Producers use confluent-kafka's own AvroSerializer (a client nobody here wrote) against the
registry, exactly as an upstream service would: it registers the writer schema under
`<topic>-value` and frames each record as 0x00 | id | Avro body. Apicurio 3's ids are content
ids; the serializer and the app both go through the ccompat API, and these tests show that
they agree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import ChemicalApiServer
from ops import metrics
from retry_topics import headers as rh
from retry_topics.naming import topic_names
from schemas.codec import AVRO, encode_avro, encode_json, headers_for
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import CLI, running_app, settings_env
from tests.support.db import rows
from tests.support.kafka import (
    producer,
    read_all,
    wait_committed_to_end,
    wait_for,
)
from tests.support.registry import (
    frame,
    producer_datum,
    registry_client,
    schema_with,
    serializer,
)
from tests.support.services import OwnRegistry

pytestmark = pytest.mark.integration

HAZARD = {"name": "hazard", "type": ["null", "string"], "default": None}
TYPES = ("ChemicalStatus", "Email", "Report", "ChemicalLookup")


def ids_with(engine: Engine, status: str, event_type: str | None = None) -> set[str]:
    sql = "SELECT event_id FROM event_records WHERE status = :status"
    if event_type:
        sql += " AND event_type = :event_type"
    return {r[0] for r in rows(engine, sql, status=status, event_type=event_type)}


def count_with(engine: Engine, status: str) -> int:
    sql = "SELECT count(*) FROM event_records WHERE status = :status"
    return int(rows(engine, sql, status=status)[0][0])


def send(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes, Any]]) -> None:
    out = producer(settings.kafka_bootstrap_servers)
    for key, value, headers in records:
        out.produce(topic, key=key, value=value, headers=headers)
    assert out.flush(30) == 0


def framed_records(
    client: SchemaRegistryClient, topic: str, events: list[Event], schema: dict[str, Any], **extra
) -> list[tuple[bytes | None, bytes, Any]]:
    ser = serializer(client, schema)
    return [(e.key.encode(), frame(ser, topic, producer_datum(e, **extra)), None) for e in events]


@pytest.fixture
def registry_settings(handler_settings: Settings, schema_registry: str) -> Settings:
    return handler_settings.model_copy(update={"schema_registry_url": schema_registry})


def test_every_event_type_round_trips_through_the_app(
    registry_settings: Settings, db_engine: Engine, schema_registry: str
) -> None:
    client = registry_client(schema_registry)
    sent: dict[str, set[str]] = {}
    with running_app(registry_settings) as app:
        for event_type in TYPES:
            topic = topic_names(registry_settings, event_type).main
            events = sample_events(event_type, 6)
            records = framed_records(client, topic, events, schema_with(event_type))
            if event_type == "ChemicalStatus":  # framed keys too, as a key AvroSerializer sends
                key_ser = serializer(client, "string")  # type: ignore[arg-type]
                records = [
                    (frame(key_ser, topic, e.key, MessageField.KEY), value, None)
                    for e, (_k, value, _h) in zip(events, records, strict=True)
                ]
            assert all(value[:1] == b"\x00" for _k, value, _h in records)
            send(registry_settings, topic, records)
            sent[event_type] = {e.event_id for e in events}
        for event_type in TYPES:
            wait_for(
                lambda t=event_type: ids_with(db_engine, "succeeded", t) == sent[t],
                timeout=60,
                message=f"every framed {event_type} processed",
            )
        assert not app.failed.is_set()
    assert rows(db_engine, "SELECT count(*) FROM event_records WHERE status <> 'succeeded'") == [
        (0,)
    ]
    statuses = {r[0] for r in rows(db_engine, "SELECT chemical_id FROM chemicals")}
    assert statuses, "the ChemicalStatus handler wrote its table"


def test_evolution_a_compatible_v2_is_processed_an_incompatible_one_is_dead_lettered(
    registry_settings: Settings, db_engine: Engine, schema_registry: str
) -> None:
    settings = registry_settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    topic = topic_names(settings, "ChemicalStatus").main
    client = registry_client(schema_registry)
    v1, added, removed, broken, plain = (sample_events("ChemicalStatus", 3) for _ in range(5))
    good = (
        framed_records(client, topic, v1, schema_with("ChemicalStatus"))
        # v2: an added optional field (the producer fills it in)
        + framed_records(
            client, topic, added, schema_with("ChemicalStatus", add=[HAZARD]), hazard="toxic"
        )
        # v3: a field that has a default (cas_number) removed
        + framed_records(
            client, topic, removed, schema_with("ChemicalStatus", drop=("cas_number",))
        )
    )
    # Not readable by our schema: `regulation` has no default. The registry's default level
    # (NONE) lets the serializer register it, as a misconfigured subject would.
    bad_schema = schema_with("ChemicalStatus", drop=("regulation",))
    bad_datums = []
    for event in broken:
        datum = producer_datum(event)
        del datum["payload"]["regulation"]
        bad_datums.append(datum)
    bad_ser = serializer(client, bad_schema)
    bad = [
        (e.key.encode(), frame(bad_ser, topic, d), None)
        for e, d in zip(broken, bad_datums, strict=True)
    ]
    # JSON and header-tagged Avro keep working beside them.
    old_style = [(plain[0].key.encode(), encode_json(plain[0]), None)] + [
        (e.key.encode(), encode_avro(e), headers_for(AVRO)) for e in plain[1:]
    ]
    with running_app(settings):
        send(settings, topic, good + bad + old_style)
        expected_ok = {e.event_id for e in v1 + added + removed + plain}
        wait_for(
            # An undecodable record has no event id: its row is known by its offset only.
            lambda: (
                ids_with(db_engine, "succeeded") == expected_ok
                and count_with(db_engine, "invalid") == len(broken)
            ),
            timeout=60,
            message="v1, v2, v3, JSON and Avro processed; the incompatible ones invalid",
        )
    dlq = read_all(settings.kafka_bootstrap_servers, f"{topic}.dlq")
    assert sorted(m.value() for m in dlq) == sorted(value for _k, value, _h in bad)
    for message in dlq:
        headers = rh.as_dict(message.headers())
        assert headers[rh.FAILURE_KIND] == b"invalid"
        assert b"incompatible_schema" in headers[rh.ERROR_MESSAGE]
        assert b"payload.regulation" in headers[rh.ERROR_MESSAGE]


def test_framed_records_keep_their_bytes_through_retry_and_dlq_and_a_replay_decodes_them(
    registry_settings: Settings,
    db_engine: Engine,
    schema_registry: str,
    chemical_api: ChemicalApiServer,
) -> None:
    client = registry_client(schema_registry)
    # A retry hop: the chemical API fails the first lookup, the retry tier decodes the framed
    # bytes again and succeeds.
    lookup = registry_settings.model_copy(update={"event_types": ("ChemicalLookup",)})
    lookup_topic = topic_names(lookup, "ChemicalLookup").main
    event = sample_events("ChemicalLookup", 1)[0]
    records = framed_records(client, lookup_topic, [event], schema_with("ChemicalLookup"))
    chemical_api.fail_next(1, status=503)
    with running_app(lookup):
        send(lookup, lookup_topic, records)
        wait_for(
            lambda: ids_with(db_engine, "succeeded") == {event.event_id},
            timeout=60,
            message="the lookup processed on its retry",
        )
    retried = read_all(
        lookup.kafka_bootstrap_servers, topic_names(lookup, "ChemicalLookup").retry(1000)
    )
    assert [m.value() for m in retried] == [records[0][1]]
    assert rows(db_engine, "SELECT attempts FROM event_records") == [(2,)]

    # A DLQ hop and a replay: no registry configured -> INVALID (no_schema_registry); replayed
    # once the app has one, the same framed bytes decode and the event is processed. (Report:
    # not a business-critical type, whose replays wait for a person's approval.)
    status = registry_settings.model_copy(
        update={"event_types": ("Report",), "schema_registry_url": None}
    )
    topic = topic_names(status, "Report").main
    event = sample_events("Report", 1)[0]
    records = framed_records(client, topic, [event], schema_with("Report"))
    with running_app(status):
        send(status, topic, records)
        wait_for(
            lambda: count_with(db_engine, "invalid") == 1,
            timeout=60,
            message="the framed record invalid without a registry",
        )
    dlq = read_all(status.kafka_bootstrap_servers, f"{topic}.dlq")
    assert [m.value() for m in dlq] == [records[0][1]]
    assert b"no_schema_registry" in rh.as_dict(dlq[0].headers())[rh.ERROR_MESSAGE]
    with_registry = status.model_copy(update={"schema_registry_url": schema_registry})
    with running_app(with_registry):
        replay = subprocess.run(
            [CLI, "dlq", "replay", "--type", "Report", "--yes"],
            env={**os.environ, **settings_env(with_registry)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr
        assert "replayed 1," in replay.stdout, replay.stdout
        wait_for(
            lambda: ids_with(db_engine, "succeeded", "Report") == {event.event_id},
            timeout=60,
            message="the replayed framed record processed",
        )


@pytest.fixture
def own_registry() -> Iterator[OwnRegistry]:
    registry = OwnRegistry()
    registry.up()
    try:
        yield registry
    finally:
        registry.down()
        registry.wipe()


def held_count(event_type: str) -> float:
    return metrics.HELD.labels(event_type, "dependency_down")._value.get()  # type: ignore[no-any-return]


def test_registry_outage_holds_events_and_they_flow_when_it_returns(
    settings: Settings, db_engine: Engine, own_registry: OwnRegistry
) -> None:
    settings = settings.model_copy(
        update={
            "event_types": ("ChemicalStatus",),
            "schema_registry_url": own_registry.url,
            "breaker_fail_max": 3,
            "breaker_reset_timeout_s": 1.0,
        }
    )
    topic = topic_names(settings, "ChemicalStatus").main
    client = registry_client(own_registry.url)
    before, during = sample_events("ChemicalStatus", 5), sample_events("ChemicalStatus", 30)
    with running_app(settings) as app:
        send(settings, topic, framed_records(client, topic, before, schema_with("ChemicalStatus")))
        wait_for(
            lambda: len(ids_with(db_engine, "succeeded")) == 5,
            timeout=60,
            message="v1 processed (its schema now cached by the app)",
        )
        # Serialized while the registry is up (the serializer registers v2); produced after it
        # stops. The app has never seen v2's id, so it must ask the registry.
        v2 = framed_records(
            client, topic, during, schema_with("ChemicalStatus", add=[HAZARD]), hazard="x"
        )
        held_before = held_count("ChemicalStatus")
        own_registry.down()
        send(settings, topic, v2)
        guard = app.breakers.get("schema_registry")
        wait_for(lambda: guard.state == "open", timeout=30, message="the registry breaker open")
        wait_for(
            lambda: held_count("ChemicalStatus") - held_before >= len(during),
            timeout=30,
            message="every v2 record held",
        )
        assert len(ids_with(db_engine, "succeeded")) == 5
        assert count_with(db_engine, "invalid") == 0 and count_with(db_engine, "dlq") == 0
        assert not app.failed.is_set()

        own_registry.up()  # same file database: v2's id is known again
        expected = {e.event_id for e in before + during}
        wait_for(
            lambda: ids_with(db_engine, "succeeded") == expected,
            timeout=90,
            message="the held events processed once the registry is back",
        )
        wait_committed_to_end(
            settings, topic_names(settings, "ChemicalStatus").group, topic, timeout=30
        )
        assert guard.state == "closed"
    # Nothing lost, nothing twice, nothing dead-lettered.
    assert rows(db_engine, "SELECT count(*), count(DISTINCT event_id) FROM event_records") == [
        (35, 35)
    ]
    assert read_all(settings.kafka_bootstrap_servers, f"{topic}.dlq", timeout=3) == []
