"""The typed event every wire format decodes to.

An event is an envelope (id, type, time, producer, schema version, key) around a payload
whose shape depends on the event type: a dataclass per type, its fields those of the payload
record in the type's Avro schema, in order (the four built-in ones here; registered in
schemas/catalog.py). Payloads are validated against the type's Avro schema before an `Event` is
built, so handlers can trust the fields they read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ChemicalStatusPayload:
    chemical_id: str
    status: str  # e.g. APPROVED, RESTRICTED, BANNED, UNDER_REVIEW
    regulation: str
    cas_number: str | None = None


@dataclass(frozen=True, slots=True)
class EmailPayload:
    to: str
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class ReportPayload:
    report_id: str
    report_type: str
    requested_by: str
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChemicalLookupPayload:
    chemical_id: str
    cas_number: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str  # canonical lower-case UUID string
    event_type: str  # a registered event type (common/event_types.py)
    occurred_at: datetime  # timezone-aware UTC, millisecond precision
    producer: str
    schema_version: int
    key: str  # the entity the event is about; also the Kafka record key
    payload: Any  # the payload dataclass its event type registered
