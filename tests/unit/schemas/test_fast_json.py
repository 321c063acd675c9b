"""schemas.fast_json: the msgspec fast path only ever accepts, and accepts what the slow path does.

Every property compares three outcomes of one value: the slow path alone
(`decode(..., fast_path=False)`), the fast decoder alone (`compiled(type).fast`), and `decode`
as the app runs it. The fast decoder either
declines (None) or returns an `Event` equal to the slow path's; `decode` always gives the slow
path's verdict, reason code and detail.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import event_types
from common.event_types import EventType
from schemas import codec, fast_json
from schemas.catalog import BUILT_IN
from schemas.codec import decode, encode_json
from schemas.compiled import CompiledType, compiled
from schemas.events import EmailPayload, Event
from schemas.fast_json import FastDecoder, Unsupported, fast_decoder
from schemas.rules import ENVELOPE_RULES
from schemas.samples import sample_events, sample_json_lines
from schemas.validation import MAX_STRING_CHARS, InvalidEvent
from tests.support import toy
from tests.unit.schemas.test_codec import CASES, DELETE, TYPES, as_json, raw, valid_events

Outcome = tuple[str, Any]


def slow(value: bytes | None, event_type: str) -> Outcome:
    """The verdict of the path without the fast one: json + the compiled checker."""
    return outcome(lambda: decode(value, None, event_type, fast_path=False))


def compiled_type(event_type: str) -> CompiledType:
    entry = compiled(event_type)
    assert entry is not None, event_type
    return entry


def fast_of(event_type: str) -> FastDecoder:
    fast = compiled_type(event_type).fast
    assert fast is not None, event_type
    return fast


def outcome(run: Callable[[], Event]) -> Outcome:
    try:
        return ("event", run())
    except InvalidEvent as exc:
        return ("invalid", (exc.reason, exc.detail))


def assert_same(value: bytes, event_type: str) -> Event | None:
    """Both paths agree on `value`; returns what the fast decoder returned."""
    expected = slow(value, event_type)
    fast = fast_of(event_type)(value)
    if fast is not None:
        assert expected == ("event", fast), value
    assert outcome(lambda: decode(value, None, event_type)) == expected, value
    return fast


# --- The common case is fast, and equal ------------------------------------------------------


def test_every_built_in_type_has_a_fast_decoder() -> None:
    # A type missing here silently lost its fast path (a schema feature fast_json cannot express).
    assert [t.name for t in BUILT_IN if compiled_type(t.name).fast is None] == []


@pytest.fixture
def tally() -> Iterator[EventType]:
    with toy.registered() as event_type:
        yield event_type


def test_a_type_registered_at_run_time_gets_a_fast_decoder(tally: EventType) -> None:
    # Built where its checker is compiled, at its first use: nothing to add for a new type.
    for line in sample_json_lines(toy.NAME, 50, seed=7):
        assert assert_same(line.encode(), toy.NAME) is not None, line
    doc = json.loads(line)
    doc["payload"]["note"] = "x" * (MAX_STRING_CHARS + 1)
    assert slow(raw(doc), toy.NAME)[0] == "invalid"
    assert assert_same(raw(doc), toy.NAME) is None


@pytest.mark.parametrize("event_type", TYPES)
def test_sample_events_take_the_fast_path_and_decode_equal(event_type: str) -> None:
    for line in sample_json_lines(event_type, 200, seed=7):
        assert assert_same(line.encode(), event_type) is not None, line


@pytest.mark.parametrize("event_type", TYPES)
def test_every_form_a_producer_writes(event_type: str) -> None:
    doc = json.loads(encode_json(_event(event_type)))
    doc["event_id"] = doc["event_id"].upper()  # normalised by the slow path's UUID checker
    for text in (
        json.dumps(doc),
        json.dumps(doc, ensure_ascii=False),
        json.dumps(doc, indent=2),
        " \t\r\n" + json.dumps(doc, separators=(",", ":")) + "\n",
    ):
        fast = assert_same(text.encode(), event_type)
        assert fast is not None and fast.event_id == doc["event_id"].lower()


def _event(event_type: str) -> Event:
    return decode(raw(as_json(event_type)), None, event_type)


def test_decode_asks_the_fast_path_only_for_plain_json() -> None:
    e = _event("Email")
    calls: list[bytes] = []

    def spy(value: bytes) -> Event | None:
        calls.append(value)
        return None

    def spied(name: str) -> CompiledType:
        entry = compiled_type(name)
        return replace(entry, fast=spy) if name == "Email" else entry

    with mock.patch.object(codec, "compiled", spied):
        assert decode(encode_json(e), None, "Email") == e
        assert decode(encode_json(e), codec.headers_for(codec.JSON), "Email") == e
        assert calls == [encode_json(e)] * 2
        assert decode(codec.encode_avro(e), codec.headers_for(codec.AVRO), "Email") == e
        for value in (b"\x00\x00\x00\x00\x07x", b" " * 300):  # framed; oversized
            with pytest.raises(InvalidEvent):
                decode(value, None, "Email", max_bytes=256)
        assert len(calls) == 2


# --- Each item of the module's list, pinned ---------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{case[0]}" for i, case in enumerate(CASES)])
def test_the_fast_decoder_never_gives_a_verdict_of_its_own(case: Any) -> None:
    # test_codec checks these reasons through decode, i.e. with the fast path in front.
    reason, value, headers, event_type, _ = case
    body = value()
    if headers is None and body and body[:1] != b"\x00" and len(body) <= codec.DEFAULT_MAX_BYTES:
        assert fast_of(event_type)(body) is None, reason


def with_text(replacement: bytes, event_type: str = "Email", field: str = "producer") -> bytes:
    """A valid event whose `field` is the JSON string literal `replacement` (raw bytes)."""
    marker = "MARKER-" + uuid.uuid4().hex
    return raw(as_json(event_type, **{field: marker})).replace(
        json.dumps(marker).encode(), replacement
    )


@pytest.mark.parametrize(
    "literal",
    [
        rb'"\ud800"',  # a lone high surrogate
        rb'"\udc00"',  # a lone low one
        rb'"\ude00\ud83d"',  # a pair in the wrong order
        rb'"\ud83d\u0041"',  # a high one followed by another escape
        rb'"a\ud83d"',  # at the end
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8
        b'"\xc0\x80"',  # an overlong NUL
        b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
        b'"\xe2\x82"',  # a sequence cut short
        b'"\xff"',
        rb'"\u0000"',
        rb'"a\u0000b"',
        b'"a\x00b"',  # a raw NUL (and a raw control character) is not JSON
        b'"a\nb"',
    ],
)
def test_strings_the_slow_path_refuses(literal: bytes) -> None:
    value = with_text(literal)
    assert slow(value, "Email")[0] == "invalid"
    assert assert_same(value, "Email") is None


@pytest.mark.parametrize(
    "literal",
    [
        rb'"\ud83d\ude00 \uDBFF\uDFFF"',  # escaped pairs
        '"\U0001f600 \u202e bidi \u2067 \ufffe \x7f"'.encode(),
        json.dumps("\u202eevil\u202c").encode(),
        rb'"\\u0000"',  # an escaped backslash: no NUL, but declined (the guard is textual)
    ],
)
def test_strings_the_slow_path_accepts(literal: bytes) -> None:
    assert slow(with_text(literal), "Email")[0] == "event"
    assert_same(with_text(literal), "Email")


def test_string_length_is_counted_in_code_points() -> None:
    astral = "\U0001f600"  # 4 bytes in UTF-8, 2 UTF-16 units, 1 code point
    longest = json.dumps(astral * MAX_STRING_CHARS, ensure_ascii=False).encode()
    too_long = json.dumps(astral * (MAX_STRING_CHARS + 1), ensure_ascii=False).encode()
    assert assert_same(with_text(longest), "Email") is not None
    assert slow(with_text(too_long), "Email")[0] == "invalid"
    assert assert_same(with_text(too_long), "Email") is None


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("schema_version", 2**31 - 1, True),
        ("schema_version", 2**31, False),
        ("schema_version", 0, False),  # ENVELOPE_RULES
        ("schema_version", -(2**31) - 1, False),
        ("occurred_at", 2**63, False),
        ("occurred_at", 253_402_300_799_999, True),  # 9999-12-31T23:59:59.999Z
        ("occurred_at", 253_402_300_800_000, False),
        ("occurred_at", -62_135_596_800_000, True),  # 0001-01-01
        ("occurred_at", -62_135_596_800_001, False),
        ("key", "", False),  # ENVELOPE_RULES
        ("key", "k" * 500, True),
        ("key", "k" * 501, False),
    ],
)
def test_integer_ranges_and_rules(field: str, value: Any, accepted: bool) -> None:
    body = raw(as_json(**{field: value}))
    assert slow(body, "Email")[0] == ("event" if accepted else "invalid")
    assert (assert_same(body, "Email") is not None) == accepted


@pytest.mark.parametrize("digits", [4300, 4301, 5000])
def test_integers_with_thousands_of_digits(digits: int) -> None:
    for field in ("occurred_at", "schema_version"):
        body = with_text(b"9" * digits, field=field)
        assert assert_same(body, "Email") is None


def test_duplicate_keys_resolve_as_json_does() -> None:
    doc = raw(as_json(key="second"))
    first_wins = doc.replace(b'{"event_id"', b'{"key": "first", "event_id"', 1)
    fast = assert_same(first_wins, "Email")
    assert fast is not None and fast.key == "second"
    payload = b'"payload": {"to": "x@example.com", "to": "a@example.com", '
    fast = assert_same(doc.replace(b'"payload": {', payload, 1), "Email")
    assert fast is not None and fast.payload.to == "a@example.com"
    # Every occurrence must have the field's type, even the one that loses; the slow path
    # ignores the loser, so the fast decoder only declines.
    assert assert_same(doc.replace(b'{"event_id"', b'{"key": 7, "event_id"', 1), "Email") is None


def test_unknown_fields_take_the_slow_path() -> None:
    doc = as_json("Report", extra={"deep": [[[1]]]})
    doc["payload"]["new_field"] = "x"
    assert slow(raw(doc), "Report")[0] == "event"  # newer producers may add fields
    assert assert_same(raw(doc), "Report") is None


def test_defaults_are_filled_as_the_slow_path_fills_them() -> None:
    report = assert_same(raw(as_json("Report", payload__parameters=DELETE)), "Report")
    assert report is not None and report.payload.parameters == {}
    lookup = raw(as_json("ChemicalLookup", payload__cas_number=DELETE))
    found = assert_same(lookup, "ChemicalLookup")
    assert found is not None and found.payload.cas_number is None
    again = fast_of("Report")(raw(as_json("Report", payload__parameters=DELETE)))
    assert again is not None and again.payload.parameters is not report.payload.parameters


@pytest.mark.parametrize(
    "value",
    [
        b"\xef\xbb\xbf" + raw(as_json()),  # a UTF-8 BOM
        raw(as_json()) + b"\x00",
        raw(as_json()) + b"{}",
        b"\x0c" + raw(as_json()),
        "\u00a0".encode() + raw(as_json()),
        raw(as_json()).replace(b"1,", b"1.0,", 1),
        raw(as_json()).replace(b": 1,", b": true,", 1),
        raw(as_json()).replace(b": 1,", b": 1e0,", 1),
        raw(as_json()).replace(b'"key"', b"'key'", 1),
        raw(as_json())[:-1],
        raw(as_json()).replace(b"}}", b",}}", 1),
        raw(as_json(event_type="Report")),
        raw(as_json(event_type="Fax")),
        raw(as_json(event_type=DELETE)),
        raw(as_json(payload=None)),
        b"[" + raw(as_json()) + b"]",
    ],
)
def test_not_quite_json_and_not_quite_events(value: bytes) -> None:
    assert slow(value, "Email")[0] == "invalid"
    assert assert_same(value, "Email") is None


# --- Schemas the fast path cannot express -------------------------------------------------------


EMAIL_RULES = {**ENVELOPE_RULES, **next(t.rules for t in BUILT_IN if t.name == "Email")}
UPPER_UUID = "0C1D2E3F-0000-4000-8000-00000000002A"


def schema_with(field_type: Any, default: Any = DELETE) -> dict[str, Any]:
    field: dict[str, Any] = {"name": "extra", "type": field_type}
    if default is not DELETE:
        field["default"] = default
    schema = json.loads(json.dumps(codec.SCHEMA_SOURCES["Email"]))
    schema["fields"].append(field)
    return schema


@pytest.mark.parametrize(
    ("field_type", "default"),
    [
        ({"type": "enum", "name": "E", "symbols": ["A"]}, DELETE),
        ({"type": "array", "items": "string"}, DELETE),
        ("boolean", DELETE),
        (["null", "string", "int"], None),
        ({"type": "int", "logicalType": "date"}, DELETE),
        ({"type": "map", "values": "int"}, DELETE),
        # A default the slow checker would change: the fast path could not tell it apart.
        ({"type": "string", "logicalType": "uuid"}, UPPER_UUID),
        ({"type": "long", "logicalType": "timestamp-millis"}, 0),
        (
            {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]},
            {"a": "x"},
        ),
    ],
)
def test_an_unexpressed_schema_has_no_fast_decoder(field_type: Any, default: Any) -> None:
    with pytest.raises(Unsupported):
        fast_decoder(schema_with(field_type, default), EMAIL_RULES, EmailPayload, "Email")


def test_a_type_without_a_fast_decoder_takes_the_slow_path(tmp_path: Path) -> None:
    # A schema the slow checker takes and the fast path cannot express (a default the checker
    # would normalise), registered at run time: compiled without a fast decoder, decoded and
    # refused all the same, and no other type loses its own.
    schema = schema_with({"type": "string", "logicalType": "uuid"}, UPPER_UUID)
    schema["name"] = "SlowEmail"
    (tmp_path / "SlowEmail.avsc").write_text(json.dumps(schema))
    spec = EventType("SlowEmail", EmailPayload, tmp_path / "SlowEmail.avsc", rules=EMAIL_RULES)
    event_types.register(spec)
    try:
        assert compiled_type("SlowEmail").fast is None
        assert [n for n in TYPES if compiled_type(n).fast is None] == []
        valid = raw(as_json(event_type="SlowEmail"))
        assert slow(valid, "SlowEmail")[0] == "event"
        assert outcome(lambda: decode(valid, None, "SlowEmail")) == slow(valid, "SlowEmail")
        bad = raw(as_json(event_type="SlowEmail", payload__to="nobody"))
        assert outcome(lambda: decode(bad, None, "SlowEmail")) == slow(bad, "SlowEmail")
        assert slow(bad, "SlowEmail")[1][0] == "bad_address"
    finally:
        event_types.unregister("SlowEmail")


def test_field_names_python_cannot_use_as_attributes() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "from", "type": "string"},
            {"name": "__x", "type": ["null", "string"], "default": None},
            {"name": "ok", "type": {"type": "map", "values": "string"}, "default": {"a": "b"}},
        ],
    }
    struct_type, convert = fast_json._record(schema, {}, "", "T")
    parse = msgspec.json.Decoder(struct_type).decode
    assert convert(parse(b'{"from": "a", "__x": "b"}')) == {
        "from": "a",
        "__x": "b",
        "ok": {"a": "b"},
    }
    first, second = (convert(parse(b'{"from": "a"}'))["ok"] for _ in range(2))
    assert first == second and first is not second  # a fresh default every time


# --- Properties: hostile input, both paths, the same outcome ----------------------------------

PROPERTY = settings(
    max_examples=1000,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)
QUICK = settings(PROPERTY, max_examples=300)
# Every code point, lone surrogates included (json.dumps escapes them), weighted towards the
# ones the rules care about.
nasty_chars = st.characters(codec=None) | st.sampled_from(
    [
        *"\x00\x01\t\n\r\x1b\x7f\x80\x9f\u2028\u2029\u202a\u202e\u2066\u2069\ufeff\ufffe",
        *"\ud800\udfff\U0001f600@.=?",
    ]
)
nasty_text = st.text(nasty_chars, max_size=30) | st.sampled_from(
    ["", "a@example.com", "=?utf-8?q?x?=", "k" * 500, "k" * 501, "2026-11-29T03:00:00Z"]
)
big_ints = (
    st.sampled_from(
        [
            *(0, -1, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1),
            *(2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30),
            *(253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_001),
        ]
    )
    | st.integers()
)
timestamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.sampled_from(
    ["2026-11-29T03:00:00", "2026-11-29T03:00:00+25:00", "0001-01-01T00:00:00+00:01", "2026-W48"]
)
scalars = (
    st.none()
    | st.booleans()
    | big_ints
    | st.floats(allow_nan=False)
    | nasty_text
    | timestamps
    | st.uuids().map(lambda u: str(u).upper())
)
hostile = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(nasty_text, children, max_size=3)
    ),
    max_leaves=8,
)


def _dumps(doc: Any, rng: random.Random) -> bytes:
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


@st.composite
def mutated_events(
    draw: st.DrawFn, events: st.SearchStrategy[Event] | None = None
) -> tuple[bytes, str]:
    """A valid event's JSON (of `events`; by default `valid_events()`) after a few hostile
    edits to its fields, its text or its bytes."""
    event = draw(valid_events() if events is None else events)
    event_type = draw(st.sampled_from([event.event_type] * 4 + TYPES))  # sometimes off-topic
    doc = json.loads(encode_json(event))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(0, 3))):
        target = (
            doc if draw(st.booleans()) or type(doc.get("payload")) is not dict else doc["payload"]
        )
        action = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        name = draw(st.sampled_from(sorted(target) or ["x"]))
        if action == "replace":
            target[name] = draw(hostile)
        elif action == "delete":
            target.pop(name, None)
        elif action == "add":
            target[draw(nasty_text)] = draw(hostile)
        else:
            target[name] = {"v": target.get(name)} if draw(st.booleans()) else [target.get(name)]
    value = _dumps(doc, rng)
    for _ in range(draw(st.integers(0, 2))):
        value = draw(_text_edits(value))
    return value, event_type


@st.composite
def _text_edits(draw: st.DrawFn, value: bytes) -> bytes:
    edit = draw(
        st.sampled_from(
            ["duplicate", "escape", "bytes", "insert", "truncate", "wrap", "digits", "bom"]
        )
    )
    position = draw(st.integers(0, len(value)))
    if edit == "duplicate":  # a key again, before or after the original one
        key = draw(st.sampled_from([b"event_id", b"key", b"payload", b"occurred_at", b"to"]))
        item = b'"' + key + b'": ' + _dumps(draw(hostile), random.Random(position))
        if draw(st.booleans()):
            return value.replace(b"{", b"{" + item + b", ", 1)
        return value[:-1] + b", " + item + b"}"
    if edit == "escape":  # a field name spelled with an escape: the same name to json
        key = draw(st.sampled_from([b"event_id", b"key", b"payload", b"to", b"parameters"]))
        spelled = b'"\\u%04x' % key[0] + key[1:] + b'"'
        return value.replace(b'"' + key + b'"', spelled, 1)
    if edit == "bytes":
        return value[:position] + draw(st.binary(min_size=1, max_size=4)) + value[position:]
    if edit == "insert":
        snippet = draw(st.sampled_from([b"\\u0000", b"\\ud800", b"\xff", b"\xc0\x80", b"\x00"]))
        return value[:position] + snippet + value[position:]
    if edit == "truncate":
        return value[:position]
    if edit == "wrap":
        return draw(st.sampled_from([b" \t\r\n", b"\x0b", b"[", b"\xc2\xa0"])) + value
    if edit == "digits":  # an integer json.dumps would refuse to write
        return re.sub(
            rb"(?<![\w.])\d+(?![\w.])", b"9" * draw(st.sampled_from([4300, 4301])), value, count=1
        )
    return b"\xef\xbb\xbf" + value


@PROPERTY
@given(mutated_events())
def test_property_mutated_events_get_the_same_outcome(case: tuple[bytes, str]) -> None:
    assert_same(*case)


@QUICK
@given(st.data())
def test_property_a_type_registered_at_run_time_too(data: st.DataObject) -> None:
    with toy.registered():
        seeds = st.integers(0, 2**32)
        tallies = seeds.map(lambda seed: sample_events(toy.NAME, 1, seed=seed)[0])
        assert_same(*data.draw(mutated_events(tallies)))


@PROPERTY
@given(valid_events(), st.data())
def test_property_any_string_in_any_string_field(e: Event, data: st.DataObject) -> None:
    doc = json.loads(encode_json(e))
    fields = [("", k) for k in doc if k not in ("payload", "schema_version", "occurred_at")]
    fields += [("payload", k) for k in doc["payload"] if k != "parameters"]
    where, name = data.draw(st.sampled_from(fields))
    target = doc[where] if where else doc
    target[name] = data.draw(nasty_text)
    if "parameters" in doc["payload"] and data.draw(st.booleans()):
        doc["payload"]["parameters"] = {data.draw(nasty_text): data.draw(nasty_text)}
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    assert_same(_dumps(doc, rng), e.event_type)


@QUICK
@given(valid_events(), st.sampled_from([True, False]))
def test_property_valid_events_are_accepted_by_the_fast_path(e: Event, ascii_: bool) -> None:
    value = json.dumps(json.loads(encode_json(e)), ensure_ascii=ascii_).encode()
    fast = assert_same(value, e.event_type)
    # valid_events() draws no NUL; everything else it draws the fast path must take itself.
    assert fast == e


@QUICK
@given(st.binary(max_size=300), st.sampled_from(TYPES))
def test_property_arbitrary_bytes(value: bytes, event_type: str) -> None:
    if value:
        assert_same(value, event_type)


def test_the_decode_benchmark_runs() -> None:
    # bench/decode.py needs no services, so its smoke run lives with the unit tests.
    from bench import decode as bench_decode

    report = bench_decode.run(events=20, rounds=2)
    assert report["fast_types"] == list(event_types.names())
    for row in report["types"]:
        assert set(row["variants"]) == {"slow", "fast", "json"}
        assert all(len(v["rounds_us_cpu"]) == 2 for v in row["variants"].values())
        assert row["fast_vs_slow"] > 0
    assert "fast/slow" in bench_decode.render_text(report)
