"""Integration fixtures: real dev servers (devtools/devservers) for the handlers' dependencies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.settings import Settings
from devtools.devservers import ChemicalApiServer, SmtpSink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free port, stopped after the test."""
    with SmtpSink(port=0) as sink:
        yield sink


@pytest.fixture
def chemical_api() -> Iterator[ChemicalApiServer]:
    """A real chemical API on a free port, stopped after the test."""
    with ChemicalApiServer(port=0) as api:
        yield api


@pytest.fixture
def handler_settings(
    settings: Settings, smtp_sink: SmtpSink, chemical_api: ChemicalApiServer
) -> Settings:
    """`settings` pointing the handlers at this test's SMTP sink and chemical API."""
    return settings.model_copy(
        update={
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "chemical_api_url": chemical_api.url,
        }
    )
