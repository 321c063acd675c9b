"""The admin server (`qchem-events admin`) in the test process, and a small HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from common.settings import Settings
from ops.admin.config import load_admin_settings
from ops.admin.run import AdminServer
from ops.app import App

TOKEN = "test-admin-token-0123456789"


@contextmanager
def admin_server(settings: Settings, **overrides: Any) -> Iterator[AdminServer]:
    """An admin server on a free port with TOKEN (unless `token=None`), syncing every second."""
    config = load_admin_settings(**{"port": 0, "token": TOKEN, "sync_interval_s": 1.0, **overrides})
    server = AdminServer(settings, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def app_with_admin(settings: Settings) -> Iterator[tuple[App, AdminServer]]:
    """The app running in this process and an admin server reading its /metrics."""
    from tests.support.app import running_app

    with running_app(settings) as app:
        assert app.health is not None
        with admin_server(settings, instances=f"http://127.0.0.1:{app.health.port}") as admin:
            yield app, admin


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any  # case-insensitive (an email.message.Message)
    raw: bytes


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 60,
) -> Answer:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), exc.headers
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Answer(status, parsed, got, raw)


def one_line_error(answer: Answer, status: int) -> str:
    """The answer is `status` with a one-line JSON error (no traceback); its text."""
    assert answer.status == status, (answer.status, answer.raw[:300])
    assert answer.headers.get("Content-Type", "").startswith("application/json")
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer.body
    text = answer.body["error"]
    assert "\n" not in text and "Traceback" not in text and len(text) < 600
    return str(text)
