"""Kafka record value <-> `Event`, in JSON (what people type into kcat) or schemaless Avro.

`decode` is the single gate between untrusted bytes and the handlers: it either returns a fully
validated `Event` or raises `InvalidEvent` with a stable reason code - never any other exception,
whatever the bytes - so the consumer can route every bad record to the DLQ without a
catch-all that would also swallow its own bugs.

The wire format is chosen by the `content-type` header (JSON when absent). Both formats are
checked against the same `.avsc` schema by the same compiled checker (`schemas.validation`),
so a record valid in one format is valid in the other, and both decode to equal events.
A plain JSON value meets a msgspec fast path first (`schemas.fast_json`, built per type with
its checker), which may only accept, with an event equal to this path's; whatever it does not
accept is decided here.
A value without the Avro header that starts with the magic byte 0x00 is Schema Registry framed
Avro: its writer schema comes from the registry by id and is resolved against ours
(`schemas.registry`). Then, and only then, `decode` may also raise `RegistryUnavailable`:
not a verdict on the record, which the caller holds until the registry answers.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from common import event_types
from schemas.compiled import SCHEMA_SOURCES, SCHEMAS, CompiledType, compiled
from schemas.events import Event
from schemas.registry import WriterSchemas, frame_id, framed
from schemas.validation import (
    MAX_JSON_DEPTH,
    InvalidEvent,
    datetime_to_millis,
    json_depth_exceeds,
    json_type,
    short_repr,
    to_event,
)

__all__ = [
    "AVRO",
    "CONTENT_TYPE_HEADER",
    "DEFAULT_MAX_BYTES",
    "JSON",
    "SCHEMAS",
    "SCHEMA_SOURCES",
    "InvalidEvent",
    "content_type_of",
    "decode",
    "encode_avro",
    "encode_json",
    "headers_for",
]

CONTENT_TYPE_HEADER: Final = "content-type"
JSON: Final = "application/json"
AVRO: Final = "application/avro"
# Other names producers use for the same schemaless Avro body; all are accepted on read.
_AVRO_ALIASES: Final = frozenset({AVRO, "avro/binary", "application/vnd.qchem+avro"})
DEFAULT_MAX_BYTES: Final = 1_048_576

Headers = Sequence[tuple[str, bytes | None]]

# The registered types' schemas, parsed and compiled once per type: schemas/compiled.py.

# What fastavro raises on truncated or garbage input (found by fuzzing, see the unit tests).
# Deliberately not `Exception`: a TypeError or AttributeError would be a bug in this module or
# in fastavro, and must surface rather than be filed in the DLQ as the producer's fault.
_AVRO_READ_ERRORS: Final = (
    EOFError,  # a length or count running past the end
    IndexError,  # a varint cut off mid-way
    StopIteration,  # older fastavro: EOF at the start of a varint
    UnicodeDecodeError,  # a string that is not UTF-8
    ValueError,
    OverflowError,
    MemoryError,  # defensive: lengths are bounded by the input size, see test_codec
    struct.error,
    SchemaResolutionError,
)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads(text, **kwargs) would construct a decoder per call.
_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# --- Decoding ------------------------------------------------------------------------------


def content_type_of(headers: Headers | None) -> str:
    """`JSON` or `AVRO` from the record headers; JSON when there is no content-type header.

    Header names are matched case-insensitively and the last one wins (Kafka allows repeats);
    a null or empty value counts as absent; parameters such as `; charset=utf-8` are ignored.
    """
    raw: bytes | str | None = None
    for name, value in headers or ():
        if name.lower() == CONTENT_TYPE_HEADER:
            raw = value
    if not raw:
        return JSON
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes | bytearray) else str(raw)
    except UnicodeDecodeError:
        raise InvalidEvent("unknown_content_type", "content-type header is not ASCII") from None
    media_type = text.split(";", 1)[0].strip().lower()
    if media_type == JSON:
        return JSON
    if media_type in _AVRO_ALIASES:
        return AVRO
    raise InvalidEvent(
        "unknown_content_type",
        f"content-type {short_repr(text)}; expected {JSON} or one of {sorted(_AVRO_ALIASES)}",
    )


def decode(
    value: bytes | None,
    headers: Headers | None,
    expected_type: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    registry: WriterSchemas | None = None,
    key: bytes | None = None,
    fast_path: bool = True,
) -> Event:
    """The validated `Event` in a Kafka record value read from `expected_type`'s topic.

    Raises `InvalidEvent` for anything that is not a valid event of that type, and ValueError
    only for an `expected_type` that is not an event type at all (a caller bug, not bad data).
    A framed value (and a framed `key`) is read with `registry`'s writer schemas; see above.
    `fast_path=False` skips the fast path for plain JSON (tests and benchmarks compare the two;
    the outcome is the same either way, only the cost differs).
    """
    schema = compiled(expected_type)
    if schema is None:
        raise ValueError(
            f"expected_type {expected_type!r} is not one of {list(event_types.registered())}"
        )
    if not value:
        raise InvalidEvent("empty", "the record has no value (a tombstone?)")
    # Before any parsing: the size limit is what bounds the work every later step can do.
    if len(value) > max_bytes:
        raise InvalidEvent("oversized", f"{len(value)} bytes exceeds the {max_bytes}-byte limit")
    content_type = content_type_of(headers)
    if content_type == JSON and framed(value):
        datum = _read_framed(value, schema, registry)
        if framed(key):
            _read_framed_key(key, registry)  # type: ignore[arg-type]
    elif content_type == AVRO:
        datum = _read_avro(value, schema)
    else:
        if fast_path and schema.fast is not None:
            event = schema.fast(value)
            if event is not None:
                return event
        datum = _read_json(value)
    return to_event(datum, expected_type, schema.check, schema.spec.payload)


def _read_json(value: bytes) -> dict[str, Any]:
    try:
        # Decoded here, strictly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("bad_utf8", f"invalid UTF-8 at byte {exc.start}: {exc.reason}") from None
    try:
        obj = _JSON_DECODER.decode(text)
    except RecursionError:
        # The C parser gives up near the interpreter's recursion limit (~1000 levels).
        raise InvalidEvent("bad_json", "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over 4300 digits
        raise InvalidEvent("bad_json", str(exc)) from None
    if type(obj) is not dict:
        raise InvalidEvent(
            "not_an_object", f"expected a JSON object at the top level, got {json_type(obj)}"
        )
    # Counting brackets is a C-speed pass that clears every realistic event; only a document
    # with more than MAX_JSON_DEPTH brackets (in strings or not) pays for the walk.
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth_exceeds(obj):
        raise InvalidEvent("bad_json", f"nested more than {MAX_JSON_DEPTH} levels deep")
    return obj


def _read_avro(value: bytes, schema: CompiledType) -> dict[str, Any]:
    expected_type = schema.spec.name
    stream = io.BytesIO(value)
    try:
        datum = schemaless_reader(stream, schema.wire, None)
    except _AVRO_READ_ERRORS as exc:
        hint = ""
        if value[:1] == b"\x00":
            hint = " (starts with 0x00: Schema Registry framing? expected the bare Avro body)"
        raise InvalidEvent(
            "bad_avro",
            f"not a schemaless Avro {expected_type} body: {type(exc).__name__}: {exc}{hint}",
        ) from exc
    # fastavro stops once the record is read; leftovers mean a different schema wrote it.
    if stream.tell() != len(value):
        raise InvalidEvent(
            "bad_avro", f"{len(value) - stream.tell()} bytes left over after the {expected_type}"
        )
    return datum  # type: ignore[return-value]


def _read_framed(
    value: bytes, schema: CompiledType, registry: WriterSchemas | None
) -> dict[str, Any]:
    schema_id = frame_id(value)
    if registry is None:
        raise InvalidEvent(
            "no_schema_registry",
            f"Schema Registry framed Avro (schema id {schema_id}) but SCHEMA_REGISTRY_URL is not "
            "set: the writer schema cannot be looked up",
        )
    writer = registry.for_type(schema_id, schema.spec.name)
    return _resolve(value, writer, schema.wire, f"schema id {schema_id}")


def _read_framed_key(key: bytes, registry: WriterSchemas | None) -> Any:
    """The framed key's datum: read to check it, as the value is (nothing uses it further)."""
    schema_id = frame_id(key)
    if registry is None:
        raise InvalidEvent(
            "no_schema_registry",
            f"the key is Schema Registry framed (schema id {schema_id}) but SCHEMA_REGISTRY_URL "
            "is not set",
        )
    return _resolve(key, registry.for_key(schema_id), None, f"key schema id {schema_id}")


