"""Copies of one event in flight at the same time perform its outside effect once.

A producer's retry, or a replay overlapping the original, puts two records of one event id on
the topic back to back - on the same partition or on another one. No fault is injected: the
second copy's check must not run before the first copy's effect is known (issue 11, defect 1).
"""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import Producer
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import ChemicalApiServer, SmtpSink
from devtools.kafka import kafka_config
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar, wait_for_scalar

pytestmark = pytest.mark.integration

PARTITIONS = 3


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


def processed_twice(settings: Settings, event_type: str, db_engine: Engine) -> list[Event]:
    """100 events of the type, each produced twice at once (see produce_twice), processed."""
    settings = settings.model_copy(
        update={"event_types": (event_type,), "topic_partitions": PARTITIONS}
    )
    events = sample_events(event_type, 100)
    with running_app(settings):
        topic = topic_names(settings, event_type).main
        produce_twice(settings.kafka_bootstrap_servers, topic, events)
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM event_records",
            200,
            timeout=90,
            message="200 event records",
        )
    return events


def test_overlapping_copies_send_one_email_each(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    events = processed_twice(handler_settings, "Email", db_engine)
    counts = smtp_sink.count_by_event_id()
    assert set(counts) == {e.event_id for e in events}
    twice = {event_id: n for event_id, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} events sent more than once: {sorted(twice.items())[:5]}"
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='duplicate'") == 100
    assert scalar(db_engine, "SELECT count(*) FROM dedup_keys") == 100


def test_overlapping_copies_call_the_chemical_api_once_each(
    handler_settings: Settings, db_engine: Engine, chemical_api: ChemicalApiServer
) -> None:
    events = processed_twice(handler_settings, "ChemicalLookup", db_engine)
    calls = Counter(chemical_api.event_ids)
    assert set(calls) == {e.event_id for e in events}
    twice = {event_id: n for event_id, n in calls.items() if n > 1}
    assert not twice, f"{len(twice)} look-ups made more than once: {sorted(twice.items())[:5]}"
    assert scalar(db_engine, "SELECT count(*) FROM chemical_lookups") == 100
