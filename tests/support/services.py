"""Where the tests find a real Kafka broker, a real PostgreSQL and a real Schema Registry.

In order: the environment (KAFKA_BOOTSTRAP_SERVERS / TEST_DATABASE_URL), then testcontainers
when a Docker engine answers, then the local services of infra/ (started when absent).
A service that cannot be had is a test *failure*, never a skip: CI must not pass green
against nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL_TEST_DB = "postgresql+psycopg2://qchem:qchem@127.0.0.1:5432/qchem_test"


class ServiceUnavailable(RuntimeError):
    pass


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    with suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _run_infra(script: str, *args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        [str(ROOT / "infra" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise ServiceUnavailable(f"infra/{script} {' '.join(args)} failed:\n{result.stderr}")


def kafka_bootstrap(containers: list[object]) -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        host, _, port = configured.split(",")[0].rpartition(":")
        if not port_open(host, int(port)):
            raise ServiceUnavailable(f"KAFKA_BOOTSTRAP_SERVERS={configured} does not answer")
        return configured
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        containers.append(container)
        return str(container.get_bootstrap_server())
    _run_infra("kafka.sh", "up")
    return "127.0.0.1:9092"


REGISTRY_URL = "http://127.0.0.1:{port}/apis/ccompat/v7"


def registry_answers(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def schema_registry_url() -> str:
    """A Confluent-API Schema Registry: TEST_SCHEMA_REGISTRY_URL, else infra/registry.sh (8085).

    No testcontainers branch: infra/registry.sh needs no Docker, only Java 21+ - and without
    one it fails, loudly, which fails the tests (never a skip, CI or not)."""
    configured = os.environ.get("TEST_SCHEMA_REGISTRY_URL")
    if configured:
        if not registry_answers(configured):
            raise ServiceUnavailable(f"TEST_SCHEMA_REGISTRY_URL={configured} does not answer")
        return configured
    _run_infra("registry.sh", "up")
    return REGISTRY_URL.format(port=8085)


class OwnRegistry:
    """A registry of the test's own, on a free port, to stop and start (the shared one stays).

    Its schemas are kept in a file database (infra/registry.sh), so after a restart it still
    knows every id, as a production registry would."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = REGISTRY_URL.format(port=self.port)
        self.env = {"QCHEM_REGISTRY_PORT": str(self.port)}

    def up(self) -> None:
        _run_infra("registry.sh", "up", env=self.env)

    def down(self) -> None:
        _run_infra("registry.sh", "down", env=self.env)

    def wipe(self) -> None:
        _run_infra("registry.sh", "reset", env=self.env)
        shutil.rmtree(ROOT / ".local" / "registry" / f"run-{self.port}", ignore_errors=True)


def database_url(containers: list[object]) -> str:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:15")
        container.start()
        containers.append(container)
        return str(container.get_connection_url())
    _run_infra("postgres.sh", "up", env={"DATABASE_URL": LOCAL_TEST_DB.replace("_test", "")})
    return LOCAL_TEST_DB
