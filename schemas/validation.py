"""Checking a decoded datum against an event type's Avro schema, and the `InvalidEvent` error.

Both wire formats end here: the JSON path hands over the dict `json` parsed, the Avro path the
dict fastavro read. One checker per event type is compiled from the parsed `.avsc` once (by
schemas/compiled.py, at the type's first use) into plain closures, so a decode costs a few dict
look-ups and `type(...) is` tests per field - no schema walking per call - and a schema change
can never leave the JSON and the Avro paths disagreeing about what is valid. Rules Avro cannot
express (a non-empty key, an address with '@') are given to the compiler keyed by field path
(schemas/rules.py); a UUID is checked by its logical type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from common import event_types
from schemas.events import Event

Reason = Literal[
    "empty",
    "oversized",
    "bad_json",
    "bad_utf8",
    "not_an_object",
    "bad_avro",
    "unknown_content_type",
    "unknown_event_type",
    "wrong_topic",
    "missing_field",
    "wrong_type",
    "bad_value",
    "bad_headers",
    "bad_address",  # payload.to is not exactly one plain addr-spec
    "control_character",  # in a field that becomes a mail header or a report line
    "encoded_word",  # an RFC 2047 encoded word in a mail subject
    # Schema Registry framed Avro (schemas/registry.py)
    "bad_frame",  # the 0x00 magic byte, but shorter than the 5-byte frame
    "no_schema_registry",  # framed, and SCHEMA_REGISTRY_URL is not set
    "unknown_schema_id",  # the registry has no schema with the frame's id
    "incompatible_schema",  # the writer schema breaks the BACKWARD rule (names the field)
    "not_avro_schema",  # the id is a JSON Schema or Protobuf schema
    "bad_writer_schema",  # unparsable, or uses references
]
REASONS: Final[frozenset[str]] = frozenset(Reason.__args__)  # type: ignore[attr-defined]

MAX_DETAIL_CHARS: Final = 500  # a detail ends up in logs and DLQ headers
MAX_STRING_CHARS: Final = 100_000
MAX_KEY_CHARS: Final = 500  # it is also the Kafka record key; a longer one is a producer bug
MAX_JSON_DEPTH: Final = 64  # valid events nest 3 deep; anything deeper is garbage or an attack
_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
# Strict on purpose: uuid.UUID() also takes braces, "urn:uuid:", stray dashes, '+', '_' and
# surrounding blanks, and an id that only some consumers can parse breaks de-duplication.
_UUID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_MISSING: Final = object()


class InvalidEvent(Exception):
    """A record that can never be processed, whatever the retries: it belongs in the DLQ.

    `reason` is a short stable code (one of `REASONS`) for metrics and DLQ headers; `detail`
    says what is wrong and where (the field path), bounded so a hostile record cannot flood the
    logs. Payload values are never quoted, as they may be personal data; envelope values and
    map keys are, shortened.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:  # a typo here would silently split a metric series
            raise ValueError(f"unknown InvalidEvent reason {reason!r}")
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
        super().__init__(reason, detail)  # args round-trip through pickle
        self.reason: str = reason
        self.detail: str = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def short_repr(value: object, limit: int = 60) -> str:
    """`repr` cut to `limit` characters, for quoting envelope values in a detail."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: object) -> str:
    """The JSON name of a Python value's type, as a producer would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _wrong_type(path: str, expected: str, value: object) -> InvalidEvent:
    if value is _MISSING:  # see _record: an absent field fails its type test with this value
        return InvalidEvent("missing_field", f"{path} is required")
    return InvalidEvent("wrong_type", f"{path}: expected {expected}, got {json_type(value)}")


