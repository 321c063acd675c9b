"""Settings of the admin process (`qchem-events admin`), read from ADMIN_* variables.

Kept apart from common/settings.py: the consumers never read them, and the admin process
runs beside them (README, "Admin API and page"). A bad value stops start-up with one line
naming the variable (AdminConfigError).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TOKEN_MIN = 16


class AdminConfigError(ValueError):
    """A bad ADMIN_* setting (exit 2, one line)."""


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADMIN_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=9410, ge=0, le=65535)
    # Unset: every mutating call is refused (403) and the page says how to enable them.
    token: SecretStr | None = None
    # Base URLs of the running instances' metrics servers (breakers, per-partition lag);
    # empty: the one at METRICS_HOST:METRICS_PORT.
    instances: Annotated[tuple[str, ...], NoDecode] = ()
    # How often the DLQ index is completed from the topics (ops/dlq_query.py `sync_index`).
    sync_interval_s: float = Field(default=10.0, gt=0, le=3600)
    max_body_bytes: int = Field(default=65_536, ge=1_024, le=10_485_760)

    @field_validator("instances", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip().rstrip("/") for v in value.split(",") if v.strip())
        return value

    @field_validator("instances")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not v.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"expected http(s) base URLs, got {bad[0][:80]!r}")
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and len(value) < TOKEN_MIN:
            raise ValueError(f"at least {TOKEN_MIN} characters (e.g. `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _beyond_loopback_needs_token(self) -> AdminSettings:
        if not self.loopback and self.token is None:
            raise ValueError(
                f"ADMIN_HOST={self.host} is beyond loopback: set ADMIN_TOKEN (reads need it too)"
            )
        return self

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_admin_settings(**overrides: object) -> AdminSettings:
    try:
        return AdminSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "ADMIN_" + "_".join(str(p) for p in error["loc"]).upper() if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        raise AdminConfigError(f"{name}: {message}" if name else message) from None
