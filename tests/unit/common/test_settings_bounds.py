"""Settings that were accepted silently and misbehaved later (issue 17, "Low"): each now stops
start-up with one line naming its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import load_settings
from tests.support.config import config_error

ARABIC_INDIC_THREE = "\u0663"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("EVENT_TYPES", "Email,Email", "repeated"),
        ("AUTO_REDRIVE_TYPES", "Email,Email", "repeated"),
        ("AUTO_REDRIVE_TYPES", "Email,ChemicalStatus", "business-critical"),
        ("AUTO_REDRIVE_TYPES", "ChemicalLookup", "business-critical"),
        ("DLQ_REDRIVE_INTERVAL_S", "0.001", "greater than or equal"),
        ("DB_POOL_TIMEOUT_S", "1e-9", "greater than or equal"),
        ("METRICS_HOST", "", "empty"),
        ("METRICS_HOST", "  ", "empty"),
        ("METRICS_PORT", "0", "greater than or equal"),
        ("SMTP_HOST", "", "empty"),
        ("SMTP_IDLE_S", "-1", "greater than or equal"),
        ("SMTP_IDLE_S", "301", "less than or equal"),
        ("SMTP_IDLE_S", "nan", "finite number"),
        ("SMTP_IDLE_S", "soon", "valid number"),
        ("LOG_REDACT_FIELDS", "", "at least one"),
        ("LOG_REDACT_FIELDS", " , ", "at least one"),
        ("RETRIES_PER_TYPE", f"Email={ARABIC_INDIC_THREE}", "Type=N"),
        ("RETRIES_PER_TYPE", "Email=1,Email=2", "repeated"),
        ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem", "no readable file"),
        ("KAFKA_SASL_MECHANISM", "BOGUS", "PLAIN"),
        ("CRITICAL_TYPES", "Fax", "unknown"),
    ],
)
def test_a_bad_value_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    message = config_error(monkeypatch, **{name: value})
    assert message.startswith(f"{name}:"), message
    assert says in message


def test_critical_types_default_to_the_chemical_types() -> None:
    s = load_settings(_env_file=None)
    assert s.critical_types == ("ChemicalStatus", "ChemicalLookup")
    assert s.auto_redrive_types == ("Email",)


def test_a_type_made_non_critical_may_be_redriven(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRITICAL_TYPES", "ChemicalStatus")
    monkeypatch.setenv("AUTO_REDRIVE_TYPES", "Email,ChemicalLookup")
    assert load_settings(_env_file=None).auto_redrive_types == ("Email", "ChemicalLookup")


def test_an_existing_ca_file_and_the_probe_value_are_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings(_env_file=None, kafka_ssl_ca_location=str(ca)).kafka_ssl_ca_location
    probe = load_settings(_env_file=None, kafka_ssl_ca_location="probe")
    assert probe.kafka_common_config()["ssl.ca.location"] == "probe"


def test_empty_optional_kafka_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty line in .env (KAFKA_SASL_MECHANISM=) used to pass through as "no mechanism".
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", "")
    config = load_settings(_env_file=None).kafka_common_config()
    assert "sasl.mechanism" not in config and "ssl.ca.location" not in config


def test_ascii_digits_still_parse_in_retries_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRIES_PER_TYPE", "Email=1, Report=4")
    s = load_settings(_env_file=None)
    assert s.retries_for("Email") == 1 and s.retries_for("Report") == 4


def test_secret_fields_are_redacted_by_default() -> None:
    fields = set(load_settings(_env_file=None).log_redact_fields)
    assert {"api_key", "authorization", "passwd", "password", "token", "secret"} <= fields


def test_the_cli_refuses_a_bad_setting_with_one_line_and_exit_2() -> None:
    # Settings are read before any service is touched, so this needs neither Kafka nor
    # PostgreSQL.
    env = {**os.environ, "KAFKA_SASL_MECHANISM": "BOGUS"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "qchem-events"), "topics", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("qchem-events: configuration error: KAFKA_SASL_MECHANISM:")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
