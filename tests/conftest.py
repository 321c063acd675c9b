"""Session fixtures: real Kafka and PostgreSQL for integration tests (tests/support)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

import schemas  # noqa: F401  (registers the built-in event types the settings name)
from common.settings import Settings, load_settings
from storage.db import migrate
from storage.tables import metadata
from tests.support import services


@pytest.fixture(scope="session")
def _containers() -> Iterator[list[object]]:
    started: list[object] = []
    yield started
    for container in started:
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def kafka_bootstrap(_containers: list[object]) -> str:
    try:
        return services.kafka_bootstrap(_containers)
    except services.ServiceUnavailable as exc:
        pytest.fail(f"no Kafka broker for the integration tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def schema_registry() -> str:
    """The Confluent-API base URL of a real Schema Registry (Apicurio, infra/registry.sh)."""
    try:
        return services.schema_registry_url()
    except services.ServiceUnavailable as exc:
        pytest.fail(f"no Schema Registry for the integration tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def database_url(_containers: list[object]) -> str:
    try:
        url = services.database_url(_containers)
        migrate(url)
    except Exception as exc:
        pytest.fail(f"no PostgreSQL for the integration tests: {exc}", pytrace=False)
    return url


@pytest.fixture
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a clean schema: every table emptied before the test."""
    engine = create_engine(database_url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # A test that leaked a transaction must not hang every test after it.
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state LIKE 'idle in transaction%'"
            )
        )
        conn.execute(text("SET LOCAL lock_timeout = '30s'"))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    yield engine
    engine.dispose()


@pytest.fixture
def topic_prefix() -> str:
    """A prefix of its own for each test: topics and groups never collide between tests."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, topic_prefix: str) -> Settings:
    os.environ.pop("DATABASE_URL", None)
    loaded = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        topic_prefix=topic_prefix,
        topic_partitions=3,
        commit_interval_s=0.2,
    )
    # A free port for /metrics: the environment may not ask for one (METRICS_PORT=0 is a
    # start-up error), a test in the same process may.
    return loaded.model_copy(update={"metrics_port": 0})