def json_depth_exceeds(obj: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON containers nest more than `limit` deep (`obj` itself is level 1).

    Level by level rather than recursively, so it cannot hit the recursion limit itself, and
    with list comprehensions, so a megabyte of `[[],[],...]` costs milliseconds, not seconds.
    """
    level: list[Any] = [obj] if type(obj) is dict or type(obj) is list else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return bool(level)


# --- Leaf checks -------------------------------------------------------------------------------
# Each returns the normalised value or raises InvalidEvent naming `path`.

Check = Callable[[Any], Any]


def _string_problem(value: str) -> str | None:
    if len(value) > MAX_STRING_CHARS:
        return f"longer than {MAX_STRING_CHARS} characters"
    # isascii() is O(1) in CPython, so the common case pays nothing for the surrogate test.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            return "not valid Unicode (lone surrogate)"
    if "\x00" in value:  # PostgreSQL text columns reject NUL; fail here, not in a handler
        return "contains a NUL character"
    return None


Rule = event_types.Rule  # rule(path, value): raises InvalidEvent (schemas/rules.py)


def _string(path: str, rule: Rule | None = None) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str:
            raise _wrong_type(path, "string", value)
        # One cheap pre-test so ordinary ASCII strings skip _string_problem entirely.
        if len(value) > MAX_STRING_CHARS or not value.isascii() or "\x00" in value:
            problem = _string_problem(value)
            if problem:
                raise InvalidEvent("bad_value", f"{path}: {problem}")
        if rule is not None:
            rule(path, value)
        return value

    return check


def _integer(path: str, avro_type: str, rule: Rule | None = None) -> Check:
    low, high = _INT32 if avro_type == "int" else _INT64

    def check(value: Any) -> int:
        if type(value) is not int:  # `is`, not isinstance: JSON true must not pass as 1
            raise _wrong_type(path, "integer", value)
        if not low <= value <= high:
            raise InvalidEvent("bad_value", f"{path}: out of range for an Avro {avro_type}")
        if rule is not None:
            rule(path, value)
        return value

    return check


def _uuid(path: str) -> Check:
    def check(value: Any) -> str:
        if type(value) is not str:
            raise _wrong_type(path, "string (a UUID)", value)
        # The pattern admits only ASCII hex and dashes, so no separate string checks.
        if _UUID_RE.fullmatch(value) is None:
            raise InvalidEvent("bad_value", f"{path}: {short_repr(value)} is not a UUID")
        return value.lower()

    return check


def datetime_to_millis(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds, rounded down.

    Naive datetimes are refused: they would silently be taken as local time.
    """
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: occurred_at must be timezone-aware")
    return (moment - _EPOCH) // _ONE_MS


def _timestamp_millis(path: str) -> Check:
    def out_of_range(value: object) -> InvalidEvent:
        return InvalidEvent("bad_value", f"{path}: {short_repr(value)} is outside years 1-9999")

    def check(value: Any) -> datetime:
        if type(value) is int:  # Avro, or epoch milliseconds in JSON
            try:
                return _EPOCH + timedelta(milliseconds=value)
            except OverflowError:
                raise out_of_range(value) from None
        if type(value) is not str:
            raise _wrong_type(path, "ISO-8601 string or integer epoch milliseconds", value)
        # JSON only: what a person typing into kcat writes. The length cap keeps the parser
        # away from megabyte strings.
        try:
            moment = datetime.fromisoformat(value) if len(value) <= 64 else None
        except ValueError:
            moment = None
        if moment is None:
            raise InvalidEvent("bad_value", f"{path}: {short_repr(value)} is not ISO-8601")
        if moment.tzinfo is not UTC:
            if moment.utcoffset() is None:
                raise InvalidEvent(
                    "bad_value", f"{path}: {short_repr(value)} has no timezone (add Z or +hh:mm)"
                )
            try:
                moment = moment.astimezone(UTC)
            except OverflowError:
                raise out_of_range(value) from None
        if moment.microsecond % 1000:  # the Avro type has millisecond precision
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return moment

    return check


def _string_map(path: str, rule: Rule | None = None) -> Check:
    def check(value: Any) -> dict[str, str]:
        if type(value) is not dict:
            raise _wrong_type(path, "object of strings", value)
        for key, item in value.items():
            for text, where in ((key, "key of"), (item, "value of")):
                if type(text) is not str:
                    raise _wrong_type(f"{path}[{short_repr(key, 40)}]", "string", text)
                # The common case skips _string_problem, as in _string.
                if not text.isascii() or len(text) > MAX_STRING_CHARS or "\x00" in text:
                    problem = _string_problem(text)
                    if problem:
                        raise InvalidEvent(
                            "bad_value", f"{path}[{short_repr(key, 40)}]: {where} entry {problem}"
                        )
                if rule is not None:
                    rule(f"{path}[{short_repr(key, 40)}] ({where} entry)", text)
        return dict(value)  # a copy: the Event must not share state with the input

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


# --- Compiling a parsed Avro schema into a checker ---------------------------------------------


def compile_checker(schema: Any, rules: Mapping[str, Rule], path: str = "") -> Check:
    """A checker for `schema` (as fastavro.parse_schema returns it), with `rules` (by field
    path, e.g. `payload.to`; schemas/rules.py) run after the type checks.

    Only the Avro features the event schemas use are supported; anything else fails at import
    rather than being silently left unchecked.
    """
    if isinstance(schema, list):
        branches = [s for s in schema if s != "null"]
        if len(schema) != 2 or len(branches) != 1:
            raise NotImplementedError(f"{path}: only [null, T] unions are supported")
        return _optional(compile_checker(branches[0], rules, path))
    if isinstance(schema, str):
        schema = {"type": schema}
    avro_type, logical = schema["type"], schema.get("logicalType")
    if avro_type == "record":
        return _record(schema, rules, path)
    rule = rules.get(path)
    if avro_type == "map" and schema["values"] == "string":
        return _string_map(path, rule)
    if rule is not None and (logical is not None or avro_type not in ("string", "int", "long")):
        raise NotImplementedError(f"{path}: rules apply to plain strings and integers only")
    if avro_type == "string":
        return _uuid(path) if logical == "uuid" else _string(path, rule)
    if avro_type == "long" and logical == "timestamp-millis":
        return _timestamp_millis(path)
    if avro_type in ("int", "long") and logical is None:
        return _integer(path, avro_type, rule)
    raise NotImplementedError(f"{path}: Avro type {schema!r} is not supported by the checker")


def _defaulted(check: Check, default: Any) -> Check:
    def check_or_default(value: Any) -> Any:
        if value is _MISSING:
            # Copy mutable defaults ({} for a map) so events never share them.
            return dict(default) if isinstance(default, dict) else default
        return check(value)

    return check_or_default


def _record(schema: dict[str, Any], rules: Mapping[str, Rule], path: str) -> Check:
    checks: list[tuple[str, Check]] = []
    for field in schema["fields"]:
        name = field["name"]
        check = compile_checker(field["type"], rules, f"{path}.{name}" if path else name)
        if "default" in field:
            check = _defaulted(check, field["default"])
        checks.append((name, check))
    where = path or "event"

    def check_record(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _wrong_type(where, "object", value)
        get = value.get
        # An absent field reaches its check as _MISSING, which fails the type test every
        # check starts with, and _wrong_type reports it as missing_field. One comprehension
        # is the fastest loop CPython offers; unknown fields are dropped (newer producers
        # may add fields).
        return {name: check(get(name, _MISSING)) for name, check in checks}

    return check_record


def to_event(datum: dict[str, Any], expected_type: str, check: Check, payload: type) -> Event:
    """The `Event` in `datum` (a JSON object or an Avro record) once it passes `check`, its
    payload a `payload` (the type's dataclass).

    The event type is looked at first, so a record on the wrong topic is reported as such
    rather than as a confusing field error against the wrong schema.
    """
    event_type = datum.get("event_type", _MISSING)
    if event_type is _MISSING:
        raise InvalidEvent("missing_field", "event_type is required")
    if type(event_type) is not str:
        raise _wrong_type("event_type", "string", event_type)
    if event_type != expected_type:
        known = event_types.registered()
        if event_type in known:
            raise InvalidEvent(
                "wrong_topic", f"a {event_type} event on the topic of {expected_type} events"
            )
        raise InvalidEvent(
            "unknown_event_type",
            f"event_type {short_repr(event_type)} is not one of {', '.join(known)}",
        )
    fields = check(datum)
    # Positional, as keywords cost ~0.5 us per event; a unit test pins Event's field order
    # to the schema's.
    return Event(
        fields["event_id"],
        event_type,
        fields["occurred_at"],
        fields["producer"],
        fields["schema_version"],
        fields["key"],
        payload(**fields["payload"]),
    )
