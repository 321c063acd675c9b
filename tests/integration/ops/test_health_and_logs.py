"""/metrics, /healthz, /readyz, `health`, and logs that never carry a secret."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from schemas.samples import sample_events
from tests.support.app import CLI, AppProcess, running_app, settings_env
from tests.support.kafka import produce_events, produce_raw, wait_for
from tests.support.promql import exposed_metric_names, queried_metric_names

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def successes(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "qchem_events_processed_total" and sample.labels == {
                "event_type": "Report",
                "outcome": "success",
            }:
                return sample.value
    return 0.0


def test_metrics_health_and_readiness_endpoints(settings: Settings, db_engine: Engine) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    with running_app(settings) as app:
        assert app.health is not None
        base = f"http://127.0.0.1:{app.health.port}"
        before = successes(get(f"{base}/metrics")[1])  # counters are per process, not per test
        produce_events(
            settings.kafka_bootstrap_servers,
            f"{settings.topic_prefix}.report",
            sample_events("Report", 3),
        )
        wait_for(
            lambda: successes(get(f"{base}/metrics")[1]) >= before + 3,
            timeout=30,
            message="3 more successes counted",
        )
        status, body = get(f"{base}/metrics")
        assert status == 200
        for name in (
            "qchem_event_processing_seconds_bucket",
            "qchem_events_in_flight",
            "qchem_db_pool_connections_max",
            "qchem_paused_partitions",
        ):
            assert name in body
        assert get(f"{base}/healthz") == (200, json.dumps({"alive": True}))
        status, ready = get(f"{base}/readyz")
        assert status == 200 and json.loads(ready)["ready"] is True
        assert app.health.host == "127.0.0.1"  # loopback by default
        # Every metric the dashboard and the alert rules query is exported by this app.
        exported = exposed_metric_names(get(f"{base}/metrics")[1])
        missing = queried_metric_names() - exported
        assert not missing, f"queried by deploy/ but not exported: {sorted(missing)}"


def test_health_command_reports_each_dependency(
    handler_settings: Settings, smtp_sink: SmtpSink
) -> None:
    env = settings_env(handler_settings)
    result = subprocess.run(
        [CLI, "health", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(result.stdout)
    assert report["kafka"]["status"] == "ok"
    assert report["postgresql"]["status"] == "ok"
    assert report["smtp"]["status"] == "ok"
    assert report["chemical_api"]["status"] == "ok"
    assert report["breakers"]["status"] == "unknown"  # no application running on METRICS_PORT
    assert result.returncode == 0
    smtp_sink.stop()
    down = subprocess.run([CLI, "health"], capture_output=True, text=True, timeout=60, env=env)
    assert down.returncode == 1
    assert "smtp" in down.stdout and "PROBLEM FOUND" in down.stdout


def test_secrets_never_reach_the_logs(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    password = f"Pw-{uuid.uuid4().hex[:12]}"
    role = f"logtest_{uuid.uuid4().hex[:8]}"
    with db_engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE qchem"))
    try:
        url = settings.database_url.get_secret_value().replace(
            "qchem:qchem@", f"{role}:{password}@"
        )
        secret_settings = settings.model_copy(update={"event_types": ("Report",)})
        # 1. a wrong password: one line, no secret
        bad_env = {
            **settings_env(secret_settings),
            "DATABASE_URL": url.replace(password, password + "x"),
        }
        bad = subprocess.run(
            [CLI, "stats"], capture_output=True, text=True, timeout=60, env=bad_env
        )
        assert bad.returncode == 1 and password not in bad.stderr + bad.stdout
        # 2. a real run with invalid input and a shutdown
        app = AppProcess(
            secret_settings,
            tmp_path / "app.log",
            DATABASE_URL=url,
            KAFKA_SASL_PASSWORD=password,
            LOG_LEVEL="DEBUG",
        )
        main = f"{settings.topic_prefix}.report"
        subprocess.run([CLI, "topics", "create"], env=app.env, check=True, capture_output=True)
        app.start()
        try:
            produce_events(settings.kafka_bootstrap_servers, main, sample_events("Report", 3))
            produce_raw(
                settings.kafka_bootstrap_servers,
                main,
                [(b"k", f'{{"password": "{password}"}}'.encode(), None)],
            )
            wait_for(lambda: "event_invalid" in app.log(), timeout=60, message="invalid logged")
        finally:
            assert app.terminate() == 0
        log = app.log()
        assert "listener_started" in log and "event_processed" in log
        assert password not in log, "a secret reached the logs"
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        processed = [ln for ln in lines if ln.get("event") == "event_processed"]
        assert processed and {
            "event_id",
            "event_type",
            "topic",
            "partition",
            "offset",
            "attempt",
        } <= set(processed[0])
    finally:
        with db_engine.begin() as conn:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
