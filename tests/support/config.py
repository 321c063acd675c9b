"""Start-up with a bad environment: the one-line ConfigError the settings stop with."""

from __future__ import annotations

import pytest

from common.settings import ConfigError, load_settings


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """Set `env`, load the settings (no .env file) and return the ConfigError's message.

    Every such error is one line naming the variable (an operator reads it in a log line), so
    that is checked here for all of them."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None)
    message = str(error.value)
    assert "\n" not in message, message
    return message
