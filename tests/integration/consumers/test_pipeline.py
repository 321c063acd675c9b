"""The core pipeline against the real broker, database and SMTP server."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from consumers.handlers.chemical_status import ChemicalStatusHandler
from devtools.devservers import SmtpSink
from retry_topics import headers as rh
from schemas.codec import AVRO, CONTENT_TYPE_HEADER, encode_avro, encode_json
from schemas.events import Event
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar, wait_for_scalar
from tests.support.kafka import (
    produce_events,
    produce_raw,
    read_all,
    wait_committed_to_end,
)

pytestmark = pytest.mark.integration


def test_the_same_event_twice_has_one_effect_and_one_email(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    events = sample_events("Email", 20)
    with running_app(settings):
        topic = f"{settings.topic_prefix}.email"
        produce_events(settings.kafka_bootstrap_servers, topic, events)
        produce_events(settings.kafka_bootstrap_servers, topic, events[:10])  # same ids again
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM event_records",
            30,
            timeout=60,
            message="30 event records",
        )
    counts = smtp_sink.count_by_event_id()
    assert set(counts) == {e.event_id for e in events}
    assert max(counts.values()) == 1
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='duplicate'") == 10
    assert scalar(db_engine, "SELECT count(*) FROM dedup_keys") == 20


class SlowKeyStatusHandler(ChemicalStatusHandler):
    """The real handler, but events of one key take 0.5 s (a slow dependency for that key)."""

    slow_key = "CHEM-SLOW"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.finished_at: dict[str, float] = {}
        self.lock = threading.Lock()

    def perform(self, event: Event) -> None:
        if event.key == self.slow_key:
            time.sleep(0.5)
        with self.lock:
            self.finished_at[event.event_id] = time.monotonic()


def _status_events(keys: int, per_key: int) -> list[Event]:
    base = sample_events("ChemicalStatus", 1)[0]
    events = []
    for n in range(per_key):
        for k in range(keys):
            key = SlowKeyStatusHandler.slow_key if k == 0 else f"CHEM-{k:05d}"
            events.append(
                replace(
                    base,
                    event_id=str(uuid.uuid4()),
                    key=key,
                    occurred_at=base.occurred_at + timedelta(milliseconds=n),
                    payload=replace(base.payload, chemical_id=key, status=f"S{n}"),
                )
            )
    return events


def test_per_key_order_holds_under_concurrency_and_slow_keys_do_not_stall_others(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",), "concurrency": 10})
    handler = SlowKeyStatusHandler(settings)
    events = _status_events(keys=50, per_key=20)  # 1,000 events over 50 keys
    slow = [e for e in events if e.key == handler.slow_key]
    with running_app(settings, handlers={"ChemicalStatus": handler}):
        started = time.monotonic()
        produce_events(
            settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.chemical-status", events
        )
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM chemical_status_history",
            1000,
            timeout=120,
            message="1000 history rows",
        )
    fast_done = max(
        t for eid, t in handler.finished_at.items() if eid not in {e.event_id for e in slow}
    )
    slow_done = max(handler.finished_at[e.event_id] for e in slow)
    # 20 slow events take >= 10 s in sequence; the 980 others must not wait behind them.
    assert slow_done - started >= 10
    assert fast_done < slow_done - 5
    with db_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT chemical_id, event_id FROM chemical_status_history ORDER BY id")
        ).all()
    applied_order: dict[str, list[str]] = defaultdict(list)
    for chemical_id, event_id in rows:
        applied_order[chemical_id].append(event_id)
    produced_order: dict[str, list[str]] = defaultdict(list)
    for e in events:
        produced_order[e.key].append(e.event_id)
    assert applied_order == produced_order
    with db_engine.connect() as conn:
        final = dict(conn.execute(text("SELECT chemical_id, status FROM chemicals")).all())
    assert set(final.values()) == {"S19"}


def test_invalid_records_go_to_the_dlq_with_their_bytes_and_the_listener_keeps_going(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",), "max_event_bytes": 4096})
    main = f"{settings.topic_prefix}.report"
    good = sample_events("Report", 3)
    wrong_type = sample_events("Email", 1)[0]
    valid_json = encode_json(good[0])
    bad: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = [
        (b"k1", b"{not json", None),  # bad JSON
        (b"k2", b'{"event_type": "Report"}', None),  # missing fields
        (b"k3", valid_json.replace(b'"schema_version":1', b'"schema_version":"one"'), None),
        (b"k4", valid_json.replace(b'"Report"', b'"Fax"'), None),  # unknown event type
        (b"k5", encode_json(wrong_type), None),  # an Email on the Report topic
        (b"k6", b"", None),  # empty
        (b"k7", b"{" + b" " * 5000 + b"}", None),  # oversized
        (None, b"\xff\xfe\x00garbage", [(CONTENT_TYPE_HEADER, AVRO.encode())]),  # bad Avro
        (b"k9", b"[1, 2, 3]", None),  # not an object
        (b"k10", b"\xc3\x28", None),  # invalid UTF-8
    ]
    assert b'"schema_version":1' in valid_json, "sample JSON layout changed"
    with running_app(settings):
        produce_raw(settings.kafka_bootstrap_servers, main, bad)
        produce_events(settings.kafka_bootstrap_servers, main, good)
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM event_records",
            13,
            timeout=60,
            message="13 event records",
        )
    assert scalar(db_engine, "SELECT count(*) FROM reports") == 3
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='invalid'") == 10
    dlq = read_all(settings.kafka_bootstrap_servers, f"{main}.dlq")
    assert sorted(m.value() for m in dlq) == sorted(v or b"" for _k, v, _h in bad)
    for message in dlq:
        h = rh.as_dict(message.headers())
        assert h[rh.FAILURE_KIND] == b"invalid"
        assert h[rh.ORIGIN_TOPIC] == main.encode()
        assert h[rh.ERROR_MESSAGE]
        original = next(r for r in bad if (r[1] or b"") == message.value())
        assert message.key() == original[0]
    reasons = {rh.as_dict(m.headers())[rh.ERROR_MESSAGE].split(b":")[0] for m in dlq}
    assert {
        b"bad_json",
        b"missing_field",
        b"wrong_type",
        b"unknown_event_type",
        b"wrong_topic",
        b"empty",
        b"oversized",
        b"bad_avro",
        b"not_an_object",
        b"bad_utf8",
    } <= reasons
    # nothing invalid was retried
    assert read_all(settings.kafka_bootstrap_servers, f"{main}.retry-1s", timeout=2) == []


def test_avro_and_its_json_twin_have_the_same_effect(settings: Settings, db_engine: Engine) -> None:
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    main = f"{settings.topic_prefix}.chemical-status"
    json_event = sample_events("ChemicalStatus", 1)[0]
    avro_event = replace(
        json_event,
        event_id=str(uuid.uuid4()),
        key="CHEM-AVRO",
        payload=replace(json_event.payload, chemical_id="CHEM-AVRO"),
    )
    json_event = replace(
        json_event, key="CHEM-JSON", payload=replace(json_event.payload, chemical_id="CHEM-JSON")
    )
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, main, [json_event])
        produce_events(
            settings.kafka_bootstrap_servers,
            main,
            [avro_event],
            encode=encode_avro,
            headers=[(CONTENT_TYPE_HEADER, AVRO.encode())],
        )
        wait_for_scalar(
            db_engine, "SELECT count(*) FROM chemicals", 2, timeout=60, message="2 chemicals"
        )
    with db_engine.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                text(
                    "SELECT chemical_id, status, regulation, cas_number, status_occurred_at "
                    "FROM chemicals"
                )
            ).all()
        }
    assert rows["CHEM-AVRO"] == rows["CHEM-JSON"]


def test_offsets_are_committed_to_the_end_after_a_run(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    main = f"{settings.topic_prefix}.report"
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, main, sample_events("Report", 200))
        wait_for_scalar(
            db_engine, "SELECT count(*) FROM reports", 200, timeout=60, message="200 reports"
        )
        group = f"{settings.topic_prefix}-events.report"
        wait_committed_to_end(settings, group, main, timeout=30)