def _resolve(framed_bytes: bytes, writer: Any, reader: Any, what: str) -> Any:
    """The body after the 5-byte frame, written with `writer`, read as `reader`."""
    stream = io.BytesIO(framed_bytes)
    stream.seek(5)
    try:
        datum = schemaless_reader(stream, writer, reader)
    except _AVRO_READ_ERRORS as exc:
        raise InvalidEvent(
            "bad_avro", f"not an Avro body of {what}: {type(exc).__name__}: {exc}"
        ) from exc
    if stream.tell() != len(framed_bytes):
        raise InvalidEvent(
            "bad_avro", f"{len(framed_bytes) - stream.tell()} bytes left over after {what}"
        )
    return datum


# --- Encoding ------------------------------------------------------------------------------


def avro_datum(event: Event) -> dict[str, Any]:
    """The event as the dict an Avro serializer takes (occurred_at a datetime): what an
    upstream producer hands its serializer (tests/support/registry.py produces that way)."""
    return _datum(event)[1]


def _datum(event: Event) -> tuple[CompiledType, dict[str, Any]]:
    """The event's compiled schema, and the event as an Avro-shaped dict, occurred_at still a
    datetime."""
    schema = compiled(event.event_type)
    if schema is None or type(event.payload) is not schema.spec.payload:
        raise TypeError(
            f"a {event.event_type!r} event needs a "
            f"{getattr(schema and schema.spec.payload, '__name__', '?')} payload, "
            f"got {type(event.payload).__name__}"
        )
    payload = {name: getattr(event.payload, name) for name in schema.payload_fields}
    for name, value in payload.items():
        if isinstance(value, Mapping):  # a map field, e.g. Report's parameters
            payload[name] = dict(value)
    return schema, {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at,
        "producer": event.producer,
        "schema_version": event.schema_version,
        "key": event.key,
        "payload": payload,
    }


