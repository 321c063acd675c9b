"""Realistic, valid events of every type: for `qchem-events sample | kcat -P`, tests and benchmarks.

With a `seed` the output is reproducible apart from `occurred_at` (always "now", so retention
and lag dashboards treat sample events like real ones) - event ids included, so producing the
same seeded sample twice yields duplicates the consumer will drop. Without a seed, ids are
fresh uuid4s.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.codec import encode_json
from schemas.events import (
    PAYLOAD_TYPES,
    ChemicalLookupPayload,
    ChemicalStatusPayload,
    EmailPayload,
    Event,
    ReportPayload,
)

PRODUCER = "qchem-events sample"

# Real substances with their real CAS numbers, so a lookup against a chemical API can succeed.
CAS_NUMBERS: tuple[str, ...] = (
    "50-00-0",  # formaldehyde
    "71-43-2",  # benzene
    "108-88-3",  # toluene
    "64-17-5",  # ethanol
    "67-56-1",  # methanol
    "67-64-1",  # acetone
    "67-66-3",  # chloroform
    "75-09-2",  # dichloromethane
    "79-01-6",  # trichloroethylene
    "80-05-7",  # bisphenol A
    "117-81-7",  # DEHP
    "335-67-1",  # PFOA
    "7439-92-1",  # lead
    "7439-97-6",  # mercury
    "7440-43-9",  # cadmium
    "7440-02-0",  # nickel
    "7440-38-2",  # arsenic
    "12001-29-5",  # chrysotile asbestos
)
STATUSES: tuple[str, ...] = ("APPROVED", "RESTRICTED", "BANNED", "UNDER_REVIEW")
REGULATIONS: tuple[str, ...] = (
    "REACH Annex XVII entry {n}",
    "REACH Annex XIV entry {n}",
    "CLP Annex VI index {n}",
    "RoHS Annex II",
    "TSCA Section 6",
    "Stockholm Convention Annex A",
)
REPORT_TYPES: tuple[str, ...] = (
    "inventory_summary",
    "compliance_status",
    "sds_expiry",
    "restricted_substances",
)
SITES: tuple[str, ...] = ("north-lab", "south-lab", "pilot-plant", "warehouse-2")


def chemical_id(n: int) -> str:
    return f"CHEM-{n:05d}"


def _chemical_status(n: int, rng: random.Random) -> tuple[str, Any]:
    chem = chemical_id(n)
    regulation = rng.choice(REGULATIONS).format(n=rng.randint(1, 80))
    cas = CAS_NUMBERS[n % len(CAS_NUMBERS)] if rng.random() < 0.9 else None
    return chem, ChemicalStatusPayload(chem, rng.choice(STATUSES), regulation, cas)


def _email(n: int, rng: random.Random) -> tuple[str, Any]:
    to = f"user{n}@example.com"
    chem = chemical_id(rng.randint(1, 99_999))
    status = rng.choice(STATUSES).replace("_", " ").lower()
    subject = f"{chem} is now {status}"
    body = (
        f"Hello user{n},\n\nThe regulatory status of {chem} changed to {status}. "
        "Please review the affected inventory.\n\n-- Q-Chem"
    )
    return to, EmailPayload(to, subject, body)


def _report(n: int, rng: random.Random) -> tuple[str, Any]:
    report_id = f"RPT-2026-{n:06d}"
    parameters = {"site": rng.choice(SITES), "format": rng.choice(("pdf", "csv", "xlsx"))}
    if rng.random() < 0.5:
        parameters["include_archived"] = rng.choice(("true", "false"))
    requested_by = f"user{rng.randint(1, 500)}@example.com"
    return report_id, ReportPayload(report_id, rng.choice(REPORT_TYPES), requested_by, parameters)


def _chemical_lookup(n: int, rng: random.Random) -> tuple[str, Any]:
    chem = chemical_id(n)
    cas = CAS_NUMBERS[n % len(CAS_NUMBERS)] if rng.random() < 0.7 else None
    return chem, ChemicalLookupPayload(chem, cas)


_MAKERS: dict[str, Callable[[int, random.Random], tuple[str, Any]]] = {
    "ChemicalStatus": _chemical_status,
    "Email": _email,
    "Report": _report,
    "ChemicalLookup": _chemical_lookup,
}


def sample_events(
    event_type: str, count: int, *, seed: int | None = None, keys: int | None = None
) -> list[Event]:
    """`count` valid `event_type` events with unique ids and strictly increasing occurred_at.

    The key is the entity the event is about (chemical id, recipient, report id). With `keys`,
    entities repeat round-robin so exactly min(count, keys) distinct keys appear - what an
    ordering or partitioning test needs.
    """
    if event_type not in _MAKERS:
        raise ValueError(f"unknown event type {event_type!r}; choose from {list(PAYLOAD_TYPES)}")
    if count < 0:
        raise ValueError("count must be 0 or more")
    if keys is not None and keys < 1:
        raise ValueError("keys must be 1 or more")
    # The type is part of the seed: samples of different types must not share event ids.
    rng = random.Random(f"{event_type}:{seed}") if seed is not None else random.Random()
    make = _MAKERS[event_type]
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    # One millisecond apart, the last one now: increasing, and never in the future.
    first = now - timedelta(milliseconds=max(count - 1, 0))
    events = []
    for i in range(count):
        key, payload = make((i % keys if keys else i) + 1, rng)
        # A seeded run draws its ids from rng too, so it is reproducible end to end.
        event_id = (
            uuid.UUID(int=rng.getrandbits(128), version=4) if seed is not None else uuid.uuid4()
        )
        events.append(
            Event(
                event_id=str(event_id),
                event_type=event_type,
                occurred_at=first + timedelta(milliseconds=i),
                producer=PRODUCER,
                schema_version=1,
                key=key,
                payload=payload,
            )
        )
    return events


def sample_json_lines(
    event_type: str, count: int, *, seed: int | None = None, keys: int | None = None
) -> Iterator[str]:
    """One compact JSON document per event, without newline: a line of `kcat -P` input."""
    for event in sample_events(event_type, count, seed=seed, keys=keys):
        yield encode_json(event).decode("utf-8")
