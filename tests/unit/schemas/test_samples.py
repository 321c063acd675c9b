"""schemas.samples: sample events are valid, realistic and shaped as documented."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from common import event_types
from schemas.catalog import CAS_NUMBERS, STATUSES
from schemas.codec import AVRO, decode, encode_avro, headers_for
from schemas.samples import PRODUCER, sample_events, sample_json_lines

TYPES = list(event_types.names())


def cas_is_valid(cas: str) -> bool:
    """CAS check digit: the other digits, right to left, weighted 1, 2, 3... mod 10."""
    match = re.fullmatch(r"(\d{2,7})-(\d{2})-(\d)", cas)
    if not match:
        return False
    digits = (match[1] + match[2])[::-1]
    return sum(i * int(d) for i, d in enumerate(digits, start=1)) % 10 == int(match[3])


@pytest.mark.parametrize("event_type", TYPES)
def test_samples_are_valid_in_both_formats(event_type: str) -> None:
    for e in sample_events(event_type, 50, seed=7):
        assert decode(encode_avro(e), headers_for(AVRO), event_type) == e
    for line in sample_json_lines(event_type, 50, seed=7):
        assert "\n" not in line
        assert decode(line.encode(), None, event_type).event_type == event_type


@pytest.mark.parametrize("event_type", TYPES)
def test_sample_envelopes(event_type: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    events = sample_events(event_type, 200)
    assert len({e.event_id for e in events}) == 200
    times = [e.occurred_at for e in events]
    assert times == sorted(times) and len(set(times)) == 200  # strictly increasing
    assert before <= times[0] and times[-1] <= datetime.now(UTC)
    for e in events:
        assert e.event_type == event_type and e.producer == PRODUCER and e.schema_version == 1
        assert e.occurred_at.tzinfo is UTC and e.occurred_at.microsecond % 1000 == 0


def test_keys_are_the_entities() -> None:
    (status,) = sample_events("ChemicalStatus", 1)
    assert status.key == status.payload.chemical_id
    assert re.fullmatch(r"CHEM-\d{5}", status.key)
    assert status.payload.status in STATUSES
    (email,) = sample_events("Email", 1)
    assert email.key == email.payload.to and re.fullmatch(r"user\d+@example\.com", email.key)
    (report,) = sample_events("Report", 1)
    assert report.key == report.payload.report_id
    (lookup,) = sample_events("ChemicalLookup", 1)
    assert lookup.key == lookup.payload.chemical_id


@pytest.mark.parametrize("event_type", TYPES)
def test_keys_limit_the_distinct_keys(event_type: str) -> None:
    assert len({e.key for e in sample_events(event_type, 100, keys=7)}) == 7
    assert len({e.key for e in sample_events(event_type, 3, keys=7)}) == 3
    assert len({e.key for e in sample_events(event_type, 100)}) == 100


def test_regulations_and_cas_numbers_look_real() -> None:
    assert all(cas_is_valid(cas) for cas in CAS_NUMBERS)
    events = sample_events("ChemicalStatus", 200, seed=1)
    assert any(re.fullmatch(r"REACH Annex XVII entry \d+", e.payload.regulation) for e in events)
    assert all(e.payload.cas_number is None or cas_is_valid(e.payload.cas_number) for e in events)


def test_a_seed_makes_samples_reproducible_and_types_never_share_ids() -> None:
    def strip_time(event_type: str) -> list[tuple[object, ...]]:
        return [(e.event_id, e.key, e.payload) for e in sample_events(event_type, 20, seed=3)]

    assert strip_time("Report") == strip_time("Report")
    ids = [{e.event_id for e in sample_events(t, 20, seed=3)} for t in TYPES]
    assert len(set().union(*ids)) == 20 * len(TYPES)
    assert strip_time("Email") != [
        (e.event_id, e.key, e.payload) for e in sample_events("Email", 20)
    ]


def test_json_lines_are_compact_json_objects() -> None:
    lines = list(sample_json_lines("Report", 3, keys=1))
    assert len(lines) == 3
    for line in lines:
        assert ": " not in line.split('"payload"')[0]  # compact separators
        assert json.loads(line)["key"] == "RPT-2026-000001"


def test_bad_arguments() -> None:
    assert sample_events("Email", 0) == []
    with pytest.raises(ValueError):
        sample_events("Fax", 1)
    with pytest.raises(ValueError):
        sample_events("Email", -1)
    with pytest.raises(ValueError):
        sample_events("Email", 1, keys=0)
