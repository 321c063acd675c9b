"""Where the tests find a real Kafka broker and a real PostgreSQL.

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
