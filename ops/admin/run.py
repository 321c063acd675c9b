"""`qchem-events admin`: the admin server (waitress) and the DLQ index's sync loop.

A process of its own, beside the consumers (README says why): it binds before anything
starts (a taken ADMIN_PORT is one line and exit 2), completes the DLQ index every
ADMIN_SYNC_INTERVAL_S, runs replay jobs in threads and stops on SIGTERM.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from waitress import wasyncore

from common.settings import Settings
from ops import dlq_service
from ops.admin.config import AdminSettings
from ops.admin.server import AdminApp
from ops.http import _Server, adjustments_for
from storage.db import make_engine

log = structlog.get_logger(__name__)
THREADS = 8  # the page's health checks wait on timeouts; replays run in their own threads


class AdminServer:
    def __init__(self, settings: Settings, admin: AdminSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings, pool_size=THREADS + 2)
        self.app = AdminApp(settings, admin, self.engine)
        self._map: dict[int, Any] = {}
        adjustments = adjustments_for(
            admin.host,
            admin.port,
            threads=THREADS,
            # The app answers an oversized body with a one-line 400; waitress only stops a
            # body far beyond it (its own answer is a plain-text 413).
            max_request_body_size=admin.max_body_bytes * 16,
        )
        self._server = _Server(self.app, map=self._map, adj=adjustments)
        self.host = str(self._server.effective_host)
        self.port = int(self._server.effective_port)
        self.url = f"http://{self.host}:{self.port}"
        self.interval = admin.sync_interval_s
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, name="admin-http", daemon=True),
            threading.Thread(target=self._sync_loop, name="dlq-index-sync", daemon=True),
        ]

    def start(self) -> None:
        dlq_service.interrupt_stale_jobs(self.engine)
        for thread in self._threads:
            thread.start()
        log.info("admin_started", url=self.url)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.engine.dispose()

    def wait(self) -> None:
        self._stopping.wait()

    def sync_now(self) -> int:
        return dlq_service.sync(self.settings, self.engine, self.settings.event_types)

    def _sync_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync_now()
            except Exception as exc:  # the next turn tries again; reads use what is indexed
                log.warning("dlq_index_sync_failed", error=str(exc)[:300])
            self._stopping.wait(self.interval)

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            wasyncore.close_all(self._map)
            self._server.task_dispatcher.shutdown(timeout=5)
