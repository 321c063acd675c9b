"""Security basics: Kafka SASL/SSL settings reach librdkafka, secrets stay out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import load_settings


def test_sasl_ssl_settings_pass_through_to_librdkafka(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"  # start-up checks that the file is there (issue 17)
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
        kafka_ssl_ca_location=str(ca),
    )
    config = settings.kafka_common_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["sasl.username"] == "u"
    assert config["sasl.password"] == "p"
    assert config["ssl.ca.location"] == str(ca)


def test_the_password_never_appears_in_the_settings_repr_or_str() -> None:
    password = "s3cr3t-sasl-pw"
    settings = load_settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password=password,
        database_url="postgresql://qchem:db-pw-123@127.0.0.1:5432/qchem",
    )
    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        assert password not in text
        assert "db-pw-123" not in text


def test_plaintext_by_default_without_sasl_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = load_settings(_env_file=None).kafka_common_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not {k for k in config if k.startswith("sasl.")}


def test_the_metrics_server_binds_loopback_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("METRICS_HOST", raising=False)
    assert load_settings(_env_file=None).metrics_host == "127.0.0.1"
