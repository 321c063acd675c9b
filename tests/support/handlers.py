"""Handlers for tests: the real ones with a programmable failure in front."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from sqlalchemy.engine import Connection

from common.errors import TransientError
from common.settings import Settings
from consumers.handlers.report import ReportHandler
from schemas.events import Event


class FlakyReportHandler(ReportHandler):
    """A real Report handler whose first `failures` calls per event raise TransientError.

    Records the wall-clock time of every call per event id, so tests can compare them with
    the due times carried by the retry-tier records.
    """

    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()

    def perform(self, event: Event) -> Any:
        with self.lock:
            self.calls[event.event_id].append(time.time())
            attempt = len(self.calls[event.event_id])
        if attempt <= self.failures:
            raise TransientError(f"simulated timeout (call {attempt})")
        return super().perform(event)

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        super().apply(conn, event, performed)
