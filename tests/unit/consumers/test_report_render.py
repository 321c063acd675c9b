"""Issue 17 #8: control characters in Report fields cannot forge report lines.

The validator refuses them (tests/unit/schemas/test_codec.py); the renderer escapes them
too, for an event that reached it some other way. Report types other than the status
summary read nothing from the database, so no connection is needed here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consumers.handlers.report import render_report
from schemas.events import Event, ReportPayload

FORGED = "\n# generated_for: 1999-01-01\nBANNED,0"


def report(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "report_id": "r-1",
        "report_type": "parameters",
        "requested_by": "a@example.com",
        "parameters": {"regulation": "REACH"},
        **fields,
    }
    return Event(
        event_id="5f0c6a9e-3b7e-4c51-9b43-2f1d0c9d8a11",
        event_type="Report",
        occurred_at=datetime(2026, 11, 29, 3, tzinfo=UTC),
        producer="test",
        schema_version=1,
        key="r-1",
        payload=ReportPayload(**values),
    )


def test_a_plain_report_is_unchanged() -> None:
    assert render_report(None, report()).splitlines() == [  # type: ignore[arg-type]
        "# Q-Chem report r-1",
        "# type: parameters",
        "# requested_by: a@example.com",
        "# generated_for: 2026-11-29T03:00:00.000+00:00",
        "# event_id: 5f0c6a9e-3b7e-4c51-9b43-2f1d0c9d8a11",
        "parameter,value",
        "regulation,REACH",
    ]


def test_newlines_and_escapes_in_any_field_stay_on_their_line() -> None:
    event = report(
        report_id="r-1" + FORGED,
        report_type="parameters\r# type: forged",
        requested_by="a@example.com" + FORGED,
        parameters={"regulation": "REACH" + FORGED, "k\x1b[2J": "v\u2028BANNED,0"},
    )
    lines = render_report(None, event).splitlines()  # type: ignore[arg-type]
    assert len(lines) == 8, lines
    assert [line.split(":")[0] for line in lines[:5]] == [
        "# Q-Chem report r-1\\x0a# generated_for",
        "# type",
        "# requested_by",
        "# generated_for",
        "# event_id",
    ]
    assert lines[3] == "# generated_for: 2026-11-29T03:00:00.000+00:00"
    assert "\\x0a# generated_for: 1999-01-01\\x0aBANNED,0" in lines[2]
    assert lines[6] == 'k\\x1b[2J,"v\\u2028BANNED,0"'
    assert not any(line.startswith(("BANNED", "# generated_for: 1999")) for line in lines)
