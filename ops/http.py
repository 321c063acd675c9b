"""/metrics, /healthz and /readyz on one small HTTP server (127.0.0.1 unless configured).

/healthz: no listener crashed and every poll loop turned recently (liveness, ops/health.py).
/readyz:  alive, every listener joined its group (with or without partitions), the database
          answers (readiness, ops/health.py).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ops.health import liveness, readiness

if TYPE_CHECKING:
    from consumers.app import App


class HealthServer:
    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _database_ok(self) -> bool:
        if self.app.engine is None:
            return False
        try:
            with self.app.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    body = liveness(server.app)
                    self._json(200 if body["alive"] else 503, body)
                elif self.path == "/readyz":
                    body = readiness(server.app, database=server._database_ok())
                    self._json(200 if body["ready"] else 503, body)
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:  # scrapes are not log lines
                return

        return Handler
