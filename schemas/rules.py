"""Rules Avro cannot express, by field path: what `compile_checker` runs after a field's
type check (a UUID or a timestamp is checked by its logical type, in schemas/validation.py).

A rule applies to the field of that path in every event type's schema; the envelope's in all
of them, the payload's only where the payload has the field.
"""

from __future__ import annotations

from typing import Final

from schemas.safe_text import address_problem, control_problem, subject_problem
from schemas.validation import MAX_KEY_CHARS, InvalidEvent, Rule

__all__ = ["FIELD_RULES"]


def _key_rule(path: str, value: str) -> None:
    if not value:
        raise InvalidEvent("bad_value", f"{path}: must not be empty")
    if len(value) > MAX_KEY_CHARS:
        raise InvalidEvent("bad_value", f"{path}: longer than {MAX_KEY_CHARS} characters")


def _schema_version_rule(path: str, value: int) -> None:
    if value < 1:
        raise InvalidEvent("bad_value", f"{path}: must be 1 or more, got {value}")


def _address_rule(path: str, value: str) -> None:
    problem = address_problem(value)
    if problem is not None:
        raise InvalidEvent("bad_address", f"{path}: {problem}")


def _subject_rule(path: str, value: str) -> None:
    problem = subject_problem(value)
    if problem is not None:
        reason = "control_character" if "control" in problem else "encoded_word"
        raise InvalidEvent(reason, f"{path}: {problem}")


def _one_line_rule(path: str, value: str) -> None:
    # Written into a report line: a CR/LF would forge the lines after it (issue 17 #8).
    problem = control_problem(value)
    if problem is not None:
        raise InvalidEvent("control_character", f"{path}: {problem}")


FIELD_RULES: Final[dict[str, Rule]] = {
    "key": _key_rule,
    "schema_version": _schema_version_rule,
    "payload.to": _address_rule,  # Email is the only type with these payload fields
    "payload.subject": _subject_rule,
    # Report: every field ends up in the report text (consumers/handlers/report.py).
    "payload.report_id": _one_line_rule,
    "payload.report_type": _one_line_rule,
    "payload.requested_by": _one_line_rule,
    "payload.parameters": _one_line_rule,  # each key and value of the map
}
