"""ops/dlq.py: argument parsing, header parsing, filters (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ops.dlq import DlqUsageError, Filters, parse_ref, parse_time, resolve_type
from retry_topics import headers as rh
from retry_topics.dlq_record import event_id_of
from schemas.codec import encode_json
from schemas.samples import sample_events
from tests.support.dlq import ORIGIN, dlq_headers, dlq_record

# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Email", "Email"),
        ("email", "Email"),
        ("chemical-status", "ChemicalStatus"),
        ("CHEMICALLOOKUP", "ChemicalLookup"),
    ],
)
def test_resolve_type_accepts_names_and_topic_names(name: str, expected: str) -> None:
    assert resolve_type(name) == expected


def test_resolve_type_rejects_unknown_types() -> None:
    with pytest.raises(DlqUsageError, match="unknown event type 'Fax'"):
        resolve_type("Fax")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
        ("2026-11-29T03:00:00Z", datetime(2026, 11, 29, 3, tzinfo=UTC)),
        ("2026-11-29T03:00:00", datetime(2026, 11, 29, 3, tzinfo=UTC)),
        ("2026-11-29T05:00:00+02:00", datetime(2026, 11, 29, 3, tzinfo=UTC)),
        ("2026-11-29 03:00:00.250Z", datetime(2026, 11, 29, 3, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_iso_dates_and_times_as_utc(text: str, expected: datetime) -> None:
    assert parse_time(text) == int(expected.timestamp() * 1000)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "", "29/11/2026", "1700000000"])
def test_parse_time_rejects_anything_else_naming_the_option(text: str) -> None:
    with pytest.raises(DlqUsageError, match="--until"):
        parse_time(text, "--until")


def test_parse_ref() -> None:
    assert parse_ref("Email:0:42") == ("Email", 0, 42)
    assert parse_ref("chemical-status:5:0") == ("ChemicalStatus", 5, 0)


@pytest.mark.parametrize(
    "text", ["nonsense", "Email:0", "Email:-1:3", "Email:a:3", "Email:0:1:2", "Fax:0:1", ""]
)
def test_parse_ref_rejects_malformed_references(text: str) -> None:
    with pytest.raises(DlqUsageError):
        parse_ref(text)


# -- records -----------------------------------------------------------------------------------


def test_make_record_parses_the_pipeline_headers() -> None:
    event = sample_events("Email", 1)[0]
    r = dlq_record(7, partition=1, value=encode_json(event))
    assert r.ref == "Email:1:7"
    assert r.event_id == event.event_id
    assert r.origin == ORIGIN
    assert (r.attempt, r.first_failure_ms, r.replay_count) == (3, 1_700_000_001_000, 0)
    assert (r.error_class, r.failure_kind, r.dlq_reason) == (
        "DependencyDownError",
        "transient",
        "exhausted",
    )
    assert r.error_message == "smtp: connection refused"
    assert r.error_stack == "Traceback ..."
    assert r.group == "qchem-events.email"


def test_make_record_tolerates_missing_and_malformed_headers() -> None:
    r = dlq_record(
        headers=[(rh.ATTEMPT, b"three"), (rh.REPLAY_COUNT, b"-4"), (rh.ORIGIN_TOPIC, b"x")]
    )
    assert r.attempt is None and r.error_class is None and r.origin is None
    assert r.replay_count == 0
    assert dlq_record(headers=[]).failure_kind is None


def test_event_id_of_invalid_values() -> None:
    assert event_id_of(b'{"event_id": "abc", "x": 1}', [], "Email") == "abc"
    assert event_id_of(b"\xff\xfe\x00garbage", [], "Email") is None
    assert event_id_of(b"[1, 2]", [], "Email") is None
    assert event_id_of(None, [], "Email") is None


# -- filters -----------------------------------------------------------------------------------


def test_filters_select_by_each_criterion() -> None:
    a = dlq_record(0, partition=0, timestamp_ms=1_000)
    b = dlq_record(1, partition=1, timestamp_ms=2_000)
    c = dlq_record(
        2,
        partition=1,
        timestamp_ms=3_000,
        headers=dlq_headers(error_class="PermanentError", kind="permanent"),
    )
    every = [c, b, a]
    assert Filters().apply(every) == [a, b, c]  # oldest first
    assert Filters(error_class="permanenterror").apply(every) == [c]
    assert Filters(since_ms=2_000).apply(every) == [b, c]  # inclusive
    assert Filters(until_ms=2_000).apply(every) == [a]  # exclusive
    assert Filters(partition=1).apply(every) == [b, c]
    assert Filters(event_ids=frozenset({str(a.event_id), "nope"})).apply(every) == [a]
    assert Filters(limit=2).apply(every) == [a, b]
    assert Filters(partition=0, error_class="PermanentError").apply(every) == []


def test_filters_narrows_and_json() -> None:
    assert not Filters().narrows
    assert Filters(partition=0).narrows
    assert Filters(event_ids=frozenset({"x"})).narrows
    assert Filters(since_ms=0).narrows
    data = Filters(error_class="X", since_ms=0, limit=3).as_json()
    assert data["since"] == "1970-01-01T00:00:00.000Z"
    assert data["limit"] == 3 and data["event_ids"] == []
    json.dumps(data)
