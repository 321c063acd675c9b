"""Scenario 4, "Malformed Event Data".

Trigger: a client sends records that are not valid events, mixed into a stream of valid
ones. One record per way a record can be wrong - bad JSON, invalid UTF-8, an empty value, a
tombstone, not an object, garbage Avro, an unknown content type, an unknown event type, an
event of another type (wrong topic), a missing field, a wrong type, a bad value, an oversized
record - each sharing its key (so its lane and partition) with a valid event behind it.

What must happen: each is recognised by the validation layer, recorded INVALID, sent to the
DLQ with its original bytes, key and headers, and never retried (DLQ attempt 1, nothing in
the retry tiers); it is logged with its payload (an error line) and counted in
`qchem_events_processed_total{outcome="invalid"}`, which the QchemNewErrorType alert watches
("alert sent to the development team"). The valid events behind them are unaffected.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from common.settings import Settings
from devtools.scenarios.dashboard import Outcome
from devtools.scenarios.runner import RawRecord, Record, ScenarioRun, entity_pattern
from devtools.scenarios.watch import counter
from retry_topics import headers as rh
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events

NAME = "malformed"
TITLE = "Malformed Event Data"
PROMISE = "System stability maintained, dev team notified"
MAX_EVENT_BYTES = 4096  # so that an "oversized" record is still accepted by the broker
EVENT_TYPE = "ChemicalStatus"


def malformed(template: Event, stranger: Event) -> list[tuple[str, str, bytes | None, Any]]:
    """(variant, expected InvalidEvent reason, value, headers) for each way to be wrong."""
    good = encode_json(template)
    doc = json.loads(good)

    def changed(**fields: Any) -> bytes:
        return json.dumps({**doc, **fields}).encode()

    without_payload = json.dumps({k: v for k, v in doc.items() if k != "payload"}).encode()
    huge = {**doc["payload"], "regulation": "x" * (MAX_EVENT_BYTES + 100)}
    return [
        ("bad JSON (truncated)", "bad_json", good[: len(good) // 2], None),
        ("invalid UTF-8", "bad_utf8", b'{"event_id": "\xff\xfe\xfd"}', None),
        ("empty value", "empty", b"", None),
        ("tombstone (null value)", "empty", None, None),
        ("not a JSON object", "not_an_object", b'["ChemicalStatus", 1, 2]', None),
        (
            "garbage Avro",
            "bad_avro",
            b"\x00\x01\x02garbage",
            [("content-type", b"application/avro")],
        ),
        ("unknown content type", "unknown_content_type", good, [("content-type", b"text/xml")]),
        ("unknown event type", "unknown_event_type", changed(event_type="ChemicalStatusV9"), None),
        ("event of another type", "wrong_topic", encode_json(stranger), None),
        ("missing field", "missing_field", without_payload, None),
        ("wrong type", "wrong_type", changed(schema_version="1"), None),
        ("bad value", "bad_value", changed(event_id="not-a-uuid"), None),
        ("oversized", "oversized", changed(payload=huge), None),
    ]


def run(settings: Settings, *, valid: int = 300) -> Outcome:
    """`valid` ChemicalStatus events with one malformed record of each kind among them."""
    with ScenarioRun(settings, NAME, (EVENT_TYPE,), max_event_bytes=MAX_EVENT_BYTES) as scenario:
        return _run(scenario, valid)


def _run(run: ScenarioRun, count: int) -> Outcome:
    pattern = entity_pattern(run.entity_prefix)
    run.on_cleanup("DELETE FROM chemical_status_history WHERE chemical_id LIKE :p", p=pattern)
    run.on_cleanup("DELETE FROM chemicals WHERE chemical_id LIKE :p", p=pattern)
    events = []
    for n, event in enumerate(sample_events(EVENT_TYPE, count), start=1):
        chemical = f"{run.entity_prefix}-{n:05d}"
        events.append(
            replace(event, key=chemical, payload=replace(event.payload, chemical_id=chemical))
        )
    bad = malformed(events[0], sample_events("Email", 1)[0])
    # Spread the malformed records through the stream, each just before a valid event of the
    # same key: a bad record must not hold up the good one behind it in its lane.
    step = max(1, count // len(bad))
    records: list[RawRecord] = []
    expected: dict[int, tuple[str, str]] = {}  # index in records -> (variant, reason)
    for n, event in enumerate(events):
        if n % step == 0 and n // step < len(bad):
            variant, reason, value, headers = bad[n // step]
            expected[len(records)] = (variant, reason)
            records.append((event.key.encode(), value, headers))
        records.append((event.key.encode(), encode_json(event), None))
    invalid_before = counter(
        "qchem_events_processed_total", event_type=EVENT_TYPE, outcome="invalid"
    )
    with run.running():
        sent = time.time()
        produced = run.produce(run.names(EVENT_TYPE).main, records)
        run.timeline.mark(f"{count} valid + {len(bad)} malformed events produced", sent)
        run.wait(
            lambda: run.status_counts() == {"succeeded": count, "invalid": len(bad)},
            timeout=60,
            what=f"{count} succeeded and {len(bad)} invalid",
        )
        run.mark_finished(f"all {count} valid events succeeded")
    invalid_counted = (
        counter("qchem_events_processed_total", event_type=EVENT_TYPE, outcome="invalid")
        - invalid_before
    )
    _check(run, count, [(produced[i], *expected[i]) for i in sorted(expected)], invalid_counted)
    return run.outcome(TITLE, PROMISE)


def _dead_letters(
    run: ScenarioRun, bad: list[tuple[Record, str, str]]
) -> tuple[list[dict[str, Any]], int]:
    """What the DLQ holds for each malformed record (its reason, bytes, key, headers,
    attempt), and how many records the retry tiers hold."""
    names = run.names(EVENT_TYPE)
    dlq = {}
    for dead in run.read_topic(names.dlq):
        origin = rh.parse_origin(dead.headers)
        if origin is not None:
            dlq[(origin.partition, origin.offset)] = dead
    retried = sum(len(run.read_topic(spec.name)) for spec in names.retry_tiers)
    variants = []
    for produced, variant, reason in bad:
        record = dlq.get((produced.partition, produced.offset))
        values = rh.as_dict(record.headers) if record else {}
        found = values.get(rh.ERROR_MESSAGE, b"").decode("utf-8", "replace").split(":")[0]
        same_bytes = record is not None and record.value == produced.value  # b"" is not None
        kept_headers = record is not None and all(
            h in (record.headers or []) for h in produced.headers or []
        )
        variants.append(
            {
                "variant": variant,
                "expected_reason": reason,
                "reason": found or None,
                "in_dlq": record is not None,
                "original_bytes": same_bytes,
                "key_and_headers_kept": kept_headers
                and record is not None
                and record.key == produced.key,
                "attempt": values.get(rh.ATTEMPT, b"").decode() or None,
                "bytes": len(produced.value or b""),
            }
        )
    return variants, retried


def _check(
    run: ScenarioRun, count: int, bad: list[tuple[Record, str, str]], invalid_counted: float
) -> None:
    variants, retried = _dead_letters(run, bad)
    rows = [r for r in run.rows() if r.status == "invalid"]
    statuses = run.status_counts()
    run.check(
        f"{len(bad)}/{len(bad)} malformed records INVALID",
        statuses.get("invalid", 0) == len(bad) and all(r.attempts == 1 for r in rows),
        str(statuses),
    )
    in_dlq = [
        v for v in variants if v["in_dlq"] and v["original_bytes"] and v["key_and_headers_kept"]
    ]
    run.check(
        "each in the DLQ with its original bytes, key and headers",
        len(in_dlq) == len(bad),
        f"{len(in_dlq)}/{len(bad)}",
    )
    right = [v for v in variants if v["reason"] == v["expected_reason"]]
    run.check(
        "each rejected for the right reason", len(right) == len(bad), f"{len(right)}/{len(bad)}"
    )
    first_try = [v for v in variants if v["attempt"] == "1"]
    run.check(
        "no retries for the invalid ones",
        len(first_try) == len(bad) and retried == 0,
        f"DLQ attempt 1 for {len(first_try)}/{len(bad)}; {retried} records in the retry tiers",
    )
    run.check(
        f"{count}/{count} valid events unaffected",
        statuses.get("succeeded", 0) == count,
        f"{statuses.get('succeeded', 0)} succeeded",
    )
    run.check(
        "counted for the QchemNewErrorType alert",
        invalid_counted == len(bad),
        f'qchem_events_processed_total{{outcome="invalid"}} +{invalid_counted:.0f}',
    )
    run.facts["variants"] = variants
    run.highlights += [
        f"{v['variant']:<24} -> {'INVALID' if v['in_dlq'] else 'NOT in the DLQ'} "
        f"({v['reason']}), {v['bytes']} bytes kept {'intact' if v['original_bytes'] else 'ALTERED'}"
        for v in variants
    ]
