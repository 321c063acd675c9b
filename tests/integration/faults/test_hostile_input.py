"""Fault (g): hostile input through the real pipeline - thousands of records generated with
hypothesis strategies and produced in one go, valid events interleaved.

Random bytes, truncated Avro, JSON bombs (deep nesting, huge strings up to the size limit),
wrong types, unknown event types, invalid UTF-8, empty keys, oversized values, strings too
long for their database column, and hostile retry headers on a retry tier - on the
ChemicalStatus topics; on the Email and Report topics, RFC 2047 encoded words in subjects,
`to` fields naming several or other addresses, and control characters in every report field
(issue 17 #2, #4, #8); records whose header names are not UTF-8 (written by kcat; the
client cannot read them: issue 17 #1); and valid events carrying forged, unsigned origin
headers that name records of the same run (issue 11 #5: they must be processed as the fresh
events they are, not as duplicates of what they name). Expected: no crash, no stall
(everything drained, offsets at the end), every hostile record in the DLQ with its original
key and bytes (the mail and report ones INVALID at once, never handed to a handler), nothing
hostile at the SMTP server, and the valid events around them applied once, in order.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from common import event_types
from common.settings import Settings
from devtools.devservers import SmtpSink
from ops.topics import create_topics
from retry_topics import headers as rh
from schemas.codec import AVRO, CONTENT_TYPE_HEADER, InvalidEvent, decode, encode_avro, encode_json
from tests.support.app import AppProcess, running_app
from tests.support.faults import Record, names, produce_now, scaled, tagged_events
from tests.support.hostile import (
    MAIL_AND_REPORT,
    RETRY_HEADER_NAMES,
    check_mail_and_reports,
    dumps,
    mail_and_report_strategies,
    replaced,
)
from tests.support.kafka import end_offsets
from tests.support.oracle import Hostile, Oracle

TYPE = "ChemicalStatus"
MAX_BYTES = 65_536  # the test's MAX_EVENT_BYTES: oversized records stay cheap to produce
Case = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]  # cat, key, value, h


def generate(strategy: st.SearchStrategy[Any], count: int, at_seed: int) -> list[Any]:
    """`count` examples of `strategy`, drawn by hypothesis (generation only, no test run)."""
    drawn: list[Any] = []

    @seed(at_seed)
    @hyp_settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        drawn.append(example)

    collect()
    return drawn


def is_invalid(
    value: bytes | None, headers: list[tuple[str, bytes]] | None, event_type: str = TYPE
) -> bool:
    try:
        decode(value, headers, event_type, max_bytes=MAX_BYTES)
    except InvalidEvent:
        return True
    return False


KAFKA_KEYS = st.one_of(st.none(), st.just(b""), st.binary(max_size=64))
WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
# field path -> the JSON types that would be accepted there (anything else is wrong)
FIELD_TYPES: dict[tuple[str, ...], tuple[type, ...]] = {
    ("event_id",): (str,),
    ("event_type",): (str,),
    ("occurred_at",): (str, int),
    ("producer",): (str,),
    ("schema_version",): (int,),
    ("key",): (str,),
    ("payload",): (dict,),
    ("payload", "chemical_id"): (str,),
    ("payload", "status"): (str,),
    ("payload", "regulation"): (str,),
    ("payload", "cas_number"): (str, type(None)),
}
DB_COLUMNS = {"chemical_id": 100, "status": 50, "regulation": 200, "cas_number": 50}


def hostile_strategies(base: list[dict[str, Any]], avro: list[bytes]) -> dict[str, Any]:
    """category -> strategy of (key, value, headers); `base` are valid events as dicts."""
    docs = st.sampled_from(base)

    @st.composite
    def truncated_avro(draw: Callable[..., Any]) -> Any:
        body = draw(st.sampled_from(avro))
        cut = draw(st.integers(0, len(body) - 1))
        return draw(KAFKA_KEYS), body[:cut], [(CONTENT_TYPE_HEADER, AVRO.encode())]

    @st.composite
    def random_bytes(draw: Callable[..., Any]) -> Any:
        headers = draw(
            st.one_of(
                st.none(),
                st.just([(CONTENT_TYPE_HEADER, AVRO.encode())]),
                st.lists(
                    st.tuples(st.just(CONTENT_TYPE_HEADER), st.binary(max_size=20)), max_size=2
                ),
            )
        )
        return draw(KAFKA_KEYS), draw(st.binary(max_size=512)), headers

    @st.composite
    def json_bomb(draw: Callable[..., Any]) -> Any:
        kind = draw(st.sampled_from(["deep-array", "deep-object", "wide", "huge-string"]))
        if kind == "deep-array":
            depth = draw(st.integers(65, 30_000))
            value = b"[" * depth + b"]" * depth
        elif kind == "deep-object":
            depth = draw(st.integers(65, 10_000))
            value = b'{"a":' * depth + b"1" + b"}" * depth
        elif kind == "wide":
            value = b"[" + b"[]," * draw(st.integers(1, MAX_BYTES // 3 - 2)) + b"[]]"
        else:  # a string up to the size limit where no string of that size is valid
            path = draw(st.sampled_from([("event_id",), ("event_type",), ("occurred_at",)]))
            size = draw(st.integers(1_000, MAX_BYTES - 1_000))
            value = dumps(replaced(draw(docs), path, "x" * size))
        return draw(KAFKA_KEYS), value, None

    @st.composite
    def wrong_type(draw: Callable[..., Any]) -> Any:
        path = draw(st.sampled_from(sorted(FIELD_TYPES)))
        value = draw(WRONG_VALUES)
        accepted = FIELD_TYPES[path]
        assume(type(value) not in accepted)
        return draw(KAFKA_KEYS), dumps(replaced(draw(docs), path, value)), None

    @st.composite
    def unknown_type(draw: Callable[..., Any]) -> Any:
        name = draw(st.text(max_size=60).filter(lambda t: t not in event_types.registered()))
        return draw(KAFKA_KEYS), dumps(replaced(draw(docs), ("event_type",), name)), None

    @st.composite
    def bad_utf8(draw: Callable[..., Any]) -> Any:
        body = dumps(draw(docs))
        at = draw(st.integers(0, len(body)))
        junk = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80"])
        )
        return draw(KAFKA_KEYS), body[:at] + junk + body[at:], None

    @st.composite
    def bad_key(draw: Callable[..., Any]) -> Any:
        key = draw(st.one_of(st.just(""), st.text(min_size=501, max_size=1_000)))
        return draw(KAFKA_KEYS), dumps(replaced(draw(docs), ("key",), key)), None

    @st.composite
    def oversized(draw: Callable[..., Any]) -> Any:
        size = draw(st.integers(MAX_BYTES + 1, MAX_BYTES + 200_000))
        pattern = draw(st.binary(min_size=1, max_size=16))
        return draw(KAFKA_KEYS), (pattern * (size // len(pattern) + 1))[:size], None

    @st.composite
    def too_long_for_db(draw: Callable[..., Any]) -> Any:
        # Valid for the schema (so not "invalid"), too long for its column: the database
        # refuses the effect, a permanent failure, the DLQ.
        column = draw(st.sampled_from(sorted(DB_COLUMNS)))
        size = draw(st.integers(DB_COLUMNS[column] + 1, 20_000))
        doc = replaced(draw(docs), ("payload", column), "y" * size)
        doc = replaced(doc, ("event_id",), str(draw(st.uuids(version=4))))
        return doc["key"].encode(), dumps(doc), None

    return {
        "random-bytes": random_bytes(),
        "truncated-avro": truncated_avro(),
        "json-bomb": json_bomb(),
        "wrong-type": wrong_type(),
        "unknown-type": unknown_type(),
        "bad-utf8": bad_utf8(),
        "bad-key": bad_key(),
        "oversized": oversized(),
        "too-long-for-db": too_long_for_db(),
    }


HEADER_NAMES = RETRY_HEADER_NAMES
HEADER_VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"-1", b"0", b"2", b"1e9", b"", b"\xff\xfe", b"99999999999999999999", b" 3 "]),
)


def valid_events_of_three_types(tag: str, rng: random.Random) -> list[Any]:
    """ChemicalStatus events (60 keys), with a few Emails and Reports spread among them;
    each type keeps its own order."""
    by_type = {
        TYPE: tagged_events(TYPE, scaled(600), tag=tag, keys=60),
        "Email": tagged_events("Email", scaled(30), tag=tag, keys=10),
        "Report": tagged_events("Report", scaled(30), tag=tag),
    }
    labels = [t for t, events in by_type.items() for _ in events]
    rng.shuffle(labels)
    queues = {t: iter(events) for t, events in by_type.items()}
    return [next(queues[t]) for t in labels]


def test_hostile_input_goes_to_the_dlq_with_its_bytes_and_valid_events_flow(
    settings: Settings, db_engine: Engine
) -> None:
    sink = SmtpSink()
    sink.start()
    settings = settings.model_copy(
        update={
            "event_types": (TYPE, "Email", "Report"),
            "max_event_bytes": MAX_BYTES,
            "smtp_host": sink.host,
            "smtp_port": sink.port,
        }
    )
    try:
        run_hostile_input(settings, db_engine, sink)
    finally:
        sink.stop()


def run_hostile_input(settings: Settings, db_engine: Engine, sink: SmtpSink) -> None:
    n = names(settings, TYPE)
    topic_of = {t: names(settings, t).main for t in settings.event_types}
    at_seed = int(os.environ.get("QCHEM_HOSTILE_SEED") or random.randrange(2**32))
    print(f"\nhostile input seed {at_seed} (QCHEM_HOSTILE_SEED={at_seed} replays it)")
    tag = settings.topic_prefix
    valid = valid_events_of_three_types(tag, random.Random(at_seed))
    base = [json.loads(encode_json(e)) for e in tagged_events(TYPE, 50, tag=tag)]
    avro = [encode_avro(e) for e in tagged_events(TYPE, 50, tag=tag)]
    emails = [json.loads(encode_json(e)) for e in tagged_events("Email", 50, tag=tag)]
    reports = [json.loads(encode_json(e)) for e in tagged_events("Report", 50, tag=tag)]
    counts = {
        "random-bytes": 300,
        "truncated-avro": 300,
        "json-bomb": 150,
        "wrong-type": 300,
        "unknown-type": 200,
        "bad-utf8": 200,
        "bad-key": 150,
        "oversized": 30,
        "too-long-for-db": 100,
        "encoded-word-subject": 150,
        "multi-address-to": 150,
        "report-control-chars": 150,
    }
    generating = time.monotonic()
    cases: list[Case] = []
    strategies = {
        **hostile_strategies(base, avro),
        **mail_and_report_strategies(emails, reports),
    }
    for i, (category, strategy) in enumerate(strategies.items()):
        for key, value, headers in generate(strategy, scaled(counts[category]), at_seed + i):
            cases.append((category, key, value, headers))
    # Hostile retry headers on a retry tier, each on an otherwise valid event of its own.
    carriers = tagged_events(TYPE, scaled(300), tag=f"{tag}-retry")
    header_sets = generate(
        st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12), len(carriers), at_seed
    )
    generated_s = time.monotonic() - generating
    # Preconditions: what the test calls hostile must be so, or the expectations are wrong.
    for category, _key, value, headers in cases:
        event_type = MAIL_AND_REPORT.get(category, TYPE)
        assert category == "too-long-for-db" or is_invalid(value, headers, event_type), (
            category,
            value,
        )
    records: list[Record] = [
        Record(topic_of[MAIL_AND_REPORT.get(category, TYPE)], key, value, headers, tag=category)
        for category, key, value, headers in cases
    ]
    for carrier, headers in zip(carriers, header_sets, strict=False):
        try:
            rh.parse_retry_headers(
                headers,
                expected_origin_topic=n.main,
                expected_group=n.group,
                max_attempt=settings.retries + 1,
                now_ms=int(time.time() * 1000),
            )
        except rh.BadRetryHeaders:
            value = encode_json(carrier)
            records.append(
                Record(n.retry(1000), carrier.key.encode(), value, headers, "retry-headers")
            )
    # One go: hostile records shuffled, valid events spread among them in their own order.
    rng = random.Random(at_seed)
    rng.shuffle(records)
    slots = sorted(rng.sample(range(len(records) + len(valid)), len(valid)))
    merged: list[Record] = []
    valid_records = iter(
        Record(
            topic_of[e.event_type],
            e.key.encode(),
            encode_json(e),
            forged_origin(topic_of[e.event_type], rng) if n % 10 == 0 else None,
            e,
        )
        for n, e in enumerate(valid)
    )
    hostile_records = iter(records)
    slot_set = set(slots)
    for i in range(len(records) + len(valid)):
        merged.append(next(valid_records) if i in slot_set else next(hostile_records))

    print(f"generated {len(records)} hostile records in {generated_s:.1f}s")
    oracle = Oracle(settings, db_engine, name="hostile-input", smtp=sink)
    oracle.expect(valid)
    with running_app(settings) as app:
        produced = time.monotonic()
        oracle.expect_hostile(unreadable_headers(settings, n.main, scaled(20)))
        produce_now(settings.kafka_bootstrap_servers, merged)
        oracle.expect_hostile(
            Hostile(MAIL_AND_REPORT.get(r.tag, TYPE), *r.position, r.key, r.value, r.tag)
            for r in merged
            if isinstance(r.tag, str) and r.position is not None
        )
        drain_s = oracle.wait_drained(produced, timeout=180)
        assert not app.failed.is_set(), "a listener crashed"
    report = oracle.check(faults=len(records), drain_s=drain_s)
    report.extra.update(
        seed=at_seed,
        generated_s=round(generated_s, 1),
        categories=dict(Counter(r.tag for r in records)),
    )
    print(report.summary())
    report.assert_clean()
    check_mail_and_reports(settings, db_engine, sink, valid, Counter(r.tag for r in records))


def forged_origin(topic: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """Well-formed origin and replay headers naming an early record of `topic` (applied or
    dead-lettered by the time this one arrives), without this application's signature."""
    return [
        (rh.ORIGIN_TOPIC, topic.encode()),
        (rh.ORIGIN_PARTITION, str(rng.randrange(3)).encode()),
        (rh.ORIGIN_OFFSET, str(rng.randrange(20)).encode()),
        (rh.ORIGIN_TIMESTAMP, b"1700000000000"),
        (rh.REPLAY_COUNT, b"1"),
        (rh.REPLAY_ID, b"forged"),
        (rh.REPLAY_SIGNATURE, b"0" * 64),
    ]


