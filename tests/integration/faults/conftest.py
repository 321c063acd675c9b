"""Fault-suite fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.support.faults import soak_timeout


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault test is an integration test that may run as long as its load is scaled
    (QCHEM_SOAK_SCALE): marked here once, not by a `pytestmark` in each module. The hook sees
    the whole session's items, hence the folder check."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(soak_timeout()))


@pytest.fixture(autouse=True)
def _info_logs_only() -> Iterator[None]:
    """In-process apps log at INFO, not DEBUG: one debug line per event would cost more than
    processing it, and the fault tests time the system, not its console."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    yield
    structlog.configure(**saved)
