"""Fault-suite fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _info_logs_only() -> Iterator[None]:
    """In-process apps log at INFO, not DEBUG: one debug line per event would cost more than
    processing it, and the fault tests time the system, not its console."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    yield
    structlog.configure(**saved)
