"""The typed event every wire format decodes to.

An event is an envelope (id, type, time, producer, schema version, key) around a payload
whose shape depends on the event type. Payloads are validated against the type's Avro schema
before an `Event` is built, so handlers can trust the fields they read.
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


Payload = ChemicalStatusPayload | EmailPayload | ReportPayload | ChemicalLookupPayload

PAYLOAD_TYPES: dict[str, type[Any]] = {
    "ChemicalStatus": ChemicalStatusPayload,
    "Email": EmailPayload,
    "Report": ReportPayload,
    "ChemicalLookup": ChemicalLookupPayload,
}


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str  # canonical lower-case UUID string
    event_type: str  # one of PAYLOAD_TYPES
    occurred_at: datetime  # timezone-aware UTC, millisecond precision
    producer: str
    schema_version: int
    key: str  # the entity the event is about; also the Kafka record key
    payload: Any  # the PAYLOAD_TYPES[event_type] dataclass
