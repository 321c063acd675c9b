"""ops/dlq_render.py: the JSON form of records, the summary, the terminal text (pure)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ops.dlq import iso
from ops.dlq_render import (
    bounded,
    decode_bytes,
    encode_bytes,
    record_from_json,
    record_to_json,
    render_list,
    render_record,
    render_replay,
    render_summary,
    summarize,
)
from tests.support.dlq import dlq_headers, dlq_record

# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, b"", b"plain text", "h\u00e9".encode(), b"\x00\xff\xfe"])
@pytest.mark.parametrize("force", [False, True])
def test_bytes_round_trip(data: bytes | None, force: bool) -> None:
    text, encoding = encode_bytes(data, force)
    assert decode_bytes(text, encoding) == data
    if data == b"\x00\xff\xfe" or (force and data is not None):
        assert encoding == "base64"


@pytest.mark.parametrize("force", [False, True])
def test_record_json_round_trips_binary_values_and_headers(force: bool) -> None:
    headers = [*dlq_headers(), ("x-binary", b"\x00\xffraw")]
    r = dlq_record(5, partition=2, key=None, value=b"\xff\xfe\x00garbage", headers=headers)
    data = json.loads(json.dumps(record_to_json(r, force_base64=force)))
    assert data["value_encoding"] == "base64" and data["headers_encoding"] == "base64"
    back = record_from_json(data)
    assert back == {
        "topic": "qchem.email.dlq",
        "partition": 2,
        "offset": 5,
        "timestamp": r.timestamp_ms,
        "key": None,
        "value": r.value,
        "headers": headers,
    }


def test_record_json_of_a_text_record_is_readable() -> None:
    r = dlq_record(3)
    data = record_to_json(r, replayed={"replay_id": "x", "replayed_at": "y"})
    assert data["value_encoding"] == data["key_encoding"] == data["headers_encoding"] == "utf-8"
    assert json.loads(data["value"])["event_id"] == r.event_id
    assert data["key"] == "user-1"
    assert ["traceparent", "00-ab-cd-01"] in data["headers"]
    assert data["origin"] == {
        "topic": "qchem.email",
        "partition": 2,
        "offset": 41,
        "timestamp": 1_700_000_000_000,
    }
    assert data["replayed"] == {"replay_id": "x", "replayed_at": "y"}
    assert data["timestamp_iso"] == iso(r.timestamp_ms)
    assert record_from_json(data)["value"] == r.value


# -- summary -----------------------------------------------------------------------------------


def test_summarize_groups_by_error_class_and_kind() -> None:
    records = [dlq_record(i, timestamp_ms=1_000 * (i + 1)) for i in range(3)]
    records.append(
        dlq_record(9, timestamp_ms=500, headers=dlq_headers(error_class="Boom", kind="permanent"))
    )
    row = summarize("Email", "qchem.email.dlq", records, replayed=[(0, 1), (5, 5)])
    assert row["count"] == 4 and row["replayed"] == 1
    assert row["oldest"] == iso(500) and row["newest"] == iso(3_000)
    assert row["by_error"] == [
        {
            "error_class": "DependencyDownError",
            "failure_kind": "transient",
            "count": 3,
            "oldest": iso(1_000),
            "newest": iso(3_000),
        },
        {
            "error_class": "Boom",
            "failure_kind": "permanent",
            "count": 1,
            "oldest": iso(500),
            "newest": iso(500),
        },
    ]
    assert summarize("Email", "t", [], [])["oldest"] is None


# -- terminal text -----------------------------------------------------------------------------


def test_bounded_cuts_long_data_and_escapes_binary() -> None:
    assert bounded(None) == "(null)"
    assert bounded(b"short") == "short"
    assert bounded(b"x" * 300) == "x" * 300  # exactly the limit: nothing cut
    assert bounded(b"x" * 301) == "x" * 300 + "... (301 bytes)"
    assert bounded(b"ab\xffcd", 3) == "ab\\xff... (5 bytes)"


def test_render_summary_lists_types_error_groups_and_the_total() -> None:
    records = [dlq_record(i, timestamp_ms=1_000 * (i + 1)) for i in range(2)]
    row = {**summarize("Email", "qchem.email.dlq", records, [(0, 1)]), "hidden_by_purge": 4}
    lines = render_summary([row], 2).splitlines()
    assert lines[0].split() == [
        "Email",
        "2",
        "records",
        "1",
        "replayed",
        "4",
        "hidden",
        "oldest",
        iso(1_000),
        "newest",
        iso(2_000),
        "(qchem.email.dlq)",
    ]
    assert lines[1].split() == [
        "2",
        "DependencyDownError",
        "transient",
        iso(1_000),
        "..",
        iso(2_000),
    ]
    assert lines[-1] == "total 2"


def test_render_list_shows_four_lines_a_record_and_flags_replayed_ones() -> None:
    plain = dlq_record(0, value=b"\xffbinary")
    replayed = dlq_record(1, headers=[])
    text = render_list([(plain, None), (replayed, {"replay_id": "r", "replayed_at": "t"})])
    lines = text.splitlines()
    assert len(lines) == 9 and lines[-1] == "2 records"
    assert lines[0].startswith(f"Email:0:0  {iso(plain.timestamp_ms)}  attempt=3  replays=0")
    assert not lines[0].endswith("[replayed]")
    assert lines[4].endswith(f"event={replayed.event_id}  [replayed]")
    assert lines[1] == "    error:   DependencyDownError: smtp: connection refused"
    assert lines[2] == f"    origin:  qchem.email:2:41 at {iso(1_700_000_000_000)}"
    assert lines[3] == "    payload: \\xffbinary"
    # a record without pipeline headers shows dashes, not "None"
    assert "attempt=-" in lines[4] and lines[5] == "    error:   -: -" and "None" not in text


def test_render_record_shows_everything_and_base64_for_a_binary_payload() -> None:
    binary = dlq_record(2, value=b"\x00\xff" * 5, headers=[*dlq_headers(), ("x-raw", b"\xff")])
    text = render_record(binary, {"replay_id": "abc", "replayed_at": "2026-01-01T00:00:00"})
    assert "payload (10 bytes, base64)\nAP8A/wD/AP8A/w==\n" in text
    assert "; replayed by abc at 2026-01-01T00:00:00" in text
    assert "\n  traceparent: 00-ab-cd-01\n" in text and "\n  x-raw: \\xff\n" in text
    stack = "Traceback\n" + "  line\n" * 100
    text_record = replace(dlq_record(3, value=b"{}"), error_stack=stack)
    shown = render_record(text_record, None)
    assert shown.endswith("stack\n" + stack)  # the whole stack, never cut
    assert "replayed by" not in shown and "payload (2 bytes, utf-8)\n{}\n" in shown


def _replay_data(**changes: object) -> dict[str, object]:
    return {
        "dry_run": True,
        "replay_id": "r-1",
        "target_topic": "qchem.email",
        "would_replay": 2,
        "replayed": 0,
        "skipped_already_replayed": 3,
        "skipped_replay_cap": 0,
        "skipped_needs_review": 0,
        "failed": 0,
        "failed_records": [],
        "records": ["Email:0:0", "Email:0:1"],
        **changes,
    }


def test_render_replay_lists_a_dry_run_and_reports_failures() -> None:
    dry = render_replay(_replay_data()).splitlines()
    assert dry == [
        "Email:0:0",
        "Email:0:1",
        "dry run: would replay 2, skipped 3 already replayed, failed 0 (replay id r-1)",
        "target qchem.email",
    ]
    done = _replay_data(
        dry_run=False,
        replayed=1,
        skipped_already_replayed=0,
        failed=1,
        failed_records=["Email:0:1"],
        skipped_needs_review=4,
    )
    assert render_replay(done).splitlines() == [
        "replayed 1, skipped 0 already replayed, failed 1 (replay id r-1)",
        "target qchem.email",
        "skipped 4 business-critical record(s): approve each with "
        "`qchem-events dlq review approve`",
        "failed: Email:0:1",
    ]
