"""A record the client library cannot even hand over cleanly must not stop the listener.

confluent-kafka decodes header *names* as UTF-8 in `Message.headers()`: a producer that writes
`x-trace\\xff` (kcat -H, or any client writing raw bytes) makes that call raise. Such a record
goes to the DLQ with its original key and value and a reason; the records around it flow.
"""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy.engine import Engine

from common.settings import Settings
from retry_topics import headers as rh
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar, wait_for_scalar
from tests.support.kafka import (
    produce_events,
    read_all,
    wait_committed_to_end,
)

pytestmark = pytest.mark.integration


def test_a_non_utf8_header_name_goes_to_the_dlq_and_the_rest_flows(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",), "topic_partitions": 1})
    topic = f"{settings.topic_prefix}.report"
    # Enough records before the poison one for CPython's adaptive interpreter to specialise
    # the call site (it then skips the "result with an exception set" check: a segfault).
    events = sample_events("Report", 201)  # distinct report ids
    before, after = events[:100], events[101:]
    poison_value = encode_json(events[100])
    with running_app(settings) as app:
        produce_events(settings.kafka_bootstrap_servers, topic, before)
        # kcat writes header names as raw bytes: the name here is b"x-trace\xff".
        _kcat_produce(settings, topic, b"poison-key", poison_value)
        produce_events(settings.kafka_bootstrap_servers, topic, after)
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM reports",
            200,
            timeout=60,
            message="the 200 valid reports around the poison record",
        )
        wait_committed_to_end(settings, topic_names(settings, "Report").group, topic, timeout=30)
        assert not app.failed.is_set(), "a listener crashed"
    dlq = read_all(settings.kafka_bootstrap_servers, f"{topic}.dlq")
    assert len(dlq) == 1
    record = dlq[0]
    assert record.key() == b"poison-key"
    assert record.value() == poison_value
    values = rh.as_dict(record.headers())
    assert b"header" in values[rh.ERROR_MESSAGE].lower()
    assert values[rh.FAILURE_KIND] == b"invalid"
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='invalid'") == 1


def _kcat_produce(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    """Produce with kcat, whose -H takes the header name's bytes as they are on argv."""
    subprocess.run(
        [
            b"kcat",
            b"-P",
            b"-b",
            settings.kafka_bootstrap_servers.encode(),
            b"-t",
            topic.encode(),
            b"-k",
            key,
            b"-H",
            b"x-trace\xff=1",
        ],
        input=value,
        check=True,
        timeout=30,
    )
