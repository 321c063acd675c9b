"""Typed settings, read once from the environment (and an optional `.env`).

Every setting is an environment variable of the same name in upper case
(`kafka_bootstrap_servers` <- `KAFKA_BOOTSTRAP_SERVERS`). A bad value fails at start-up with a
one-line message naming the variable (see `load_settings`), never later with a traceback.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common import event_types as known_types
from common.urls import parse_url, redact_url

GroupProtocol = Literal["consumer", "classic"]

__all__ = ["ConfigError", "Settings", "load_settings", "redact_url"]

DEFAULT_DATABASE_URL = "postgresql+psycopg2://qchem:qchem@127.0.0.1:5432/qchem"

DAY_MS = 24 * 3600 * 1000
# Kafka deletes whole segments: a record outlives its topic's retention by up to one segment.
# `topics create` rolls segments daily (segment.ms, ops/topics.py) to bound that overstay.
TOPIC_SEGMENT_MS = DAY_MS


def _registered_where(flag: str) -> tuple[str, ...]:
    """The registered types whose registration sets `flag` (a default of the settings)."""
    return tuple(t.name for t in known_types.registered().values() if getattr(t, flag))


def _refuse_unknown(types: Any) -> None:
    known = known_types.names()
    unknown = [name for name in types if name not in known]
    if unknown:
        raise ValueError(f"unknown event type(s) {unknown}; choose from {list(known)}")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Passed through to librdkafka unchanged (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # The mechanisms librdkafka knows: a typo fails at start-up (exit 2), not at first connect.
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None
    ) = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    # "consumer" (KIP-848, brokers 4.0+) splits each topic evenly between instances;
    # "classic" for older brokers (consumers/listener.py group_protocol_config).
    kafka_group_protocol: GroupProtocol = "consumer"
    topic_prefix: str = Field(default="qchem", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    topic_replication_factor: int = Field(default=1, ge=1, le=10)
    main_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    retry_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    dlq_retention_days: int = Field(default=30, ge=1, le=3650)  # ADR-003

    # --- Database --------------------------------------------------------------------------
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    db_pool_size: int = Field(default=10, ge=1, le=500)
    # Below 0.1 s any brief contention reads as "database unavailable" and holds the writers.
    db_pool_timeout_s: float = Field(default=2.0, ge=0.1, le=60)
    db_lock_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    # Longer than any topic keeps a record (validated below): 30-day DLQ + 1-day segment +
    # 4 days for replays in progress. Event records (audit rows) are kept as long.
    dedup_retention_days: int = Field(default=35, ge=1, le=3650)
    event_record_retention_days: int = Field(default=35, ge=1, le=3650)

    # --- Processing ------------------------------------------------------------------------
    # Every registered type (common/event_types.py), and the defaults their registrations give.
    event_types: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=known_types.names)
    concurrency: int = Field(default=10, ge=1, le=1000)  # ADR-002
    max_in_flight: int = Field(default=2000, ge=1, le=1_000_000)
    commit_interval_s: float = Field(default=0.5, gt=0, le=60)
    max_event_bytes: int = Field(default=1_048_576, ge=256, le=64 * 1_048_576)
    shutdown_timeout_s: float = Field(default=30.0, gt=0, le=600)
    write_batch_max: int = Field(default=500, ge=1, le=10_000)
    db_writers_per_listener: int = Field(default=2, ge=1, le=64)

    # --- Retries, breakers, DLQ (ADR-001, ADR-003) -----------------------------------------
    retries: int = Field(default=3, ge=0, le=10)
    # Per-type overrides, "Type=N,...": scenario 2 gives emails attempts 1, 2, 3 then the DLQ.
    retries_per_type: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: {
            t.name: t.retries for t in known_types.registered().values() if t.retries is not None
        }
    )
    breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    breaker_reset_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    # Business-critical types wait for a person in the DLQ (seed doc, scenario 5: "manual
    # review required"); declared before auto_redrive_types, which may not contain them.
    critical_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default_factory=lambda: _registered_where("critical")
    )
    auto_redrive_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default_factory=lambda: _registered_where("auto_redrive")
    )
    # At least a second: each pass reads every auto-redrive DLQ from the broker.
    dlq_redrive_interval_s: float = Field(default=300.0, ge=1, le=86_400)

    # --- Dependencies ----------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    smtp_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # How long a connection waits for the next email before QUIT (consumers/handlers/
    # smtp_pool.py). Under the relay's own idle timeout (RFC 5321: >= 5 min; some use 30-60
    # s), so the relay rarely drops one first; 0 opens a connection per email.
    smtp_idle_s: float = Field(default=10.0, ge=0, le=300, allow_inf_nan=False)
    smtp_sender: str = "qchem-events@localhost"
    chemical_api_url: str = "http://127.0.0.1:8081"
    chemical_api_timeout_s: float = Field(default=2.0, gt=0, le=120)
    # Schema Registry (Confluent API, e.g. Apicurio's .../apis/ccompat/v7) for framed Avro.
    # Unset: a framed record is INVALID (no_schema_registry); JSON and header-tagged Avro work.
    schema_registry_url: str | None = None
    schema_registry_timeout_s: float = Field(default=2.0, gt=0, le=120)

    # --- Operations ------------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    # Not 0: a random port is one nobody scrapes (tests ask for one with model_copy).
    metrics_port: int = Field(default=9400, ge=1, le=65535)
    # /healthz fails when a poll loop has not turned for this long (above the 10 s revoke wait).
    liveness_loop_ttl_s: float = Field(default=60.0, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_payload_max_bytes: int = Field(default=2048, ge=0, le=1_048_576)
    log_redact_fields: Annotated[tuple[str, ...], NoDecode] = (
        *("password", "passwd", "token", "secret", "api_key", "authorization"),
    )

    @field_validator("retries_per_type", mode="before")
    @classmethod
    def _parse_retries(cls, value: Any) -> Any:
        if isinstance(value, str):
            result = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                name, sep, number = item.partition("=")
                # ASCII only: str.isdigit() and int() also take other scripts' digits.
                if not sep or not re.fullmatch(r"[0-9]{1,2}", number.strip()):
                    raise ValueError(f"expected Type=N[,Type=N] with N in 0-10, got {value!r}")
                if name.strip() in result:
                    raise ValueError(f"{name.strip()} repeated in {value!r}")
                result[name.strip()] = int(number)
            return result
        return value

    @field_validator("retries_per_type")
    @classmethod
    def _known_retry_types(cls, value: dict[str, int]) -> dict[str, int]:
        _refuse_unknown(value)
        if any(not 0 <= n <= 10 for n in value.values()):
            raise ValueError("retries must be between 0 and 10")
        return value

    @field_validator("dedup_retention_days")
    @classmethod
    def _dedup_outlives_every_record(cls, value: int, info: ValidationInfo) -> int:
        """A copy of an event that Kafka can still hand back (a DLQ replay above all) must
        find its dedup row, or its effect is applied twice. The topic retentions are declared
        above this field, so they are in `info.data` (absent when they failed themselves)."""
        limits = [
            (name, info.data[field] * scale)
            for name, field, scale in (
                ("DLQ_RETENTION_DAYS", "dlq_retention_days", DAY_MS),
                ("MAIN_RETENTION_MS", "main_retention_ms", 1),
                ("RETRY_RETENTION_MS", "retry_retention_ms", 1),
            )
            if field in info.data
        ]
        if limits:
            name, longest = max(limits, key=lambda limit: limit[1])
            needed = -(-(longest + TOPIC_SEGMENT_MS) // DAY_MS)  # whole days, rounded up
            if value < needed:
                raise ValueError(
                    f"{value} days is shorter than {name} ({longest / DAY_MS:g} days) plus the "
                    f"1-day segment a record can outlive it by; a replay after day {value} "
                    f"could apply an effect twice - set at least {needed}"
                )
        return value

    @field_validator("event_types")
    @classmethod
    def _some_event_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one event type is needed")
        return value

    def retries_for(self, event_type: str) -> int:
        return self.retries_per_type.get(event_type, self.retries)

    @field_validator(
        "event_types", "log_redact_fields", "auto_redrive_types", "critical_types", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("event_types", "auto_redrive_types", "critical_types")
    @classmethod
    def _known_event_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _refuse_unknown(value)
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"event type(s) {repeated} repeated")
        return value

    @field_validator("auto_redrive_types")
    @classmethod
    def _no_critical_redrive(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        critical = [v for v in value if v in info.data.get("critical_types", ())]
        if critical:
            raise ValueError(
                f"{critical} business-critical (CRITICAL_TYPES): their dead letters wait for a "
                "person (qchem-events dlq replay), never an automatic redrive"
            )
        return value

    @field_validator("log_redact_fields")
    @classmethod
    def _some_redact_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "at least one field name is needed (default: "
                + ",".join(cls.model_fields["log_redact_fields"].default)
                + ")"
            )
        return value

    @field_validator("metrics_host", "smtp_host", mode="before")
    @classmethod
    def _a_host(cls, value: Any) -> Any:
        # An empty METRICS_HOST binds every interface; an empty SMTP_HOST fails at first send.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (a host name or IP address)")
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_ssl_ca_location", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_ssl_ca_location")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        # "probe" asks librdkafka to find the system's CA bundle itself.
        if value is None or value == "probe":
            return value
        if not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise ValueError(f"no readable file at {value!r}")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_format(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_format(cls, value: SecretStr) -> SecretStr:
        # common/urls.py: the one parser; its errors never show any part of the URL.
        url = parse_url(value.get_secret_value())
        if not url.drivername.startswith("postgresql") or not url.host or not url.database:
            raise ValueError(
                "expected postgresql[+psycopg2]://user:password@host:port/database, "
                f"got {redact_url(url)!r}"
            )
        return value

    @field_validator("chemical_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = parse_url(value)
        if url.drivername not in ("http", "https") or not url.host:
            raise ValueError(f"expected an http(s) URL, got {redact_url(url)!r}")
        return value.rstrip("/")

    @field_validator("schema_registry_url", mode="before")
    @classmethod
    def _registry_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("http://", "https://", "mock://")):
            raise ValueError("expected an http(s):// URL (or mock:// in tests)")
        return value.rstrip("/") if isinstance(value, str) else value

    @cached_property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the psycopg2 driver named, rendered by the parser that read it
        (an escaped password stays escaped)."""
        url = parse_url(self.database_url.get_secret_value())
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        return url.render_as_string(hide_password=False)

    def kafka_common_config(self) -> dict[str, Any]:
        """librdkafka settings shared by consumers, producers and the admin client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        return config


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a `ConfigError` naming the variable on a bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("; ".join(problems)) from None
