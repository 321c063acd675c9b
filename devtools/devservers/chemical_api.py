"""A real chemical database API for tests and demos, with fault injection.

`ChemicalApiServer`: a threaded `http.server` serving deterministic chemical records, with
modes for outages (500s, slowness, garbage bodies) and a request log. It listens on 127.0.0.1
only: a development aid, not a service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from devtools.devservers.base import DevServer
from devtools.ports import LOCALHOST

log = logging.getLogger(__name__)


Mode = Literal["ok", "error500", "slow", "invalid-json"]
MODES: tuple[str, ...] = ("ok", "error500", "slow", "invalid-json")

_PREFIXES = ("Methyl", "Ethyl", "Propyl", "Butyl", "Chloro", "Fluoro", "Bromo", "Nitro")
_STEMS = ("benzene", "phenol", "acetate", "amine", "oxide", "sulfate", "ketone", "toluene")
_HAZARDS = ("none", "flammable", "corrosive", "toxic", "oxidizer", "irritant", "carcinogen")


def chemical_record(chemical_id: str) -> dict[str, str]:
    """The API's record for `chemical_id`: always the same for the same id.

    The CAS number has a valid check digit, so code that validates CAS numbers accepts it.
    """
    n = int.from_bytes(hashlib.sha256(chemical_id.encode()).digest()[:8], "big")
    first = 50 + n % 9_999_950  # CAS numbers have 2 to 7 leading digits
    second = (n // 10_000_000) % 100
    digits = f"{first}{second:02d}"
    check = sum(int(d) * i for i, d in enumerate(reversed(digits), start=1)) % 10
    return {
        "chemical_id": chemical_id,
        "name": _PREFIXES[n % 8] + _STEMS[(n >> 8) % 8],
        "cas_number": f"{first}-{second:02d}-{check}",
        "hazard_class": _HAZARDS[(n >> 16) % len(_HAZARDS)],
        "source": "qchem-dev-api",
    }


class _ApiHttpServer(ThreadingHTTPServer):
    # Rebinding right after stop() must work although the old port is in TIME_WAIT.
    allow_reuse_address = True
    # A request stuck in "slow" mode must not keep stop() or the process waiting.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: ChemicalApiServer) -> None:
        super().__init__(address, _ApiRequestHandler)
        self.api = api

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up (slow mode) is expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _ApiRequestHandler(BaseHTTPRequestHandler):
    server: _ApiHttpServer
    server_version = "qchem-dev-api/1.0"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        api = self.server.api
        api._record(path, self.headers.get("X-Event-ID"))
        reply = api._reply_for(path)
        if reply is None:  # the server stopped while this request was being slow
            self.close_connection = True
            return
        status, body, content_type = reply
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:
            self.close_connection = True  # the client gave up (its timeout): nothing to do
        api._notify("GET", self.path, status, self.headers.get("X-Event-ID"))

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests are reported through the request log and `on_request`."""


class ChemicalApiServer(DevServer[tuple["_ApiHttpServer", threading.Thread]]):
    """A real HTTP chemical API on `host:port`, with fault injection.

    `GET /chemicals/{id}` answers `chemical_record(id)` (404 for ids starting "UNKNOWN"),
    `GET /health` always answers 200. Faults (`set_mode`, `fail_next`) apply to
    `/chemicals/...` only, so a health probe shows "up but failing" as a real outage would.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = LOCALHOST,
        on_request: Callable[[str, str, int, str | None], None] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._on_request = on_request
        self._lock = threading.Lock()
        self._mode: Mode = "ok"
        self._delay_s = 0.0
        self._fail_remaining = 0
        self._fail_status = 500
        self._requests: list[tuple[float, str]] = []
        self._event_ids: list[str | None] = []
        # Set by stop(): wakes requests sleeping in "slow" mode so they end at once.
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def _listen(self) -> tuple[_ApiHttpServer, threading.Thread]:
        self._stopping.clear()
        server = _ApiHttpServer((self.host, self._port), self)
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"chemical-api-{self._port}",
            daemon=True,
        )
        thread.start()
        return server, thread

    def _close(self, listening: tuple[_ApiHttpServer, threading.Thread]) -> None:
        server, thread = listening
        self._stopping.set()  # slow requests are cut short
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    def set_mode(self, mode: Mode, delay_s: float = 1.0) -> None:
        """ok | error500 (every lookup 500) | slow (answer after delay_s) | invalid-json."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
        with self._lock:
            self._mode = mode
            self._delay_s = delay_s

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` lookups with `status` (e.g. 500, 503, 429, 400)."""
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status

    @property
    def requests(self) -> list[tuple[float, str]]:
        """(time.monotonic(), path) of every request, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def event_ids(self) -> list[str | None]:
        """The X-Event-ID header of every request, in the order of `requests`."""
        with self._lock:
            return list(self._event_ids)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._event_ids.clear()

    def _record(self, path: str, event_id: str | None) -> None:
        with self._lock:
            self._requests.append((time.monotonic(), path))
            self._event_ids.append(event_id)

    def _reply_for(self, path: str) -> tuple[int, bytes, str] | None:
        """(status, body, content type) for `path`; None when stopped during a delay."""
        if path == "/health":
            return 200, _json({"status": "ok"}), "application/json"
        prefix = "/chemicals/"
        raw_id = path[len(prefix) :] if path.startswith(prefix) else ""
        if not raw_id or "/" in raw_id:
            return 404, _json({"error": "not found", "path": path}), "application/json"
        with self._lock:
            mode, delay_s = self._mode, self._delay_s
            forced: int | None = None
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                forced = self._fail_status
        if mode == "slow" and self._stopping.wait(delay_s):
            return None
        if forced is not None:
            return (
                forced,
                _json({"error": "injected failure", "status": forced}),
                "application/json",
            )
        if mode == "error500":
            return 500, _json({"error": "internal server error"}), "application/json"
        if mode == "invalid-json":
            return 200, b"<html>not json</html>", "text/html"
        chemical_id = unquote(raw_id)
        if chemical_id.startswith("UNKNOWN"):
            body = _json({"error": "unknown chemical", "chemical_id": chemical_id})
            return 404, body, "application/json"
        return 200, _json(chemical_record(chemical_id)), "application/json"

    def _notify(self, method: str, path: str, status: int, event_id: str | None) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(method, path, status, event_id)
        except Exception:  # a broken printer must not break the API
            log.exception("chemical API on_request callback failed")


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()