def unreadable_headers(settings: Settings, topic: str, count: int) -> list[Hostile]:
    """`count` valid-looking records on partition 0 whose header name is b"x-trace\xff",
    produced by kcat (which writes header names as raw bytes; confluent-kafka cannot)."""
    start = end_offsets(settings, topic)[0]
    value = b'{"event_type": "ChemicalStatus"}'
    records = [f"k{i}|".encode() + value for i in range(count)]
    kcat = [b"kcat", b"-P", b"-b", settings.kafka_bootstrap_servers.encode(), b"-t"]
    subprocess.run(
        [*kcat, topic.encode(), b"-p", b"0", b"-K", b"|", b"-H", b"x-trace\xff=1"],
        input=b"\n".join(records) + b"\n",
        check=True,
        timeout=60,
    )
    return [
        Hostile(TYPE, topic, 0, start + i, f"k{i}".encode(), value, "non-utf8-header-name")
        for i in range(count)
    ]


def test_one_long_invalid_string_does_not_stall_the_consumer(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    """One invalid record well under the default 1 MiB limit - an unknown event type with a
    300 kB alphanumeric string - must reach the DLQ in seconds, and the valid events behind
    it on its partition must flow. Run as a child process: a stall that holds the GIL would
    freeze the test process too."""
    settings = settings.model_copy(update={"event_types": (TYPE,)})
    create_topics(settings)
    n = names(settings, TYPE)
    valid = tagged_events(TYPE, 20, tag=settings.topic_prefix, keys=1)  # one key: one partition
    poison = json.dumps({"event_type": "Fax", "note": "x" * 300_000}).encode()
    key = valid[0].key.encode()
    records = [Record(n.main, key, poison, None, "long-string")] + [
        Record(n.main, e.key.encode(), encode_json(e), None, e) for e in valid
    ]
    oracle = Oracle(settings, db_engine, name="long-invalid-string")
    oracle.expect(valid)
    app = AppProcess(settings, tmp_path / "app.log")
    try:
        app.start()
        produced = time.monotonic()
        produce_now(settings.kafka_bootstrap_servers, records)
        first = records[0].position
        assert first is not None
        oracle.expect_hostile([Hostile(TYPE, first[0], first[1], first[2], key, poison, "poison")])
        drain_s = oracle.wait_drained(produced, timeout=30)
    finally:
        app.kill()
    report = oracle.check(faults=1, drain_s=drain_s)
    print("\n" + report.summary())
    report.assert_clean()
