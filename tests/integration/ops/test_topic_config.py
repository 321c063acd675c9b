"""`topics create` reconciles the configuration of topics that already exist, and `topics list`
reports the broker's values, against the real broker (issue 11, defect 6)."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from common.settings import Settings
from devtools.kafka import kafka_config
from ops.topics import alter_configs, broker_configs
from tests.integration.ops.test_foundation import cli, env_for

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000


def admin(settings: Settings) -> AdminClient:
    return AdminClient(kafka_config(settings))


def broker_config(settings: Settings, topic: str) -> dict[str, str | None]:
    return broker_configs(admin(settings), [topic])[topic]


def set_by_hand(settings: Settings, topic: str, config: dict[str, str | None]) -> None:
    alter_configs(admin(settings), {topic: config})


def test_topics_create_corrects_the_retention_of_an_existing_topic_and_says_so(
    settings: Settings,
) -> None:
    dlq = f"{settings.topic_prefix}.email.dlq"
    main = f"{settings.topic_prefix}.email"
    wrong = {dlq: {"retention.ms": str(DAY_MS)}, main: {"retention.ms": "3600000"}}
    client = admin(settings)  # alive until the futures resolve
    futures = client.create_topics(
        [NewTopic(name, settings.topic_partitions, 1, config=c) for name, c in wrong.items()]
    )
    for future in futures.values():
        future.result(timeout=60)

    env = {**env_for(settings), "EVENT_TYPES": "Email"}
    result = cli("topics", "create", env=env)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines[dlq].startswith("updated")
    assert f"retention.ms {DAY_MS} -> {30 * DAY_MS}" in lines[dlq]
    assert "segment.ms 604800000 -> 86400000" in lines[dlq]  # the broker default, daily now
    assert f"retention.ms 3600000 -> {7 * DAY_MS}" in lines[main]
    assert lines[f"{settings.topic_prefix}.email.retry-1s"].startswith("created")

    assert broker_config(settings, dlq)["retention.ms"] == str(30 * DAY_MS)
    assert broker_config(settings, dlq)["segment.ms"] == str(DAY_MS)
    assert broker_config(settings, dlq)["max.message.bytes"] == str(2 * 1_048_576)
    assert broker_config(settings, main)["retention.ms"] == str(7 * DAY_MS)

    again = cli("topics", "create", "--json", env=env)
    assert again.returncode == 0, again.stderr
    rows = json.loads(again.stdout)
    assert {r["status"] for r in rows} == {"exists"}
    assert all(r["changed"] == {} for r in rows)


def test_topics_create_json_reports_what_it_changed(settings: Settings) -> None:
    env = {**env_for(settings), "EVENT_TYPES": "Report"}
    assert cli("topics", "create", env=env).returncode == 0
    retry = f"{settings.topic_prefix}.report.retry-2s"
    set_by_hand(settings, retry, {"retention.ms": "120000", "max.message.bytes": "1000"})

    result = cli("topics", "create", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows[retry]["status"] == "updated"
    assert rows[retry]["changed"] == {
        "retention.ms": {"from": "120000", "to": str(7 * DAY_MS)},
        "max.message.bytes": {"from": "1000", "to": str(2 * 1_048_576)},
    }
    assert rows[retry]["retention_ms"] == 7 * DAY_MS
    assert {r["status"] for n, r in rows.items() if n != retry} == {"exists"}
    assert broker_config(settings, retry)["max.message.bytes"] == str(2 * 1_048_576)


def test_topics_list_json_shows_the_brokers_values_not_the_settings(settings: Settings) -> None:
    env = {**env_for(settings), "EVENT_TYPES": "ChemicalStatus"}
    assert cli("topics", "create", env=env).returncode == 0
    dlq = f"{settings.topic_prefix}.chemical-status.dlq"
    set_by_hand(settings, dlq, {"retention.ms": str(3 * DAY_MS)})  # someone, by hand

    result = cli("topics", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows[dlq]["retention_ms"] == 3 * DAY_MS  # what the broker says
    assert rows[dlq]["config"]["retention.ms"] == str(3 * DAY_MS)
    assert rows[dlq]["differs"] == {
        "retention.ms": {"broker": str(3 * DAY_MS), "wanted": str(30 * DAY_MS)}
    }
    main = f"{settings.topic_prefix}.chemical-status"
    assert rows[main]["retention_ms"] == 7 * DAY_MS and rows[main]["differs"] == {}

    text = cli("topics", "list", env=env).stdout
    assert "retention.ms" in next(line for line in text.splitlines() if dlq in line)
    broker = broker_config(settings, dlq)
    assert broker["retention.ms"] == str(3 * DAY_MS)  # listing never changes anything


def test_a_missing_topic_is_listed_without_a_retention(settings: Settings) -> None:
    env = {**env_for(settings), "EVENT_TYPES": "Report"}
    result = cli("topics", "list", "--json", env=env)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert {r["status"] for r in rows} == {"missing"}
    assert all(r["retention_ms"] is None and r["config"] == {} for r in rows)
