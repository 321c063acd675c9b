"""Copies of one event in flight at the same time perform its outside effect once.

A producer's retry, or a replay overlapping the original, puts two records of one event id on
the topic back to back - on the same partition or on another one. No fault is injected: the
second copy's check must not run before the first copy's effect is known (issue 11, defect 1).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Producer
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import ChemicalApiServer, SmtpSink
from devtools.kafka import kafka_config
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 3


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def produce_twice(bootstrap: str, topic: str, events: list[Event]) -> None:
    """Each event twice, back to back: even ones on the same partition, odd ones on the next."""
    producer = Producer(kafka_config(bootstrap, {"linger.ms": 5}))
    for n, event in enumerate(events):
        first = n % PARTITIONS
        second = first if n % 2 == 0 else (first + 1) % PARTITIONS
        for partition in (first, second):
            producer.produce(
                topic, key=event.key.encode(), value=encode_json(event), partition=partition
            )
    assert producer.flush(30) == 0


def test_overlapping_copies_send_one_email_each(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(
        update={"event_types": ("Email",), "topic_partitions": PARTITIONS}
    )
    events = sample_events("Email", 100)
    with running_app(settings):
        produce_twice(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.email", events)
        wait_for(
            lambda: scalar(db_engine, "SELECT count(*) FROM event_records") == 200,
            timeout=90,
            message="200 event records",
        )
    counts = smtp_sink.count_by_event_id()
    assert set(counts) == {e.event_id for e in events}
    twice = {event_id: n for event_id, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} events sent more than once: {sorted(twice.items())[:5]}"
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='duplicate'") == 100
    assert scalar(db_engine, "SELECT count(*) FROM dedup_keys") == 100


def test_overlapping_copies_call_the_chemical_api_once_each(
    handler_settings: Settings, db_engine: Engine, chemical_api: ChemicalApiServer
) -> None:
    settings = handler_settings.model_copy(
        update={"event_types": ("ChemicalLookup",), "topic_partitions": PARTITIONS}
    )
    events = sample_events("ChemicalLookup", 100)
    with running_app(settings):
        produce_twice(
            settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.chemical-lookup", events
        )
        wait_for(
            lambda: scalar(db_engine, "SELECT count(*) FROM event_records") == 200,
            timeout=90,
            message="200 event records",
        )
    calls = Counter(chemical_api.event_ids)
    assert set(calls) == {e.event_id for e in events}
    twice = {event_id: n for event_id, n in calls.items() if n > 1}
    assert not twice, f"{len(twice)} look-ups made more than once: {sorted(twice.items())[:5]}"
    assert scalar(db_engine, "SELECT count(*) FROM chemical_lookups") == 100
