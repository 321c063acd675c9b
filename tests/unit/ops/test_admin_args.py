"""Pure parts of the admin API: its settings, argument parsing and cursors (no services)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from common.settings import load_settings
from ops.admin.config import AdminConfigError, load_admin_settings
from ops.dlq import DlqUsageError
from ops.dlq_jobs import _ranges, headers_for
from ops.dlq_query import decode_cursor, encode_cursor
from ops.dlq_service import parse_query, replay_request
from retry_topics import headers as rh
from tests.support.dlq import ORIGIN, dlq_record

SETTINGS = load_settings(topic_prefix="unit")


def test_admin_settings_refuse_a_short_token_and_an_open_bind_without_one() -> None:
    with pytest.raises(AdminConfigError, match=r"^ADMIN_TOKEN: at least 16 characters"):
        load_admin_settings(token="short")
    with pytest.raises(AdminConfigError, match=r"ADMIN_HOST=10\.0\.0\.5 is beyond loopback"):
        load_admin_settings(host="10.0.0.5")
    with pytest.raises(AdminConfigError, match=r"^ADMIN_INSTANCES: "):
        load_admin_settings(instances="ftp://x")
    assert load_admin_settings().loopback and load_admin_settings(host="::1").loopback
    assert not load_admin_settings(host="0.0.0.0", token="x" * 16).loopback
    assert load_admin_settings(token="  ").token is None  # empty: mutations disabled


def test_a_cursor_round_trips_and_anything_else_is_a_usage_error() -> None:
    row = {
        "dead_lettered_at": datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
        "dlq_topic": "qchem.email.dlq",
        "dlq_partition": 2,
        "dlq_offset": 41,
    }
    assert decode_cursor(encode_cursor(row)) == (
        row["dead_lettered_at"], "qchem.email.dlq", 2, 41
    )  # fmt: skip
    for bad in ("", "!!!", "W10", "WyJ4IiwgMSwgMiwgM10"):  # "", junk, [], ["x", 1, 2, 3]
        with pytest.raises(DlqUsageError, match=r"^cursor: "):
            decode_cursor(bad)


def test_query_strings_are_checked_once_for_cli_and_api() -> None:
    query, size = parse_query(SETTINGS, {"type": ["email"], "status": ["pending"]})
    assert (query.types, query.status, size) == (("Email",), "pending", 100)
    for params, message in [
        ({"colour": ["red"]}, "unknown filter 'colour'"),
        ({"limit": ["501"]}, "limit: expected a whole number from 1 to 500"),
        ({"status": ["gone"]}, "status: expected one of"),
        ({"since": ["2026-12-02"], "until": ["2026-12-01"]}, "is not before"),
    ]:
        with pytest.raises(DlqUsageError, match=message):
            parse_query(SETTINGS, params)


def test_replay_bodies_are_typed_strictly() -> None:
    request = replay_request(SETTINGS, {"type": "Email", "rate": 5, "event_id": "e-1"})
    assert (request.rate, request.filters.event_ids, request.target) == (5.0, {"e-1"}, "main")
    for body, message in [
        ({"type": "Email", "dry_run": 1}, "dry_run: wrong type int"),
        ({"type": "Email", "limit": True}, "limit: wrong type bool"),
        ({"type": "Email", "max_replays": 0}, "max_replays: from 1 to 1000"),
        ({"type": "Email", "target": "dlq"}, "target: expected one of main, retry"),
        ({"type": "Email", "event_id": [1]}, "event_id: a string or a list"),
        ({"type": "Email", "rate": "1e-300"}, "--rate must be from"),
        ({}, "type: required"),
    ]:
        with pytest.raises(DlqUsageError, match=message):
            replay_request(SETTINGS, body)


def test_a_retry_tier_copy_passes_the_tier_readers_checks() -> None:
    record = dlq_record(7)  # dead-lettered after 3 attempts, origin qchem.email[2]@41
    replay_id = uuid.uuid4()
    info = rh.parse_retry_headers(
        headers_for(record, replay_id, True, b"k" * 32),
        expected_origin_topic="qchem.email",
        expected_group="qchem-events.email",
        max_attempt=4,
        now_ms=int(time.time() * 1000),
    )
    assert (info.origin, info.attempt, info.replay_count) == (ORIGIN, 2, 1)
    main = rh.as_dict(headers_for(record, replay_id, False, b"k" * 32))
    assert (
        rh.DUE not in main
        and rh.GROUP not in main
        and main[rh.REPLAY_ID] == str(replay_id).encode()
    )


def test_positions_are_read_in_ranges_of_nearby_offsets() -> None:
    rows = [{"dlq_partition": p, "dlq_offset": o} for p, o in [(0, 5), (0, 7), (0, 5000), (1, 3)]]
    assert list(_ranges(rows)) == [(0, 5, 8), (0, 5000, 5001), (1, 3, 4)]
