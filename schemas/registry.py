"""Writer schemas of Schema Registry framed Avro, and the BACKWARD rule they must meet.

Confluent's serializer (and every client modelled on it) writes a record value as

    0x00 | schema id (4 bytes, big-endian) | Avro body written with that schema

and keeps the writer's schema in a Schema Registry. `WriterSchemas` fetches the schema of an
id through confluent-kafka's `SchemaRegistryClient` (which caches it), checks once per id and
event type that our reader schema (`schemas/avro/<Type>.avsc`) can read what it wrote - the
BACKWARD rule, checked by Apache Avro's own `ReaderWriterCompatibilityChecker` - and keeps the
parsed result, so each id costs one HTTP request for the life of the process.

Three outcomes are kept apart, because they call for opposite actions:

* the registry cannot be asked (unreachable, erroring, its breaker open): `RegistryUnavailable`.
  Not a verdict on the record - the caller holds it until the registry answers;
* the registry answers that the id does not exist, or the writer schema breaks the rule:
  `InvalidEvent` with a reason naming the id or the field - the record goes to the DLQ;
* otherwise the parsed writer schema, ready for fastavro's schema resolution.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import avro.errors
import avro.schema
import cachetools
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType

from schemas.validation import InvalidEvent

__all__ = [
    "MAGIC",
    "REGISTRY_REASONS",
    "RegistryUnavailable",
    "WriterSchemas",
    "field_path",
    "frame_id",
    "framed",
    "incompatibilities",
]

# The InvalidEvent reasons only a registry can give (the unit tests cover them with mock://).
REGISTRY_REASONS: Final = frozenset(
    {"unknown_schema_id", "incompatible_schema", "not_avro_schema", "bad_writer_schema"}
)
MAGIC: Final = b"\x00"
FRAME_BYTES: Final = 5
# Schema Registry's "schema not found" (Confluent and Apicurio's ccompat API both use it).
_NOT_FOUND: Final = 40403

UNKNOWN_ID_TTL_S: Final = 60.0
T = TypeVar("T")


class Guard(Protocol):
    """A circuit breaker (consumers.breakers.DependencyGuard): `call` fails fast while open."""

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


class RegistryUnavailable(Exception):
    """The Schema Registry could not be asked; nothing is known about the record yet."""


def framed(value: bytes | None) -> bool:
    """True when `value` starts with the Schema Registry magic byte.

    Neither JSON nor a schemaless Avro body of our schemas can start with 0x00 (the first
    field is the event id, a non-empty string, whose length byte is never 0)."""
    return bool(value) and value[:1] == MAGIC  # type: ignore[index]


def frame_id(value: bytes) -> int:
    """The schema id of a framed record; InvalidEvent when the frame is cut short."""
    if len(value) < FRAME_BYTES:
        raise InvalidEvent(
            "bad_frame", f"{len(value)} bytes: too short for a Schema Registry frame (5 + body)"
        )
    return int(struct.unpack(">I", value[1:FRAME_BYTES])[0])


def field_path(schema: Any, location: str) -> str:
    """'payload.regulation' for the checker's location '/fields/6/type/fields/2' in `schema`."""
    names: list[str] = []
    node = schema
    for step in [part for part in location.split("/") if part]:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
            if isinstance(node, dict) and "name" in node and "type" in node:
                names.append(str(node["name"]))
        else:
            break
    return ".".join(names) or "(the record itself)"


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why data written with `writer` cannot be read with `reader` (BACKWARD); [] if it can.

    Both are schema JSON objects. Each entry names the reader's field path."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    # The checker reports a set of locations and a set of messages, not pairs: name every
    # field involved and every message, which for one problem (the usual case) reads plainly.
    fields = sorted({field_path(reader, loc) for loc in result.locations if loc != "/"})
    kinds = sorted(i.name for i in result.incompatibilities)
    details = "; ".join(sorted(str(m) for m in result.messages))
    return [f"field {f}" for f in fields] + [f"{', '.join(kinds)}: {details}"]


def _without_logical_types(schema: Any) -> Any:
    # Same reason as in codec: the shared checker converts raw longs and strings itself.
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(s) for s in schema]
    return schema


