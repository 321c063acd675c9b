"""DLQ runbook: argument parsing, header parsing, filters, JSON, summary, replay headers (pure)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from ops.dlq import (
    DlqRecord,
    DlqUsageError,
    Filters,
    decode_bytes,
    encode_bytes,
    event_id_of,
    iso,
    make_record,
    parse_ref,
    parse_time,
    record_from_json,
    record_to_json,
    resolve_type,
    summarize,
)
from ops.dlq_replay import parse_rate, replay_headers
from retry_topics import headers as rh
from schemas.codec import encode_json
from schemas.samples import sample_events

ORIGIN = rh.Origin("qchem.email", 2, 41, 1_700_000_000_000)


def dlq_headers(
    *,
    error_class: str = "DependencyDownError",
    kind: str = "transient",
    replay_count: int = 0,
    source: list[tuple[str, bytes | None]] | None = None,
) -> list[tuple[str, bytes]]:
    return rh.build(
        source_headers=source
        if source is not None
        else [("content-type", b"application/json"), ("traceparent", b"00-ab-cd-01")],
        origin=ORIGIN,
        group="qchem-events.email",
        attempt=3,
        first_failure_ms=1_700_000_001_000,
        due_ms=None,
        failure=rh.Failure(error_class, "smtp: connection refused", "Traceback ...", kind),
        replay_count=replay_count,
        dlq_reason="exhausted",
    )


def record(
    offset: int = 0,
    *,
    partition: int = 0,
    timestamp_ms: int = 1_700_000_002_000,
    value: bytes | None = None,
    key: bytes | None = b"user-1",
    headers: list[tuple[str, bytes]] | None = None,
    event_type: str = "Email",
) -> DlqRecord:
    if value is None:
        value = encode_json(sample_events(event_type, 1)[0])
    return make_record(
        event_type,
        "qchem.email.dlq",
        partition,
        offset,
        timestamp_ms,
        key,
        value,
        dlq_headers() if headers is None else headers,
    )


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


@pytest.mark.parametrize(("text", "rate"), [("100", 100.0), ("100/s", 100.0), ("2.5/s", 2.5)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0", "-3/s", "10/min", "2000000"])
def test_parse_rate_rejects_bad_rates(text: str) -> None:
    with pytest.raises(DlqUsageError, match="--rate"):
        parse_rate(text)


# -- records -----------------------------------------------------------------------------------


def test_make_record_parses_the_pipeline_headers() -> None:
    event = sample_events("Email", 1)[0]
    r = record(7, partition=1, value=encode_json(event))
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
    r = record(headers=[(rh.ATTEMPT, b"three"), (rh.REPLAY_COUNT, b"-4"), (rh.ORIGIN_TOPIC, b"x")])
    assert r.attempt is None and r.error_class is None and r.origin is None
    assert r.replay_count == 0
    assert record(headers=[]).failure_kind is None


def test_event_id_of_invalid_values() -> None:
    assert event_id_of(b'{"event_id": "abc", "x": 1}', [], "Email") == "abc"
    assert event_id_of(b"\xff\xfe\x00garbage", [], "Email") is None
    assert event_id_of(b"[1, 2]", [], "Email") is None
    assert event_id_of(None, [], "Email") is None


# -- filters -----------------------------------------------------------------------------------


def test_filters_select_by_each_criterion() -> None:
    a = record(0, partition=0, timestamp_ms=1_000)
    b = record(1, partition=1, timestamp_ms=2_000)
    c = record(
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


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, b"", b"plain text", "h\u00e9".encode(), b"\x00\xff\xfe"])
@pytest.mark.parametrize("force", [False, True])
def test_bytes_round_trip(data: bytes | None, force: bool) -> None:
    text, encoding = encode_bytes(data, force)
    assert decode_bytes(text, encoding) == data
    if data == b"\x00\xff\xfe" or (force and data is not None):
        assert encoding == "base64"


@pytest.mark.parametrize("force", [False, True])
def test_record_json_round_trips_binary_values_and_headers(force: bool) -> None:
    headers = [*dlq_headers(), ("x-binary", b"\x00\xffraw")]
    r = record(5, partition=2, key=None, value=b"\xff\xfe\x00garbage", headers=headers)
    data = json.loads(json.dumps(record_to_json(r, force_base64=force)))
    assert data["value_encoding"] == "base64" and data["headers_encoding"] == "base64"
    back = record_from_json(data)
    assert back == {
        "topic": "qchem.email.dlq",
        "partition": 2,
        "offset": 5,
        "timestamp": r.timestamp_ms,
        "key": None,
        "value": r.value,
        "headers": headers,
    }


def test_record_json_of_a_text_record_is_readable() -> None:
    r = record(3)
    data = record_to_json(r, replayed={"replay_id": "x", "replayed_at": "y"})
    assert data["value_encoding"] == data["key_encoding"] == data["headers_encoding"] == "utf-8"
    assert json.loads(data["value"])["event_id"] == r.event_id
    assert data["key"] == "user-1"
    assert ["traceparent", "00-ab-cd-01"] in data["headers"]
    assert data["origin"] == {
        "topic": "qchem.email",
        "partition": 2,
        "offset": 41,
        "timestamp": 1_700_000_000_000,
    }
    assert data["replayed"] == {"replay_id": "x", "replayed_at": "y"}
    assert data["timestamp_iso"] == iso(r.timestamp_ms)
    assert record_from_json(data)["value"] == r.value


# -- summary and replay headers -------------------------------------------------------------


def test_summarize_groups_by_error_class_and_kind() -> None:
    records = [record(i, timestamp_ms=1_000 * (i + 1)) for i in range(3)]
    records.append(
        record(9, timestamp_ms=500, headers=dlq_headers(error_class="Boom", kind="permanent"))
    )
    row = summarize("Email", "qchem.email.dlq", records, replayed=[(0, 1), (5, 5)])
    assert row["count"] == 4 and row["replayed"] == 1
    assert row["oldest"] == iso(500) and row["newest"] == iso(3_000)
    assert row["by_error"] == [
        {
            "error_class": "DependencyDownError",
            "failure_kind": "transient",
            "count": 3,
            "oldest": iso(1_000),
            "newest": iso(3_000),
        },
        {
            "error_class": "Boom",
            "failure_kind": "permanent",
            "count": 1,
            "oldest": iso(500),
            "newest": iso(500),
        },
    ]
    assert summarize("Email", "t", [], [])["oldest"] is None


def test_replay_headers_keep_foreign_headers_and_origin_and_count_the_replay() -> None:
    replay_id = uuid.uuid4()
    r = record(headers=dlq_headers(replay_count=2))
    headers = dict(replay_headers(r, replay_id))
    assert headers == {
        "content-type": b"application/json",
        "traceparent": b"00-ab-cd-01",
        rh.ORIGIN_TOPIC: b"qchem.email",
        rh.ORIGIN_PARTITION: b"2",
        rh.ORIGIN_OFFSET: b"41",
        rh.ORIGIN_TIMESTAMP: b"1700000000000",
        rh.REPLAY_COUNT: b"3",
        rh.REPLAY_ID: str(replay_id).encode(),
    }
    assert rh.parse_origin(replay_headers(r, replay_id)) == ORIGIN


def test_replay_headers_without_a_valid_origin_carry_none() -> None:
    r = record(headers=[("content-type", b"application/json"), (rh.ORIGIN_TOPIC, b"x")])
    names = [name for name, _ in replay_headers(r, uuid.uuid4())]
    assert names == ["content-type", rh.REPLAY_COUNT, rh.REPLAY_ID]
