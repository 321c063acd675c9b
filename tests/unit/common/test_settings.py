"""Settings: defaults, parsing, and one-line errors that name the variable."""

from __future__ import annotations

import pytest

from common import event_types
from common.settings import load_settings, redact_url
from tests.support.config import config_error


def test_defaults() -> None:
    s = load_settings(_env_file=None)
    assert s.concurrency == 10  # ADR-002
    assert s.dlq_retention_days == 30  # ADR-003
    assert s.event_types == event_types.names()
    assert s.event_types == ("ChemicalStatus", "Email", "Report", "ChemicalLookup")
    assert s.critical_types == ("ChemicalStatus", "ChemicalLookup")
    assert s.auto_redrive_types == ("Email",)
    assert s.retries_for("Email") == 2 and s.retries_for("Report") == 3


def test_environment_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_TYPES", "Email, Report")
    monkeypatch.setenv("RETRIES_PER_TYPE", "Report=5")
    monkeypatch.setenv("CONCURRENCY", "50")
    s = load_settings(_env_file=None)
    assert s.event_types == ("Email", "Report")
    assert s.retries_for("Report") == 5 and s.retries_for("Email") == 3
    assert s.concurrency == 50


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("DATABASE_URL", "mysql://u:p@h/d"),
        ("DATABASE_URL", "postgresql://u:p@h:port/d"),
        ("CONCURRENCY", "0"),
        ("EVENT_TYPES", "Fax"),
        ("RETRIES_PER_TYPE", "Email"),
        ("METRICS_PORT", "70000"),
        ("CHEMICAL_API_URL", "ftp://x"),
        ("KAFKA_GROUP_PROTOCOL", "eager"),
        ("SCHEMA_REGISTRY_URL", "ftp://registry:8085"),
        ("SCHEMA_REGISTRY_URL", "127.0.0.1:8085"),  # no scheme
        ("DLQ_RETENTION_DAYS", "0"),  # reported on its own, not as a dedup retention problem
        ("EVENT_RECORD_RETENTION_DAYS", "0"),
        ("EVENT_RECORD_RETENTION_DAYS", "many"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert config_error(monkeypatch, **{name: value}).startswith(f"{name}:")


def test_passwords_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hunter2" not in config_error(monkeypatch, DATABASE_URL="mysql://user:hunter2@db/x")
    assert redact_url("postgresql://u:hunter2@h/d") == "postgresql://u:***@h/d"