def encode_json(event: Event) -> bytes:
    """The event as one compact line of UTF-8 JSON, occurred_at as ISO-8601 with millis and Z."""
    _, datum = _datum(event)
    if event.occurred_at.utcoffset() is None:  # astimezone() would read it as local time
        raise ValueError(f"naive occurred_at {event.occurred_at!r}: must be timezone-aware")
    moment = event.occurred_at.astimezone(UTC).replace(tzinfo=None)
    datum["occurred_at"] = moment.isoformat(timespec="milliseconds") + "Z"
    return _JSON_ENCODER.encode(datum).encode("utf-8")


def encode_avro(event: Event) -> bytes:
    """The event as a schemaless Avro body (no Schema Registry framing) of its type's schema."""
    schema, datum = _datum(event)
    datum["occurred_at"] = datetime_to_millis(event.occurred_at)
    stream = io.BytesIO()
    schemaless_writer(stream, schema.wire, datum)
    return stream.getvalue()


def headers_for(content_type: str) -> list[tuple[str, bytes]]:
    """Record headers announcing `content_type` (JSON, AVRO or an Avro alias)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != JSON and media_type not in _AVRO_ALIASES:
        raise ValueError(f"unknown content type {content_type!r}; use {JSON!r} or {AVRO!r}")
    return [(CONTENT_TYPE_HEADER, content_type.encode("ascii"))]