class WriterSchemas:
    """Writer schemas by id from a Schema Registry, checked against our reader schemas."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        readers: dict[str, Any],
        *,
        guard: Guard | None = None,
    ) -> None:
        self.client = client
        self.readers = readers  # event type -> reader schema JSON (logical types included)
        self.guard = guard
        self._lock = threading.Lock()  # one listener thread per event type shares this
        self._checked: dict[tuple[int, str], Any] = {}  # (id, type) -> parsed writer schema
        self._keys: dict[int, Any] = {}  # id -> parsed key schema
        # Ids the registry said it does not have, for a minute: a stream of records with made-up
        # ids must not become one registry request (on the poll thread) per record.
        self._unknown: cachetools.TTLCache[int, bool] = cachetools.TTLCache(
            maxsize=1024, ttl=UNKNOWN_ID_TTL_S
        )

    @classmethod
    def from_url(
        cls, url: str, readers: dict[str, Any], *, timeout_s: float, guard: Guard | None = None
    ) -> WriterSchemas:
        # No client-side retries: a failure is reported at once and the caller holds the
        # record (its breaker decides when to ask again), rather than blocking the poll loop
        # through the client's own backoff.
        client = SchemaRegistryClient.new_client(
            {"url": url, "timeout": timeout_s, "max.retries": 0}
        )
        return cls(client, readers, guard=guard)

    def for_type(self, schema_id: int, event_type: str) -> Any:
        """The parsed (logical types removed) writer schema of `schema_id` for `event_type`."""
        with self._lock:
            cached = self._checked.get((schema_id, event_type))
        if cached is not None:
            return cached
        writer = self._writer_json(schema_id)
        parsed = self._parse(schema_id, writer)  # first: the checker assumes a valid schema
        problems = incompatibilities(self.readers[event_type], writer)
        if problems:
            raise InvalidEvent(
                "incompatible_schema",
                f"writer schema id {schema_id} breaks the BACKWARD rule for {event_type}: "
                + "; ".join(problems),
            )
        with self._lock:
            self._checked[(schema_id, event_type)] = parsed
        return parsed

    def for_key(self, schema_id: int) -> Any:
        """The parsed writer schema of a framed key (any Avro schema; no reader to match)."""
        with self._lock:
            cached = self._keys.get(schema_id)
        if cached is None:
            cached = self._parse(schema_id, self._writer_json(schema_id))
            with self._lock:
                self._keys[schema_id] = cached
        return cached

    # -- the registry -----------------------------------------------------------------------

    def _writer_json(self, schema_id: int) -> Any:
        with self._lock:
            known_unknown = schema_id in self._unknown
        schema = None if known_unknown else self._fetch(schema_id)
        if schema is None:
            with self._lock:
                self._unknown[schema_id] = True
            raise InvalidEvent(
                "unknown_schema_id", f"schema id {schema_id} is not in the Schema Registry"
            )
        if (schema.schema_type or "AVRO").upper() != "AVRO":
            raise InvalidEvent(
                "not_avro_schema", f"schema id {schema_id} is {schema.schema_type}, not AVRO"
            )
        if schema.references:
            raise InvalidEvent(
                "bad_writer_schema", f"schema id {schema_id} uses references (not supported)"
            )
        try:
            return json.loads(schema.schema_str or "")
        except ValueError as exc:
            raise InvalidEvent(
                "bad_writer_schema", f"schema id {schema_id} is not JSON: {exc}"
            ) from None

    def _fetch(self, schema_id: int) -> Schema | None:
        """The registered schema, None when the registry says it does not exist."""
        try:
            if self.guard is not None:
                return self.guard.call(self._get, schema_id)
            return self._get(schema_id)
        except RegistryUnavailable:
            raise
        except Exception as exc:  # CircuitBreakerError: the breaker is open
            raise RegistryUnavailable(f"schema id {schema_id}: {exc}") from exc

    def _get(self, schema_id: int) -> Schema | None:
        # Inside the breaker: only "cannot ask" counts as a failure; "not found" is an answer.
        try:
            return self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code == _NOT_FOUND:
                return None
            raise RegistryUnavailable(f"Schema Registry error: {exc}") from exc
        except Exception as exc:
            # Short of an answer - a transport error (from httpx or httpx2: the client picks
            # either), a timeout, a non-JSON error page - the registry could not be asked.
            raise RegistryUnavailable(
                f"Schema Registry unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _parse(schema_id: int, writer: Any) -> Any:
        try:
            return parse_schema(_without_logical_types(writer))
        except (SchemaParseException, UnknownType, avro.errors.AvroException, ValueError) as exc:
            raise InvalidEvent(
                "bad_writer_schema", f"schema id {schema_id} is not a valid Avro schema: {exc}"
            ) from None
