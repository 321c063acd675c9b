"""Rules Avro cannot express, by field path: what `compile_checker` runs after a field's
type check (a UUID or a timestamp is checked by its logical type, in schemas/validation.py).

The envelope's rules apply to every event type; a payload field's rules are given by its
type's registration (`EventType.rules`, schemas/catalog.py), so a field of the same name in
another type is not held to them.
"""

from __future__ import annotations

from typing import Final

from schemas.safe_text import address_problem, control_problem, subject_problem
from schemas.validation import MAX_KEY_CHARS, InvalidEvent, Rule

__all__ = ["ENVELOPE_RULES", "address_rule", "one_line_rule", "subject_rule"]


def _key_rule(path: str, value: str) -> None:
    if not value:
        raise InvalidEvent("bad_value", f"{path}: must not be empty")
    if len(value) > MAX_KEY_CHARS:
        raise InvalidEvent("bad_value", f"{path}: longer than {MAX_KEY_CHARS} characters")


def _schema_version_rule(path: str, value: int) -> None:
    if value < 1:
        raise InvalidEvent("bad_value", f"{path}: must be 1 or more, got {value}")


def address_rule(path: str, value: str) -> None:
    problem = address_problem(value)
    if problem is not None:
        raise InvalidEvent("bad_address", f"{path}: {problem}")


def subject_rule(path: str, value: str) -> None:
    problem = subject_problem(value)
    if problem is not None:
        reason = "control_character" if "control" in problem else "encoded_word"
        raise InvalidEvent(reason, f"{path}: {problem}")


def one_line_rule(path: str, value: str) -> None:
    """For text written into a line: a CR/LF would forge the lines after it (issue 17 #8).
    On a map, each key and value."""
    problem = control_problem(value)
    if problem is not None:
        raise InvalidEvent("control_character", f"{path}: {problem}")


ENVELOPE_RULES: Final[dict[str, Rule]] = {
    "key": _key_rule,
    "schema_version": _schema_version_rule,
}
