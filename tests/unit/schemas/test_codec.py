"""schemas.codec: schemas, round trips, every InvalidEvent reason, and hostile input."""

from __future__ import annotations

import json
import pickle
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import MISSING, fields
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import event_types
from schemas import codec
from schemas.codec import AVRO, JSON, InvalidEvent, decode, encode_avro, encode_json, headers_for
from schemas.events import (
    ChemicalLookupPayload,
    ChemicalStatusPayload,
    EmailPayload,
    Event,
    ReportPayload,
)
from schemas.registry import REGISTRY_REASONS
from schemas.rules import ENVELOPE_RULES
from schemas.safe_text import ADDR_SPEC, address_problem
from schemas.validation import REASONS

TYPES = list(event_types.names())
AVRO_HEADERS = headers_for(AVRO)
WHEN = datetime(2026, 11, 29, 3, 0, 0, 123000, tzinfo=UTC)
AVRO_DIR = files("schemas") / "avro"

# --- Valid events ------------------------------------------------------------------------------

PAYLOADS: dict[str, Any] = {
    "ChemicalStatus": ChemicalStatusPayload(
        "CHEM-00042", "RESTRICTED", "REACH Annex XVII", "50-00-0"
    ),
    "Email": EmailPayload("a@example.com", "Status changed", "Héllo ✓\nline two"),
    "Report": ReportPayload("RPT-1", "inventory_summary", "bob", {"site": "north", "fmt": "pdf"}),
    "ChemicalLookup": ChemicalLookupPayload("CHEM-00042", None),
}


def event(event_type: str = "Email", **changes: Any) -> Event:
    fields_ = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": WHEN,
        "producer": "crm",
        "schema_version": 1,
        "key": "entity-1",
        "payload": PAYLOADS[event_type],
    }
    return Event(**{**fields_, **changes})


DELETE = object()


