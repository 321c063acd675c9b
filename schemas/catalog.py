"""The built-in event types, one registration each (README "Add an event type").

A registration (`common/event_types.py`) names the type and gives its payload dataclass
(schemas/events.py), how to make a realistic sample of it, and the defaults of its settings;
its reader schema is `avro/<name>.avsc`. Everything keyed by event type - the settings'
EVENT_TYPES and per-type defaults, the codec's schemas and checkers, the samples, the topics,
the CLI's choices - derives from these. The handlers are registered in
consumers/handlers/__init__.py. Imported by `schemas/__init__.py`, so any use of the `schemas`
package registers them.
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

from common.event_types import EventType, register
from schemas.events import (
    ChemicalLookupPayload,
    ChemicalStatusPayload,
    EmailPayload,
    ReportPayload,
)
from schemas.rules import address_rule, one_line_rule, subject_rule

__all__ = ["BUILT_IN", "CAS_NUMBERS", "STATUSES"]

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


def _chemical_status_sample(n: int, rng: random.Random) -> tuple[str, Any]:
    chem = chemical_id(n)
    regulation = rng.choice(REGULATIONS).format(n=rng.randint(1, 80))
    cas = CAS_NUMBERS[n % len(CAS_NUMBERS)] if rng.random() < 0.9 else None
    return chem, ChemicalStatusPayload(chem, rng.choice(STATUSES), regulation, cas)


def _email_sample(n: int, rng: random.Random) -> tuple[str, Any]:
    to = f"user{n}@example.com"
    chem = chemical_id(rng.randint(1, 99_999))
    status = rng.choice(STATUSES).replace("_", " ").lower()
    subject = f"{chem} is now {status}"
    body = (
        f"Hello user{n},\n\nThe regulatory status of {chem} changed to {status}. "
        "Please review the affected inventory.\n\n-- Q-Chem"
    )
    return to, EmailPayload(to, subject, body)


def _report_sample(n: int, rng: random.Random) -> tuple[str, Any]:
    report_id = f"RPT-2026-{n:06d}"
    parameters = {"site": rng.choice(SITES), "format": rng.choice(("pdf", "csv", "xlsx"))}
    if rng.random() < 0.5:
        parameters["include_archived"] = rng.choice(("true", "false"))
    requested_by = f"user{rng.randint(1, 500)}@example.com"
    return report_id, ReportPayload(report_id, rng.choice(REPORT_TYPES), requested_by, parameters)


def _chemical_lookup_sample(n: int, rng: random.Random) -> tuple[str, Any]:
    chem = chemical_id(n)
    cas = CAS_NUMBERS[n % len(CAS_NUMBERS)] if rng.random() < 0.7 else None
    return chem, ChemicalLookupPayload(chem, cas)


BUILT_IN: tuple[EventType, ...] = tuple(
    register(event_type)
    for event_type in (
        EventType(
            "ChemicalStatus",
            ChemicalStatusPayload,
            sample=_chemical_status_sample,
            critical=True,  # a status change nobody applied must be decided by a person
        ),
        # Scenario 2: emails get attempts 1, 2, 3 then the DLQ, redriven while SMTP is up.
        EventType(
            "Email",
            EmailPayload,
            sample=_email_sample,
            rules={"payload.to": address_rule, "payload.subject": subject_rule},
            retries=2,
            auto_redrive=True,
        ),
        EventType(
            "Report",
            ReportPayload,
            sample=_report_sample,
            # Every field ends up in the report text (consumers/handlers/report.py).
            rules={f"payload.{f.name}": one_line_rule for f in fields(ReportPayload)},
        ),
        EventType(
            "ChemicalLookup", ChemicalLookupPayload, sample=_chemical_lookup_sample, critical=True
        ),
    )
)
