"""Each registered event type's reader schema, read, parsed and compiled once, on first use.

The registry (common/event_types.py) says where a type's `.avsc` is; this module reads it, has
fastavro parse it twice (as written, and without logical types for the wire - see
`_without_logical_types`), compiles its checker (schemas/validation.py, with the field rules
of schemas/rules.py), and checks that the payload dataclass mirrors the schema's payload
record. With the same parsed schema, rules and payload class it builds the type's fast
decoder for plain JSON (schemas/fast_json.py), or None when the schema uses something the fast
path cannot express. A type registered at run time (a test's) is compiled at its first use,
like a built-in one; registered again, it is compiled again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from fastavro import parse_schema

from common import event_types
from common.event_types import EventType
from schemas.fast_json import FastDecoder, Unsupported, fast_decoder
from schemas.rules import ENVELOPE_RULES
from schemas.validation import Check, Rule, compile_checker

__all__ = ["SCHEMAS", "SCHEMA_SOURCES", "CompiledType", "compiled"]


def _source(event_type: EventType) -> dict[str, Any]:
    if event_type.schema is not None:
        text = event_type.schema.read_text(encoding="utf-8")
    else:
        # importlib.resources, not __file__: works from a wheel or zip as well as a checkout.
        text = (files("schemas") / "avro" / f"{event_type.name}.avsc").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _without_logical_types(schema: Any) -> Any:
    """`schema` with every logicalType removed (the bytes on the wire are the same).

    fastavro reads and writes with this plain form so that it hands back the raw string and
    long; the shared checker then converts them exactly as it does for JSON. Otherwise a
    malformed UUID would surface as a fastavro ValueError indistinguishable from bad bytes.
    """
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(s) for s in schema]
    return schema


@dataclass(frozen=True, slots=True)
class CompiledType:
    """One registered event type, its schema read, parsed and compiled (once per type)."""

    spec: EventType
    source: dict[str, Any]  # as in the .avsc file
    parsed: Any  # fastavro's, logical types included
    wire: Any  # fastavro's, without logical types (see _without_logical_types)
    check: Check
    payload_fields: tuple[str, ...]
    # The msgspec fast path for plain JSON values: an Event equal to check's, or None when
    # it is not sure (then check decides). None: a schema the fast path cannot express.
    fast: FastDecoder | None


_compiled: dict[str, CompiledType] = {}


def _compile(event_type: EventType) -> CompiledType:
    source = _source(event_type)
    parsed = parse_schema(copy.deepcopy(source))
    names = event_type.payload_fields
    schema_names = tuple(f["name"] for f in _payload_record(source)["fields"])
    if names != schema_names:
        raise ValueError(
            f"{event_type.name}: the payload dataclass's fields {list(names)} must be the "
            f"schema's payload fields, in order: {list(schema_names)}"
        )
    rules = {**ENVELOPE_RULES, **event_type.rules}
    unknown = set(rules) - _field_paths(source)
    if unknown:
        raise ValueError(f"{event_type.name}: rules for fields its schema lacks: {sorted(unknown)}")
    wire = parse_schema(_without_logical_types(source))
    check = compile_checker(parsed, rules)
    fast = _fast(parsed, rules, event_type)
    return CompiledType(event_type, source, parsed, wire, check, names, fast)


def _fast(parsed: Any, rules: dict[str, Rule], event_type: EventType) -> FastDecoder | None:
    try:
        return fast_decoder(parsed, rules, event_type.payload, event_type.name)
    except Unsupported:
        return None  # the type's values all take the slow path


def _field_paths(record: dict[str, Any], prefix: str = "") -> set[str]:
    """Every field path of a record schema ("key", "payload", "payload.to", ...)."""
    paths = set()
    for field in record["fields"]:
        path = f"{prefix}{field['name']}"
        paths.add(path)
        if isinstance(field["type"], dict) and field["type"].get("type") == "record":
            paths |= _field_paths(field["type"], path + ".")
    return paths


def _payload_record(source: dict[str, Any]) -> dict[str, Any]:
    by_name = {f["name"]: f["type"] for f in source.get("fields", ())}
    record = by_name.get("payload")
    if not isinstance(record, dict) or record.get("type") != "record":
        raise ValueError(f"schema {source.get('name')!r}: no `payload` record field")
    return record


def compiled(name: str) -> CompiledType | None:
    """The compiled schema of registered type `name`; None for a name nobody registered.

    Compiled on first use and kept while the registration stands: a type registered again
    (a test's own) is compiled again."""
    entry = _compiled.get(name)
    spec = event_types.get(name)
    if entry is not None and entry.spec is spec:
        return entry
    if spec is None:
        return None
    entry = _compile(spec)
    _compiled[name] = entry
    return entry


class _Schemas(Mapping[str, Any]):
    """A read-only mapping over the registered types, reading one field of `CompiledType`."""

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def __getitem__(self, name: str) -> Any:
        entry = compiled(name)
        if entry is None:
            raise KeyError(name)
        return getattr(entry, self._attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(event_types.registered()))

    def __len__(self) -> int:
        return len(event_types.registered())


SCHEMAS: Final[Mapping[str, Any]] = _Schemas("parsed")
"""The parsed schema of each event type, logical types included (e.g. to register them)."""
SCHEMA_SOURCES: Final[Mapping[str, dict[str, Any]]] = _Schemas("source")
"""Each event type's schema as JSON, as in its .avsc file (to register, or to check against)."""
