"""Issue 17 #7 and #9: rendering any DLQ record must not fail, nor drive the terminal.

Anyone who can produce to a DLQ topic chooses the record's timestamp, headers, key and value;
`dlq list`, `dlq show` and `dlq summary` (human and --json) must show them, inert.
"""

from __future__ import annotations

import json

import pytest

from ops.dlq import iso
from ops.dlq_render import record_to_json, render_list, render_record, render_summary, summarize
from retry_topics import headers as rh
from retry_topics.dlq_record import DlqRecord
from schemas.safe_text import CONTROL
from tests.support.dlq import dlq_headers, dlq_record

INT64_MAX = 2**63 - 1
ABSURD = [b"9223372036854775807", b"-9223372036854775808", b"99999999999999999999", b"1e308"]
# Clear screen, set the window title, hide text, a C1 CSI, a carriage return that overwrites.
TERMINAL = "\x1b[2J\x1b]0;pwned\x07\x1b[8m\u009b31m\rforged"


def forged_headers(value: bytes) -> list[tuple[str, bytes]]:
    names = [rh.ORIGIN_TIMESTAMP, rh.FIRST_FAILURE, rh.ATTEMPT, rh.REPLAY_COUNT, rh.DUE]
    return [*dlq_headers(), *((name, value) for name in names)]


@pytest.mark.parametrize("timestamp_ms", [INT64_MAX, -(2**63), 253402300800000, -1])
@pytest.mark.parametrize("header_value", ABSURD)
def test_absurd_times_render_in_every_form(timestamp_ms: int, header_value: bytes) -> None:
    record = dlq_record(7, timestamp_ms=timestamp_ms, headers=forged_headers(header_value))
    data = json.loads(json.dumps(record_to_json(record)))
    assert data["timestamp"] == timestamp_ms and data["timestamp_iso"] is None
    listed = render_list([(record, None)])
    assert f"Email:0:7  {timestamp_ms}" in listed or "Email:0:7  -" in listed
    assert "dead-lettered" in render_record(record, None)
    row = {**summarize("Email", record.topic, [record], []), "hidden_by_purge": 0}
    assert row["oldest"] is None
    assert "total 1" in render_summary([row], 1)


def test_an_out_of_range_time_shows_its_number() -> None:
    assert iso(INT64_MAX) is None and iso(253402300799999) == "9999-12-31T23:59:59.999Z"
    listed = render_list([(dlq_record(1, timestamp_ms=INT64_MAX), None)])
    assert f"{INT64_MAX} (not a valid time)" in listed


def terminal_record() -> DlqRecord:
    raw = TERMINAL.encode()
    headers = [
        *dlq_headers(error_class="Boom" + TERMINAL),
        (rh.ERROR_MESSAGE, raw),
        (rh.GROUP, raw),
        (rh.FAILURE_KIND, raw),
        ("x-" + TERMINAL, raw),
    ]
    value = json.dumps({"event_id": "e" + TERMINAL, "note": TERMINAL}, ensure_ascii=False)
    return dlq_record(3, key=raw, value=value.encode() + b"\n\t" + raw, headers=headers)


def test_terminal_control_sequences_are_escaped_in_human_output() -> None:
    record = terminal_record()
    row = {**summarize("Email", "qchem.email.dlq", [record], []), "hidden_by_purge": 0}
    for text in (
        render_list([(record, None)]),
        render_record(record, None),
        render_summary([row], 1),
    ):
        shown = [c for c in text if CONTROL.match(c) and c not in "\n\t"]
        assert shown == [], text
        assert "\x1b" not in text and "\\x1b[2J" in text
    assert "\\x1b]0;pwned\\x07" in render_record(record, None)


def test_json_output_escapes_them_too() -> None:
    dumped = json.dumps(record_to_json(terminal_record()))
    assert not CONTROL.search(dumped)


# "Trojan Source" (CVE-2021-42574): bidirectional overrides and isolates reorder what a
# terminal shows, so a forged error text can read as something else ("approved" written
# backwards after U+202E shows as "devorppa").
BIDI = "\u202eedoc\u202c \u2066isolated\u2069 \u202aembed\u202c"


def test_bidirectional_controls_are_escaped_in_human_output() -> None:
    raw = BIDI.encode()
    record = dlq_record(
        4, key=raw, value=raw, headers=[*dlq_headers(error_class="Boom" + BIDI), ("x-b", raw)]
    )
    row = {**summarize("Email", "qchem.email.dlq", [record], []), "hidden_by_purge": 0}
    for text in (render_list([(record, None)]), render_record(record, None)):
        assert not any(c in text for c in "\u202a\u202c\u202e\u2066\u2069"), text
        assert "\\u202e" in text
    summary = render_summary([row], 1)
    assert "\u202e" not in summary
