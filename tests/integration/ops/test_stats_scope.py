"""`qchem-events stats` counts this deployment's consumer groups only (issue 17, "Low"): one
database shared by several prefixes (test runs, a staging copy) used to be counted as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from retry_topics.naming import topic_names

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "qchem-events")


def add_records(engine: Engine, group: str, status: str, n: int) -> None:
    with engine.begin() as conn:
        for offset in range(n):
            conn.execute(
                text(
                    "INSERT INTO event_records (consumer_group, origin_topic, origin_partition, "
                    "origin_offset, event_type, status, attempts, processing_ms) "
                    "VALUES (:g, 'topic', 0, :o, 'Email', :s, 1, 5)"
                ),
                {"g": group, "o": offset, "s": status},
            )


def stats(settings: Settings, *args: str) -> dict[str, object]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TOPIC_PREFIX": settings.topic_prefix,
    }
    result = subprocess.run(
        [CLI, "stats", "--json", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_stats_count_the_configured_prefix_unless_asked_for_all(
    settings: Settings, db_engine: Engine
) -> None:
    ours = topic_names(settings, "Email").group  # <prefix>-events.email
    add_records(db_engine, ours, "succeeded", 3)
    # Another deployment's group, and one whose name only looks like ours to a LIKE pattern
    # ('_' and '.' in a prefix are not wildcards).
    add_records(db_engine, f"other{settings.topic_prefix}-events.email", "dlq", 5)
    add_records(db_engine, f"{settings.topic_prefix}-eventsXemail", "dlq", 7)

    scoped = stats(settings)
    assert scoped["event_types"] == {
        "Email": {
            "counts": {"succeeded": 3},
            "attempts": {"1": 3},
            "processing_ms": {"p50": 5.0, "p90": 5.0, "p99": 5.0, "max": 5.0},
            "success_rate": 1.0,
        }
    }
    assert scoped["scope"] == {"prefix": settings.topic_prefix}

    everything = stats(settings, "--all-groups")
    email = everything["event_types"]["Email"]  # type: ignore[index]
    assert email["counts"] == {"succeeded": 3, "dlq": 12}
    assert everything["scope"] == {"prefix": None}
