"""scripts/: replaying JSON events with kcat and DLQ dumps with kafka-console-producer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from common.settings import Settings
from ops.topics import create_topics
from retry_topics import headers as rh
from schemas.codec import encode_json
from schemas.samples import sample_events
from tests.support.app import CLI, settings_env
from tests.support.kafka import produce_raw, read_all
from tests.support.services import ROOT

pytestmark = pytest.mark.integration


def test_replay_a_file_of_json_events_with_kcat(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    create_topics(settings)
    env = settings_env(settings)
    lines = subprocess.run(
        [CLI, "sample", "Report", "--count", "5"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = tmp_path / "events.jsonl"
    events.write_text(lines)
    topic = f"{settings.topic_prefix}.report"
    subprocess.run(
        [
            str(ROOT / "scripts" / "replay-events.sh"),
            str(events),
            topic,
            settings.kafka_bootstrap_servers,
        ],
        check=True,
        timeout=60,
    )
    records = read_all(settings.kafka_bootstrap_servers, topic)
    sent = {json.loads(line)["event_id"]: json.loads(line) for line in lines.splitlines()}
    assert len(records) == 5
    for record in records:
        event = json.loads(record.value())
        assert record.key().decode() == sent[event["event_id"]]["key"]


def test_replay_a_dlq_dump_with_the_console_producer(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    create_topics(settings)
    main = f"{settings.topic_prefix}.report"
    events = sample_events("Report", 3)
    records = []
    for n, event in enumerate(events):
        headers = rh.build(
            source_headers=[("content-type", b"application/json"), ("trace", f"t{n}".encode())],
            origin=rh.Origin(main, 1, 100 + n, 1_700_000_000_000),
            group=f"{settings.topic_prefix}-events.report",
            attempt=4,
            first_failure_ms=1_700_000_000_000,
            due_ms=None,
            failure=rh.Failure("TransientError", "boom", "Traceback\n  line\n", "transient"),
            dlq_reason="exhausted",
        )
        records.append((event.key.encode(), encode_json(event), headers))
    produce_raw(settings.kafka_bootstrap_servers, f"{main}.dlq", records)
    env = settings_env(settings)
    dump = tmp_path / "dump.json"
    listing = subprocess.run(
        [CLI, "dlq", "list", "--type", "Report", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    dump.write_text(listing.stdout)
    result = subprocess.run(
        [
            str(ROOT / "scripts" / "replay-dlq-dump.sh"),
            str(dump),
            main,
            settings.kafka_bootstrap_servers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    replayed = read_all(settings.kafka_bootstrap_servers, main)
    assert len(replayed) == 3
    by_key = {k: (v, h) for k, v, h in records}
    for message in replayed:
        value, original = by_key[message.key()]
        assert message.value() == value
        headers = rh.as_dict(rh.message_headers(message))
        assert rh.parse_origin(rh.message_headers(message)) == rh.parse_origin(original)
        assert headers[rh.REPLAY_COUNT] == b"1"
        assert headers["trace"] == rh.as_dict(original)["trace"]
        assert rh.ERROR_STACK not in headers  # the last attempt's failure is not carried over
