"""Foundation: topic provisioning, the CLI against real services, a kcat round trip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.topics import admin_client, create_topics, existing_topics, list_topics
from tests.support.app import free_port
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration

CLI = [str(Path(sys.executable).parent / "qchem-events")]


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TOPIC_PREFIX": settings.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
    }


def test_topics_create_is_idempotent_and_list_matches_the_broker(settings: Settings) -> None:
    first = create_topics(settings)
    assert {r.status for r in first} == {"created"}
    second = create_topics(settings)
    assert {r.status for r in second} == {"exists"}
    assert [r.name for r in first] == [r.name for r in second]

    result = cli("topics", "list", "--json", env=env_for(settings))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    broker = existing_topics(admin_client(settings), settings)
    for row in rows:
        assert broker[row["name"]] == row["partitions"] == settings.topic_partitions
    roles = {(r["event_type"], r["role"]) for r in rows}
    for event_type in settings.event_types:
        assert {(event_type, "main"), (event_type, "dlq"), (event_type, "retry")} <= roles
    email = [r["name"] for r in rows if r["event_type"] == "Email"]
    prefix = settings.topic_prefix
    assert email == [
        f"{prefix}.email",
        f"{prefix}.email.retry-1s",
        f"{prefix}.email.retry-2s",
        f"{prefix}.email.dlq",
    ]
    dlq = next(r for r in list_topics(settings) if r.role == "dlq")
    assert dlq.retention_ms == 30 * 24 * 3600 * 1000


def test_topics_create_twice_through_the_cli(settings: Settings) -> None:
    for expected in ("created", "exists"):
        result = cli("topics", "create", "--json", env=env_for(settings))
        assert result.returncode == 0, result.stderr
        assert {r["status"] for r in json.loads(result.stdout)} == {expected}


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "cannot reach Kafka at 127.0.0.1:1"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "no-port-here"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:secret@127.0.0.1:notaport/db"}, "DATABASE_URL"),
        ({"CONCURRENCY": "zero"}, "CONCURRENCY"),
        ({"EVENT_TYPES": "Email,Fax"}, "EVENT_TYPES"),
    ],
)
def test_bad_settings_give_one_line_and_a_nonzero_exit(
    settings: Settings, env: dict[str, str], needle: str
) -> None:
    result = cli("topics", "list", env={**env_for(settings), **env}, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


def test_unreachable_database_is_one_line(settings: Settings) -> None:
    env = {**env_for(settings), "DATABASE_URL": "postgresql://qchem:hunter2@127.0.0.1:1/qchem"}
    result = cli("stats", env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot reach PostgreSQL at postgresql+psycopg2://qchem:***@127.0.0.1:1/qchem" in (
        result.stderr
    )
    assert "hunter2" not in result.stderr


def test_sample_piped_through_kcat_reaches_the_running_consumer(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    """A round trip through a client nobody here wrote: sample | kcat -P -> run -> PostgreSQL."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is required (make deps installs it)"
    env = {**env_for(settings), "EVENT_TYPES": "Report", "METRICS_PORT": str(free_port())}
    assert cli("topics", "create", env=env).returncode == 0
    log_file = (tmp_path / "run.log").open("w")
    app = subprocess.Popen(
        [*CLI, "run"], env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        lines = cli("sample", "Report", "--count", "5", env=env).stdout
        assert len(lines.strip().splitlines()) == 5
        subprocess.run(
            [
                kcat,
                "-P",
                "-b",
                settings.kafka_bootstrap_servers,
                "-t",
                f"{settings.topic_prefix}.report",
            ],
            input=lines,
            text=True,
            check=True,
            timeout=30,
        )

        def count() -> int:
            with db_engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())

        wait_for(lambda: count() == 5, timeout=60, message="5 reports")
        with db_engine.connect() as conn:
            statuses = conn.execute(
                text("SELECT status, count(*) FROM event_records GROUP BY status")
            ).all()
        assert dict(statuses) == {"succeeded": 5}
    finally:
        app.terminate()
        assert app.wait(timeout=60) == 0
        log_file.close()
    log = (tmp_path / "run.log").read_text()
    assert "listener_started" in log and "app_stopped" in log
