"""The DLQ runbook commands (`qchem-events dlq ...`) against the real broker, database, SMTP."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.dead_letters import exhausted_headers
from devtools.devservers import SmtpSink
from devtools.kafka import kafka_config
from ops.dlq_render import record_from_json
from ops.topics import create_topics
from retry_topics import headers as rh
from retry_topics.naming import TopicNames
from schemas.codec import encode_json
from schemas.samples import sample_events
from tests.support.app import running_app, settings_env
from tests.support.db import scalar, wait_for_scalar
from tests.support.dead_letters import commit_to_end, names_for
from tests.support.kafka import end_offsets, produce_events, read_all, wait_for

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "qchem-events")
SOURCE_HEADERS = [("content-type", b"application/json"), ("traceparent", b"00-4bf92f-00f067-01")]
LONG_STACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "consumers/handlers/email.py", line {n}, in perform\n' for n in range(60)
)


def dlq(
    settings: Settings, *args: str, tty_answer: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`qchem-events dlq ARGS` as a child process; stdin is not a terminal unless tty_answer."""
    env = {**os.environ, **settings_env(settings)}
    if tty_answer is None:
        return subprocess.run(
            [CLI, "dlq", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [CLI, "dlq", *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        os.write(leader, tty_answer)
        out, err = proc.communicate(timeout=timeout)
    finally:
        os.close(follower)
        os.close(leader)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM event_records GROUP BY 1"))
        return {status: count for status, count in rows}


def failure(error_class: str, kind: str, message: str = "it failed") -> rh.Failure:
    return rh.Failure(error_class, message, LONG_STACK, kind)


def produce_dlq(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[int | None, bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    """(partition or None for the key's, key, value, headers) records to `topic`."""
    producer = Producer(kafka_config(settings, {"acks": "all"}))
    for partition, key, value, headers in records:
        extra = {"partition": partition} if partition is not None else {}
        producer.produce(topic, key=key, value=value, headers=headers, **extra)  # type: ignore[arg-type]
    assert producer.flush(30) == 0


def dead_letter_originals(
    settings: Settings, names: TopicNames, originals: list[Any], fail: rh.Failure, reason: str
) -> None:
    """The DLQ copies of records read from the main topic, as the pipeline writes them."""
    now = int(time.time() * 1000)
    produce_dlq(
        settings,
        names.dlq,
        [
            (
                None,
                m.key(),
                m.value(),
                exhausted_headers(
                    names,
                    rh.Origin(names.main, m.partition(), m.offset(), m.timestamp()[1]),
                    fail,
                    source_headers=m.headers(),
                    first_failure_ms=now - 7_000,
                    reason=reason,
                ),
            )
            for m in originals
        ],
    )


def email_scenario(settings: Settings, count: int) -> tuple[TopicNames, list[Any]]:
    """`count` emails consumed from the main topic that all ended in the DLQ (SMTP was down)."""
    names = names_for(settings, "Email")
    produce_events(
        settings.kafka_bootstrap_servers,
        names.main,
        sample_events("Email", count),
        headers=SOURCE_HEADERS,
    )
    originals = read_all(settings.kafka_bootstrap_servers, names.main)
    assert len(originals) == count
    commit_to_end(settings, names.group, names.main)
    smtp_down = failure(
        "DependencyDownError", "transient", "smtp: ConnectionRefusedError: [Errno 111] refused"
    )
    dead_letter_originals(settings, names, originals, smtp_down, "exhausted")
    return names, originals


def event_id(message: Any) -> str:
    return str(json.loads(message.value())["event_id"])


# -- replay ------------------------------------------------------------------------------------


def test_replay_after_the_smtp_outage_sends_each_email_exactly_once(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    names, originals = email_scenario(settings, 105)
    # 5 of them had their effect applied after all (e.g. a copy succeeded): dedup rows exist.
    applied = originals[:5]
    with db_engine.begin() as conn:
        for m in applied:
            conn.execute(
                text("INSERT INTO dedup_keys VALUES (:g, :t, :p, :o, :e, now())"),
                {
                    "g": names.group,
                    "t": names.main,
                    "p": m.partition(),
                    "o": m.offset(),
                    "e": event_id(m),
                },
            )
    main_end = end_offsets(settings, names.main)

    dry = ok_json(dlq(settings, "replay", "--type", "Email", "--dry-run", "--json"))
    assert (dry["dry_run"], dry["replayed"], len(dry["records"])) == (True, 0, 105)
    assert end_offsets(settings, names.main) == main_end  # a dry run sends nothing

    with running_app(settings):
        first = dlq(settings, "replay", "--type", "Email", "--yes", "--rate", "2000/s")
        assert first.returncode == 0, first.stderr
        assert "replayed 105, skipped 0 already replayed, failed 0" in first.stdout
        try:
            wait_for_scalar(
                db_engine,
                "SELECT count(*) FROM event_records",
                105,
                timeout=90,
                message="105 event records",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; by status: {statuses(db_engine)}") from None
        second = dlq(settings, "replay", "--type", "Email", "--yes", "--json")
        again = ok_json(second)
        assert (again["replayed"], again["skipped_already_replayed"], again["failed"]) == (
            0,
            105,
            0,
        )
        time.sleep(2)  # anything sent by mistake would be consumed meanwhile

    counts = smtp_sink.count_by_event_id()
    applied_ids = {event_id(m) for m in applied}
    assert set(counts) == {event_id(m) for m in originals} - applied_ids
    assert max(counts.values()) == 1
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='succeeded'") == 100
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='duplicate'") == 5

    # The replayed copies: same key, value, foreign headers and origin; replay count 1.
    by_origin = {(m.partition(), m.offset()): m for m in originals}
    copies = [
        m
        for m in read_all(settings.kafka_bootstrap_servers, names.main)
        if rh.REPLAY_ID in rh.as_dict(m.headers())
    ]
    assert len(copies) == 105
    replay_id = rh.as_dict(copies[0].headers())[rh.REPLAY_ID].decode()
    for copy in copies:
        headers = rh.as_dict(copy.headers())
        origin = rh.parse_origin(copy.headers())
        assert origin is not None and origin.topic == names.main
        source = by_origin[(origin.partition, origin.offset)]
        assert (copy.key(), copy.value()) == (source.key(), source.value())
        assert origin.timestamp_ms == source.timestamp()[1]
        assert headers["content-type"] == b"application/json"
        assert headers["traceparent"] == SOURCE_HEADERS[1][1]
        assert headers[rh.REPLAY_COUNT] == b"1"
        assert headers[rh.REPLAY_ID].decode() == replay_id
        assert not {rh.ERROR_CLASS, rh.ATTEMPT, rh.DLQ_REASON, rh.GROUP} & set(headers)

    with db_engine.connect() as conn:
        replays = conn.execute(
            text("SELECT id, who, count, dry_run, filter, finished_at FROM dlq_replays")
        ).all()
    assert sorted((r.dry_run, r.count) for r in replays) == [(False, 0), (False, 105), (True, 105)]
    assert all(r.who and r.finished_at is not None for r in replays)
    assert {r.filter["type"] for r in replays} == {"Email"}
    assert scalar(db_engine, "SELECT count(*) FROM dlq_replayed_records") == 105
    assert (
        scalar(db_engine, "SELECT count(DISTINCT replay_id) FROM dlq_replayed_records") == 1
        and str(scalar(db_engine, "SELECT min(replay_id::text) FROM dlq_replayed_records"))
        == replay_id
    )


def test_a_replayed_record_that_fails_again_returns_to_the_dlq_with_its_replay_count(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    names, originals = email_scenario(settings, 3)
    smtp_sink.fail_next(3, code=550)  # the relay now rejects them for good: straight back
    with running_app(settings):
        first = dlq(settings, "replay", "--type", "Email", "--yes")
        assert "replayed 3, skipped 0" in first.stdout, first.stderr
        back = wait_for(
            lambda: [
                m
                for m in read_all(settings.kafka_bootstrap_servers, names.dlq)
                if rh.as_dict(m.headers()).get(rh.REPLAY_COUNT) == b"1"
            ],
            timeout=60,
            message="3 records back in the DLQ",
        )
        assert len(back) == 3
        for m in back:
            headers = rh.as_dict(m.headers())
            assert headers[rh.ERROR_CLASS] == b"PermanentError"
            assert headers[rh.FAILURE_KIND] == b"permanent"
            assert rh.parse_origin(m.headers()) in {
                rh.Origin(names.main, o.partition(), o.offset(), o.timestamp()[1])
                for o in originals
            }

        listed = ok_json(dlq(settings, "list", "--type", "Email", "--json"))
        assert sorted((r["replay_count"], bool(r["replayed"])) for r in listed) == [
            (0, True),
            (0, True),
            (0, True),
            (1, False),
            (1, False),
            (1, False),
        ]
        second = ok_json(dlq(settings, "replay", "--type", "Email", "--yes", "--json"))
        assert (second["replayed"], second["skipped_already_replayed"]) == (3, 3)
        assert smtp_sink.wait_for(3, timeout=60)
    copies = [
        rh.as_dict(m.headers())
        for m in read_all(settings.kafka_bootstrap_servers, names.main)
        if rh.as_dict(m.headers()).get(rh.REPLAY_ID, b"").decode() == second["replay_id"]
    ]
    assert [c[rh.REPLAY_COUNT] for c in copies] == [b"2"] * 3
    assert max(smtp_sink.count_by_event_id().values()) == 1


# -- summary, list, show -----------------------------------------------------------------------


def report_dlq(settings: Settings) -> tuple[TopicNames, dict[str, Any]]:
    """7 Report DLQ records: 4 transient (partition 0), 2 permanent (1), 1 invalid binary (2)."""
    names = names_for(settings, "Report")
    events = sample_events("Report", 6)
    now = int(time.time() * 1000)

    def headers(n: int, fail: rh.Failure, reason: str, source: Any = None) -> Any:
        return rh.build(
            source_headers=source or SOURCE_HEADERS,
            origin=rh.Origin(names.main, 0, n, now - 60_000),
            group=names.group,
            attempt=1 if reason != "exhausted" else 4,
            first_failure_ms=now - 30_000,
            due_ms=None,
            failure=fail,
            dlq_reason=reason,
        )

    transient = failure("TransientError", "transient", "report store busy")
    permanent = failure("PermanentError", "permanent", "template missing")
    invalid_value = b"\xff\xfe\x00garbage"
    invalid_headers = headers(
        6,
        failure("InvalidEvent", "invalid", "bad_avro: cannot read"),
        "invalid",
        [("content-type", b"application/avro"), ("x-bin", b"\x00\xffraw")],
    )
    records = [
        *[(0, e.key.encode(), encode_json(e), headers(i, transient, "exhausted"))
          for i, e in enumerate(events[:4])],
        *[(1, e.key.encode(), encode_json(e), headers(4 + i, permanent, "permanent"))
          for i, e in enumerate(events[4:])],
        (2, None, invalid_value, invalid_headers),
    ]  # fmt: skip
    produce_dlq(settings, names.dlq, records)
    return names, {
        "events": events,
        "invalid_value": invalid_value,
        "invalid_headers": invalid_headers,
    }


def test_summary_list_and_show(settings: Settings, db_engine: Engine) -> None:
    names, made = report_dlq(settings)
    events = made["events"]

    summary = ok_json(dlq(settings, "summary", "--type", "Report", "--json"))
    assert summary["total"] == 7
    (row,) = summary["event_types"]
    assert (row["event_type"], row["topic"], row["count"]) == ("Report", names.dlq, 7)
    assert row["oldest"] <= row["newest"]
    assert {(g["error_class"], g["failure_kind"]): g["count"] for g in row["by_error"]} == {
        ("TransientError", "transient"): 4,
        ("PermanentError", "permanent"): 2,
        ("InvalidEvent", "invalid"): 1,
    }
    every_type = ok_json(dlq(settings, "summary", "--json"))
    assert every_type["total"] == 7
    assert {r["event_type"]: r["count"] for r in every_type["event_types"]} == {
        "ChemicalStatus": 0,
        "Email": 0,
        "Report": 7,
        "ChemicalLookup": 0,
    }
    text_summary = dlq(settings, "summary", "--type", "Report")
    assert text_summary.returncode == 0 and "TransientError" in text_summary.stdout

    listed = ok_json(dlq(settings, "list", "--type", "Report", "--json"))
    assert len(listed) == 7
    by_ref = {r["ref"]: r for r in listed}
    first = by_ref["Report:0:0"]
    assert first["event_id"] == events[0].event_id
    assert first["value"] == encode_json(events[0]).decode()
    assert (first["attempt"], first["error_class"], first["dlq_reason"]) == (
        4,
        "TransientError",
        "exhausted",
    )
    assert first["origin"]["topic"] == names.main and first["replayed"] is None
    assert (first["topic"], first["partition"], first["offset"]) == (names.dlq, 0, 0)
    assert isinstance(first["timestamp"], int)
    binary = by_ref["Report:2:0"]
    assert (binary["value_encoding"], binary["headers_encoding"], binary["key"]) == (
        "base64",
        "base64",
        None,
    )
    assert record_from_json(binary)["value"] == made["invalid_value"]
    assert record_from_json(binary)["headers"] == made["invalid_headers"]
    forced = ok_json(dlq(settings, "list", "--type", "Report", "--base64", "--json"))
    for item in forced:
        original = record_from_json(by_ref[item["ref"]])
        assert item["value_encoding"] == "base64"
        assert record_from_json(item) == original

    def count(*args: str) -> int:
        return len(ok_json(dlq(settings, "list", "--type", "Report", "--json", *args)))

    assert count("--error-class", "permanenterror") == 2
    assert count("--partition", "0") == 4
    assert count("--event-id", events[0].event_id, "--event-id", events[5].event_id) == 2
    assert count("--limit", "3") == 3
    assert count("--since", "2999-01-01") == 0
    assert count("--until", "2999-01-01T00:00:00Z") == 7
    assert count("--since", "2000-01-01", "--error-class", "InvalidEvent") == 1
    text_list = dlq(settings, "list", "--type", "Report", "--limit", "2")
    assert text_list.returncode == 0 and "Report:0:0" in text_list.stdout
    assert text_list.stdout.rstrip().endswith("2 records")

    shown = dlq(settings, "show", "Report:0:1")
    assert shown.returncode == 0, shown.stderr
    assert encode_json(events[1]).decode() in shown.stdout
    assert LONG_STACK.strip() in shown.stdout  # the whole stack (well over 300 chars)
    assert "traceparent" in shown.stdout
    same = ok_json(
        dlq(settings, "show", "--type", "report", "--partition", "0", "--offset", "1", "--json")
    )
    assert same["event_id"] == events[1].event_id and same["error_stack"] == LONG_STACK
    shown_binary = dlq(settings, "show", "Report:2:0")
    assert "payload (10 bytes, base64)" in shown_binary.stdout
    missing = dlq(settings, "show", "Report:0:99")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no record at Report:0:99" in missing.stderr


# -- purge -------------------------------------------------------------------------------------


def test_filter_purge_hides_and_time_purge_deletes(settings: Settings, db_engine: Engine) -> None:
    names, _made = report_dlq(settings)
    main_end = end_offsets(settings, names.main)

    # A replay answered "no" at the terminal prompt sends nothing.
    declined = dlq(settings, "replay", "--type", "Report", tty_answer=b"n\n")
    assert declined.returncode == 1 and "cancelled" in declined.stderr
    assert "Replay 7 Report record(s)" in declined.stderr
    assert end_offsets(settings, names.main) == main_end

    hidden = ok_json(
        dlq(settings, "purge", "--type", "Report", "--error-class", "PermanentError", "--yes",
            "--json")
    )  # fmt: skip
    assert (hidden["mode"], hidden["count"]) == ("hide", 2)
    assert scalar(db_engine, "SELECT count(*) FROM dlq_purged_records") == 2
    listed = ok_json(dlq(settings, "list", "--type", "Report", "--json"))
    assert len(listed) == 5 and "PermanentError" not in {r["error_class"] for r in listed}
    (row,) = ok_json(dlq(settings, "summary", "--type", "Report", "--json"))["event_types"]
    assert (row["count"], row["hidden_by_purge"]) == (5, 2)
    plan = ok_json(dlq(settings, "replay", "--type", "Report", "--dry-run", "--json"))
    assert len(plan["records"]) == 5 and not {"Report:1:0", "Report:1:1"} & set(plan["records"])
    assert (
        ok_json(dlq(settings, "purge", "--type", "Report", "--partition", "1", "--yes", "--json"))[
            "count"
        ]
        == 0
    )  # already hidden

    retention = ok_json(dlq(settings, "purge", "--type", "Report", "--dry-run", "--json"))
    assert (retention["mode"], retention["count"]) == ("delete", 0)  # nothing 30 days old
    refused = dlq(settings, "purge", "--type", "Report", "--older-than-days", "0")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    dry = ok_json(
        dlq(settings, "purge", "--type", "Report", "--older-than-days", "0", "--dry-run", "--json")
    )
    assert (dry["mode"], dry["count"], dry["dry_run"]) == ("delete", 7, True)
    assert len(read_all(settings.kafka_bootstrap_servers, names.dlq)) == 7

    purged = dlq(settings, "purge", "--type", "Report", "--older-than-days", "0", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "deleted 7 record(s)" in purged.stdout
    assert read_all(settings.kafka_bootstrap_servers, names.dlq, timeout=3) == []
    consumer = Consumer(kafka_config(settings, {"group.id": "x"}))
    try:
        for p in range(settings.topic_partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(names.dlq, p), timeout=10)
            assert low == high
    finally:
        consumer.close()
    assert ok_json(dlq(settings, "list", "--type", "Report", "--json")) == []
    assert scalar(db_engine, "SELECT count(*) FROM dlq_purged_records") == 0  # forgotten
    again = ok_json(dlq(settings, "purge", "--type", "Report", "--older-than-days", "0",
                        "--yes", "--json"))  # fmt: skip
    assert again["count"] == 0


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "--type", "Fax", "--yes"], "unknown event type 'Fax'"),
        (["show", "nonsense"], "TYPE:PARTITION:OFFSET"),
        (["show"], "TYPE:PARTITION:OFFSET"),
        (["show", "Email:0:1", "--partition", "2"], "TYPE:PARTITION:OFFSET"),
        (["list", "--type", "Email", "--since", "yesterday"], "--since"),
        (["list", "--until", "2026-02-30"], "--until"),
        (["replay", "--type", "Email"], "pass --yes"),
        (["purge", "--type", "Email"], "pass --yes"),
        (["replay", "--type", "Email", "--rate", "fast", "--yes"], "--rate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    settings: Settings, args: list[str], needle: str
) -> None:
    result = dlq(settings, *args)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_partition_the_topic_does_not_have_is_a_usage_error(settings: Settings) -> None:
    create_topics(settings)
    result = dlq(settings, "list", "--type", "Email", "--partition", "99")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "partitions 0..2" in result.stderr


def test_a_missing_dlq_topic_is_one_line_exit_1(settings: Settings, db_engine: Engine) -> None:
    result = dlq(settings, "summary", "--type", "Email")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr and "topics create" in result.stderr
