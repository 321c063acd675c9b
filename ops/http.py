"""/metrics, /healthz and /readyz on one small HTTP server (127.0.0.1 unless configured).

/healthz: no listener crashed and every poll loop turned recently (liveness, ops/health.py).
/readyz:  alive, every listener joined its group (with or without partitions), the database
          answers (readiness, ops/health.py).

The server is waitress (issue 17, defect 6). Its event loop reads requests and only a complete
request takes one of `THREADS` workers, so a client that dribbles its headers holds a socket,
never a thread. The standard library's ThreadingHTTPServer spent a thread per connection, had
no timeouts and a listen backlog of 5, and a burst of slow clients delayed /readyz past
Prometheus' scrape timeout. Here a request whose headers are not in within
`REQUEST_DEADLINE_S` is closed, as is a connection idle for `IDLE_TIMEOUT_S`. The Server
header names no software version.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from ops.health import liveness, readiness

if TYPE_CHECKING:
    from consumers.runtime import Runtime

THREADS = 4  # /readyz queries the database; /metrics renders in milliseconds
BACKLOG = 1024  # connections the kernel completes while the loop is busy
CONNECTION_LIMIT = 1000  # open sockets; with poll(), not select()'s 1024-descriptor cap
REQUEST_DEADLINE_S = 5.0  # from a request's first byte to its last header
IDLE_TIMEOUT_S = 30  # a kept-alive connection between scrapes
SERVER_HEADER = "qchem-events"

Response = tuple[int, bytes, str]


class _Channel(HTTPChannel):
    """A connection that notes when its current request began, for the header deadline."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return bool(super().received(data))


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        """Waitress closes idle connections; also close a request still unfinished after
        REQUEST_DEADLINE_S - a client that sends a byte now and then is never idle."""
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            unfinished = channel.request is not None and not channel.requests
            if unfinished and now - channel.request_started > REQUEST_DEADLINE_S:
                channel.will_close = True


def adjustments_for(host: str, port: int, *, threads: int, **more: Any) -> Adjustments:
    """Waitress settings of every HTTP server here (this one, the admin's): a deep backlog,
    idle connections closed after IDLE_TIMEOUT_S and checked every second, poll() rather
    than select(), our Server header, 16 KiB of request headers at most; `more` on top."""
    return Adjustments(
        host=host,
        port=port,
        threads=threads,
        backlog=BACKLOG,
        channel_timeout=IDLE_TIMEOUT_S,
        cleanup_interval=1,
        asyncore_use_poll=True,
        ident=SERVER_HEADER,
        max_request_header_size=16_384,
        **more,
    )


class HealthServer:
    """Binds at construction (a taken port raises OSError before anything else starts),
    serves after `start()`."""

    def __init__(self, host: str, port: int, app: Runtime) -> None:
        self.app = app
        self._map: dict[int, Any] = {}
        adjustments = adjustments_for(
            host,
            port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            max_request_body_size=65_536,
        )
        self._server = _Server(self._wsgi, map=self._map, adj=adjustments)
        self.host = str(self._server.effective_host)
        self.port = int(self._server.effective_port)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="health-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        else:
            self._close()

    def _serve(self) -> None:
        # One loop turn at a time, so that stop() needs no cross-thread close of the sockets.
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            self._close()

    def _close(self) -> None:
        wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=5)

    # -- the endpoints ----------------------------------------------------------------------

    def _database_ok(self) -> bool:
        if self.app.engine is None:
            return False
        try:
            with self.app.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def _route(self, path: str) -> Response:
        if path == "/metrics":
            return 200, generate_latest(), CONTENT_TYPE_LATEST
        if path == "/healthz":
            body = liveness(self.app)
            return _json(200 if body["alive"] else 503, body)
        if path == "/readyz":
            body = readiness(self.app, database=self._database_ok())
            return _json(200 if body["ready"] else 503, body)
        return _json(404, {"error": "not found"})

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, body, content_type = _json(405, {"error": "method not allowed"})
        else:
            status, body, content_type = self._route(environ.get("PATH_INFO", ""))
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]


def _json(status: int, body: dict[str, Any]) -> Response:
    return status, json.dumps(body).encode(), "application/json"