def as_json(of: str = "Email", **changes: Any) -> dict[str, Any]:
    """A valid JSON event of type `of` as a dict, with fields (payload__to etc.) changed."""
    doc: dict[str, Any] = json.loads(encode_json(event(of)))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = doc
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long (any size, for hostile prefixes)."""
    n = (n << 1) ^ (n >> 127)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode()
    return zigzag(len(data)) + data


def envelope_prefix(event_type: str) -> bytes:
    """A valid Avro envelope, up to where the payload starts."""
    e = event(event_type)
    return (
        avro_string(e.event_id)
        + avro_string(event_type)
        + zigzag(1_700_000_000_000)
        + avro_string("crm")
        + zigzag(1)
        + avro_string("k")
    )


# --- Schemas -----------------------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    return json.loads((AVRO_DIR / f"{name}.avsc").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["Envelope", *TYPES])
def test_every_avsc_parses_with_fastavro(name: str) -> None:
    schema = load(name)
    fastavro.parse_schema(schema)
    assert schema["namespace"] == "qchem.events"
    assert schema["doc"]
    assert all(field.get("doc") for field in schema["fields"])


@pytest.mark.parametrize("name", TYPES)
def test_envelope_fields_are_identical_in_every_type_schema(name: str) -> None:
    envelope = load("Envelope")["fields"]
    fields_ = load(name)["fields"]
    assert fields_[:-1] == envelope
    assert fields_[-1]["name"] == "payload"


def test_event_fields_follow_the_envelope_order() -> None:
    # schemas.validation.to_event builds Event positionally, in schema order.
    names = [field["name"] for field in load("Envelope")["fields"]]
    assert [f.name for f in fields(Event)] == [*names, "payload"]


@pytest.mark.parametrize("name", TYPES)
def test_payload_schema_mirrors_the_dataclass(name: str) -> None:
    payload = load(name)["fields"][-1]["type"]
    dataclass_fields = fields(event_types.registered()[name].payload)
    assert [f["name"] for f in payload["fields"]] == [f.name for f in dataclass_fields]
    for avro_field, dc_field in zip(payload["fields"], dataclass_fields, strict=True):
        has_dc_default = (dc_field.default, dc_field.default_factory) != (MISSING, MISSING)
        assert ("default" in avro_field) == has_dc_default, dc_field.name


def test_every_registered_type_has_a_schema_and_is_a_default_of_the_settings() -> None:
    from common.settings import Settings

    assert TYPES == ["ChemicalStatus", "Email", "Report", "ChemicalLookup"]
    assert list(codec.SCHEMAS) == list(codec.SCHEMA_SOURCES) == TYPES
    assert all(codec.SCHEMA_SOURCES[name] == load(name) for name in TYPES)
    assert Settings().event_types == tuple(TYPES)


def test_the_field_rules_are_the_envelope_s_and_each_type_s_own() -> None:
    rules = {name: set(event_types.registered()[name].rules) for name in TYPES}
    assert set(ENVELOPE_RULES) == {"key", "schema_version"}
    assert rules["Email"] == {"payload.to", "payload.subject"}
    assert rules["Report"] == {f"payload.{f.name}" for f in fields(ReportPayload)}
    assert rules["ChemicalStatus"] == rules["ChemicalLookup"] == set()
    # A rule for a field the schema lacks would check nothing: compiling refuses it.
    for name in TYPES:
        assert codec.SCHEMAS[name] is not None


# --- Round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", TYPES)
def test_round_trip_json(event_type: str) -> None:
    e = event(event_type)
    assert decode(encode_json(e), None, event_type) == e


@pytest.mark.parametrize("event_type", TYPES)
def test_round_trip_avro(event_type: str) -> None:
    e = event(event_type)
    assert decode(encode_avro(e), AVRO_HEADERS, event_type) == e


@pytest.mark.parametrize("event_type", TYPES)
def test_json_and_avro_decode_to_the_same_event(event_type: str) -> None:
    e = event(event_type)
    assert decode(encode_json(e), headers_for(JSON), event_type) == decode(
        encode_avro(e), AVRO_HEADERS, event_type
    )


def test_the_documented_kcat_example_decodes() -> None:
    line = (
        b'{"event_id": "0C1D2E3F-0000-4000-8000-00000000002A", "event_type": "Email", '
        b'"occurred_at": "2026-11-29T03:00:00Z", "producer": "crm", "schema_version": 1, '
        b'"key": "user-42", "payload": {"to": "a@example.com", "subject": "s", "body": "b"}}'
    )
    e = decode(line, None, "Email")
    assert e.event_id == "0c1d2e3f-0000-4000-8000-00000000002a"  # canonical lower case
    assert e.occurred_at == datetime(2026, 11, 29, 3, tzinfo=UTC)
    assert e.payload == EmailPayload("a@example.com", "s", "b")


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-11-29T03:00:00Z", datetime(2026, 11, 29, 3, tzinfo=UTC)),
        ("2026-11-29T04:30:00+01:30", datetime(2026, 11, 29, 3, tzinfo=UTC)),
        ("2026-11-29T03:00:00.123456Z", datetime(2026, 11, 29, 3, 0, 0, 123000, tzinfo=UTC)),
        (1_795_921_200_123, datetime(2026, 11, 29, 3, 0, 0, 123000, tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_occurred_at_forms(occurred_at: Any, expected: datetime) -> None:
    e = decode(raw(as_json(occurred_at=occurred_at)), None, "Email")
    assert e.occurred_at == expected
    assert e.occurred_at.tzinfo is UTC


def test_unknown_fields_are_ignored_and_defaults_filled() -> None:
    doc = as_json("Report", payload__parameters=DELETE, extra={"future": [1, 2]})
    doc["payload"]["new_field"] = "x"
    assert decode(raw(doc), None, "Report").payload.parameters == {}
    lookup = as_json("ChemicalLookup", payload__cas_number=DELETE)
    assert decode(raw(lookup), None, "ChemicalLookup").payload.cas_number is None


def test_content_type_header_matching() -> None:
    e = event()
    body = encode_avro(e)
    for value in (b"avro/binary", b"application/vnd.qchem+avro", b"Application/Avro; v=1"):
        assert decode(body, [("Content-Type", value)], "Email") == e
    # Last header wins; a null header value means "absent", i.e. JSON.
    assert decode(body, [("content-type", b"text/x"), ("content-type", AVRO.encode())], "Email")
    assert decode(encode_json(e), [("content-type", None)], "Email") == e


def test_headers_for() -> None:
    assert headers_for(JSON) == [("content-type", b"application/json")]
    assert headers_for("avro/binary") == [("content-type", b"avro/binary")]
    with pytest.raises(ValueError):
        headers_for("text/plain")


def test_encode_refuses_events_it_could_not_decode_back() -> None:
    with pytest.raises(TypeError):
        encode_json(event(payload=PAYLOADS["Report"]))
    with pytest.raises(ValueError):
        encode_avro(event(occurred_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError):
        encode_json(event(occurred_at=datetime(2026, 1, 1)))


def test_encode_json_is_one_compact_line_in_utc() -> None:
    e = event(occurred_at=datetime(2026, 11, 29, 5, tzinfo=timezone(timedelta(hours=2))))
    line = encode_json(e)
    assert b"\n" not in line and b": " not in line
    assert json.loads(line)["occurred_at"] == "2026-11-29T03:00:00.000Z"


def test_unknown_expected_type_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        decode(encode_json(event()), None, "Nope")


# --- Every InvalidEvent reason -----------------------------------------------------------------

# Issue 17 #4: each of these reached several or other recipients through `to`.
HOSTILE_TO = [
    "victim@example.com, attacker@evil.test",
    "victim@example.com;attacker@evil.test",
    "undisclosed: victim@example.com, attacker@evil.test;",
    '"ceo@example.com" <attacker@evil.test>',
    "CEO <attacker@evil.test>",
    "<attacker@evil.test>",
    "victim@example.com (attacker@evil.test)",
    '"a b"@example.com',
    "victim@[127.0.0.1]",
    "v\u00efctim@example.com",
    "a@b@c.test",
    "a@" + "d" * 300 + ".test",
]
# Issue 17 #2: encoded words that decoded into header lines (or a body) on Python 3.11.7.
ENCODED_WORD_SUBJECTS = [
    "=?utf-8?q?Invoice=0D=0ABcc:_evil@evil.test=0D=0AReply-To:_attacker@evil.test?=",
    "Invoice =?utf-8?b?DQpCY2M6IGV2aWxAZXZpbC50ZXN0?= due",
    "=?utf-8?q?x=0D=0A=0D=0Abody?=",
    "=?bogus?=",
]
# Issue 17 #8: field, value, text the detail must contain.
HOSTILE_REPORT_FIELDS = [
    ("payload__requested_by", "a@example.com\n# generated_for: 1999-01-01\nBANNED,0", "U+000A"),
    ("payload__report_id", "r-1\r# type: forged", "U+000D"),
    ("payload__report_type", "x\u2028y", "U+2028"),
    ("payload__parameters", {"regulation": "REACH\n# forged"}, "value of entry"),
    ("payload__parameters", {"a\x1b[2J": "v"}, "key of entry"),
]

CASES: list[tuple[str, Callable[[], bytes | None], list[Any] | None, str, str]] = [
    # (reason, value, headers, expected_type, text the detail must contain)
    ("empty", lambda: None, None, "Email", "no value"),
    ("empty", lambda: b"", None, "Email", "no value"),
    ("oversized", lambda: b" " * 1_048_577, None, "Email", "1048577"),
    ("bad_utf8", lambda: b'{"key": "\xff"}', None, "Email", "byte 9"),
    ("bad_json", lambda: b'{"key": ', None, "Email", "Expecting value"),
    ("bad_json", lambda: b'{"a": NaN}', None, "Email", "NaN"),
    ("bad_json", lambda: b'{"a": ' + b"9" * 5000 + b"}", None, "Email", "digits"),
    ("bad_json", lambda: b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}", None, "Email", "64 levels"),
    ("bad_json", lambda: b"[" * 200_000 + b"]" * 200_000, None, "Email", "nested"),
    ("not_an_object", lambda: b"[1, 2]", None, "Email", "array"),
    ("not_an_object", lambda: b'"x"', None, "Email", "string"),
    ("bad_avro", lambda: b"\x02", AVRO_HEADERS, "Email", "EOFError"),
    ("bad_avro", lambda: encode_avro(event()) + b"\x00", AVRO_HEADERS, "Email", "left over"),
    ("bad_avro", lambda: b"\x00\x00\x00\x00\x07", AVRO_HEADERS, "Email", "Registry"),
    ("bad_avro", lambda: b"\x02\xff" + b"\x00" * 30, AVRO_HEADERS, "Email", "UnicodeDecodeError"),
    ("unknown_content_type", lambda: b"{}", [("content-type", b"text/csv")], "Email", "text/csv"),
    ("unknown_content_type", lambda: b"{}", [("content-type", b"\xff")], "Email", "ASCII"),
    ("unknown_event_type", lambda: raw(as_json(event_type="Fax")), None, "Email", "'Fax'"),
    ("wrong_topic", lambda: encode_json(event("Report")), None, "Email", "Report"),
    (
        "wrong_topic",  # an Avro Report body claiming to be an Email
        lambda: encode_avro(event("Report")).replace(b"\x0cReport", b"\x0aEmail", 1),
        AVRO_HEADERS,
        "Report",
        "Email event",
    ),
    ("missing_field", lambda: raw(as_json(payload__to=DELETE)), None, "Email", "payload.to"),
    ("missing_field", lambda: raw(as_json(event_type=DELETE)), None, "Email", "event_type"),
    ("missing_field", lambda: raw(as_json(payload=DELETE)), None, "Email", "payload"),
    ("missing_field", lambda: raw(as_json(occurred_at=DELETE)), None, "Email", "occurred_at"),
    ("wrong_type", lambda: raw(as_json(schema_version=True)), None, "Email", "schema_version"),
    ("wrong_type", lambda: raw(as_json(schema_version=1.0)), None, "Email", "schema_version"),
    ("wrong_type", lambda: raw(as_json(payload__to=None)), None, "Email", "payload.to"),
    ("wrong_type", lambda: raw(as_json(payload=[])), None, "Email", "payload: expected object"),
    ("wrong_type", lambda: raw(as_json(event_type=7)), None, "Email", "event_type"),
    ("wrong_type", lambda: raw(as_json(event_id=7)), None, "Email", "event_id"),
    ("wrong_type", lambda: raw(as_json(occurred_at=[])), None, "Email", "occurred_at"),
    (
        "wrong_type",
        lambda: raw(as_json("Report", payload__parameters={"a": 1})),
        None,
        "Report",
        "payload.parameters['a']",
    ),
    (
        "wrong_type",
        lambda: raw(as_json("ChemicalLookup", payload__cas_number=50)),
        None,
        "ChemicalLookup",
        "payload.cas_number",
    ),
    ("bad_value", lambda: raw(as_json(event_id="not-a-uuid")), None, "Email", "event_id"),
    ("bad_value", lambda: raw(as_json(event_id="{" + "0" * 32 + "}")), None, "Email", "event_id"),
    ("bad_value", lambda: raw(as_json(key="")), None, "Email", "key"),
    ("bad_value", lambda: raw(as_json(key="k" * 501)), None, "Email", "key"),
    ("bad_value", lambda: raw(as_json(schema_version=0)), None, "Email", "schema_version"),
    ("bad_value", lambda: raw(as_json(schema_version=2**31)), None, "Email", "schema_version"),
    ("bad_address", lambda: raw(as_json(payload__to="nobody")), None, "Email", "payload.to"),
    ("bad_address", lambda: raw(as_json(payload__to="a@b\r\nBcc: x@y")), None, "Email", "to"),
    ("control_character", lambda: raw(as_json(payload__subject="a\nb")), None, "Email", "U+000A"),
    *[
        ("bad_address", lambda to=to: raw(as_json(payload__to=to)), None, "Email", "payload.to")
        for to in HOSTILE_TO
    ],
    *[
        ("encoded_word", lambda s=s: raw(as_json(payload__subject=s)), None, "Email", "RFC 2047")
        for s in ENCODED_WORD_SUBJECTS
    ],
    *[
        ("control_character", lambda f=f, v=v: raw(as_json("Report", **{f: v})), None, "Report", m)
        for f, v, m in HOSTILE_REPORT_FIELDS
    ],
    ("bad_value", lambda: raw(as_json(payload__body="x" * 100_001)), None, "Email", "payload.body"),
    ("bad_value", lambda: raw(as_json(producer="a\x00b")), None, "Email", "producer"),
    ("bad_value", lambda: raw(as_json(producer="\ud800")), None, "Email", "producer"),
    ("bad_value", lambda: raw(as_json(occurred_at="yesterday")), None, "Email", "occurred_at"),
    ("bad_value", lambda: raw(as_json(occurred_at="2026-11-29T03:00")), None, "Email", "timezone"),
    ("bad_value", lambda: raw(as_json(occurred_at=10**17)), None, "Email", "occurred_at"),
    (
        "bad_value",
        lambda: raw(as_json(occurred_at="9999-12-31T23:59:59-01:00")),
        None,
        "Email",
        "occurred_at",
    ),
    (
        "bad_value",
        lambda: raw(as_json("Report", payload__parameters={"k": "v" * 100_001})),
        None,
        "Report",
        "payload.parameters['k']",
    ),
    ("bad_frame", lambda: b"\x00\x00\x01", None, "Email", "too short"),
    ("no_schema_registry", lambda: b"\x00\x00\x00\x00\x07" + b"x", None, "Email", "id 7"),
]


@pytest.mark.parametrize(
    ("reason", "value", "headers", "expected_type", "mentions"),
    CASES,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(CASES)],
)
def test_invalid_event_reason(
    reason: str,
    value: Callable[[], bytes | None],
    headers: list[Any] | None,
    expected_type: str,
    mentions: str,
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(value(), headers, expected_type)
    assert caught.value.reason == reason, str(caught.value)
    assert mentions in caught.value.detail
    assert str(caught.value) == f"{reason}: {caught.value.detail}"


def test_every_reason_is_covered() -> None:
    # The registry's own reasons are covered with a mock:// registry in test_registry.py.
    # bad_headers is the listener's (headers the client cannot read), not the codec's:
    # tests/unit/retry_topics/test_headers.py and tests/integration/consumers.
    assert {case[0] for case in CASES} == REASONS - REGISTRY_REASONS - {"bad_headers"}


def test_avro_bad_values_are_caught_like_json_ones() -> None:
    body = encode_avro(event(key=""))
    with pytest.raises(InvalidEvent, match="bad_value: key"):
        decode(body, AVRO_HEADERS, "Email")
    body = encode_avro(event()).replace(b"\x06crm\x02", b"\x06crm\x00", 1)  # version 0
    with pytest.raises(InvalidEvent, match="bad_value: schema_version"):
        decode(body, AVRO_HEADERS, "Email")


def test_max_bytes_is_checked_before_parsing() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(b"{" * 300, None, "Email", max_bytes=256)  # would be bad_json if parsed
    assert caught.value.reason == "oversized"


def test_depth_limit_boundary() -> None:
    def nested(levels: int) -> bytes:  # the event object itself is level 1
        doc = as_json()
        doc["extra"] = json.loads("[" * (levels - 1) + "]" * (levels - 1))
        return raw(doc)

    assert decode(nested(64), None, "Email").key == "entity-1"
    with pytest.raises(InvalidEvent, match="bad_json"):
        decode(nested(65), None, "Email")


def test_invalid_event_detail_is_bounded_and_the_error_pickles() -> None:
    exc = InvalidEvent("bad_value", "x" * 10_000)
    assert len(exc.detail) <= 500
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.reason, copy.detail) == (exc.reason, exc.detail)
    with pytest.raises(ValueError):
        InvalidEvent("typo", "a reason outside REASONS would split a metric")


# --- Hostile Avro: lengths must never turn into allocations ---------------------------------

HOSTILE_AVRO = {
    "string length 2^60": zigzag(2**60) + b"abc",
    "negative string length": zigzag(-(2**60)) + b"abc",
    "varint that never ends": b"\xff" * 1000,
    "overlong varint": b"\xff" * 100 + b"\x01" + b"abc",
    "map count 2^60": envelope_prefix("Report")
    + avro_string("r") * 3
    + zigzag(2**60)
    + avro_string("k")
    + avro_string("v"),
    "map key length 2^62": envelope_prefix("Report")
    + avro_string("r") * 3
    + zigzag(1)
    + zigzag(2**62),
    "negative map block": envelope_prefix("Report")
    + avro_string("r") * 3
    + zigzag(-(2**62))
    + zigzag(2**62),
    "union branch 7": envelope_prefix("ChemicalLookup") + avro_string("c") + zigzag(7),
}


@pytest.mark.parametrize("name", HOSTILE_AVRO)
def test_hostile_avro_lengths_allocate_nothing_big(name: str) -> None:
    event_type = "Report" if "map" in name else "ChemicalLookup" if "union" in name else "Email"
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(InvalidEvent) as caught:
            decode(HOSTILE_AVRO[name], AVRO_HEADERS, event_type)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "bad_avro"
    assert peak < 1_000_000, f"{peak} bytes allocated"
    assert elapsed < 1.0


# --- Properties: decode returns an Event or raises InvalidEvent, nothing else, quickly --------

FAST = settings(
    max_examples=300,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
# What may become a header or report line: no control characters (schemas/safe_text.py).
single_line = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
)
subject = single_line.filter(lambda t: "=?" not in t)
address = st.from_regex(ADDR_SPEC, fullmatch=True).filter(lambda a: address_problem(a) is None)


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    event_type = draw(st.sampled_from(TYPES))
    payloads = {
        "ChemicalStatus": st.builds(ChemicalStatusPayload, text, text, text, st.none() | text),
        "Email": st.builds(
            EmailPayload,
            address,
            subject,
            text,
        ),
        "Report": st.builds(
            ReportPayload,
            single_line,
            single_line,
            single_line,
            st.dictionaries(single_line, single_line, max_size=4),
        ),
        "ChemicalLookup": st.builds(ChemicalLookupPayload, text, st.none() | text),
    }
    moment = draw(st.datetimes(timezones=st.just(UTC)))
    return Event(
        event_id=str(draw(st.uuids())),
        event_type=event_type,
        occurred_at=moment.replace(microsecond=moment.microsecond // 1000 * 1000),
        producer=draw(text),
        schema_version=draw(st.integers(1, 2**31 - 1)),
        key=draw(text.filter(bool)),
        payload=draw(payloads[event_type]),
    )


def decodes_or_rejects(value: bytes, headers: Any, event_type: str) -> Event | None:
    try:
        return decode(value, headers, event_type)
    except InvalidEvent as exc:
        assert exc.reason in REASONS
        assert len(exc.detail) <= 500
        return None


@FAST
@given(valid_events())
def test_property_round_trip_both_formats(e: Event) -> None:
    from_json = decode(encode_json(e), None, e.event_type)
    from_avro = decode(encode_avro(e), AVRO_HEADERS, e.event_type)
    assert from_json == from_avro == e


@FAST
@given(st.binary(max_size=400), st.sampled_from(TYPES), st.sampled_from([None, AVRO_HEADERS]))
def test_property_arbitrary_bytes(value: bytes, event_type: str, headers: Any) -> None:
    decodes_or_rejects(value, headers, event_type)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(json_values, st.sampled_from(TYPES))
def test_property_arbitrary_json(value: Any, event_type: str) -> None:
    decodes_or_rejects(json.dumps(value).encode(), None, event_type)


@FAST
@given(valid_events(), st.data())
def test_property_valid_json_with_one_field_replaced(e: Event, data: st.DataObject) -> None:
    doc = json.loads(encode_json(e))
    target = doc if data.draw(st.booleans()) else doc["payload"]
    name = data.draw(st.sampled_from(sorted(target)))
    target[name] = data.draw(json_values)
    decodes_or_rejects(raw(doc), None, e.event_type)


@FAST
@given(valid_events(), st.data())
def test_property_mutated_avro(e: Event, data: st.DataObject) -> None:
    body = bytearray(encode_avro(e))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "insert" or not body:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=9))
        elif action == "flip":
            body[min(position, len(body) - 1)] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del body[min(position, len(body) - 1)]
        else:
            del body[position:]
    decodes_or_rejects(bytes(body), AVRO_HEADERS, e.event_type)


@FAST
@given(st.binary(max_size=40))
def test_property_arbitrary_content_type(value: bytes) -> None:
    decodes_or_rejects(encode_json(event()), [("content-type", value)], "Email")
