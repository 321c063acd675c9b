"""Log redaction: URL passwords, listed fields, bounded payloads."""

from __future__ import annotations

from common.redaction import redact_payload
from ops.logging import mask_secrets


def test_url_passwords_are_masked() -> None:
    assert mask_secrets("connect postgresql://u:hunter2@db:5432/x failed") == (
        "connect postgresql://u:***@db:5432/x failed"
    )


def test_listed_fields_are_masked_in_json_at_any_depth() -> None:
    raw = b'{"a": {"api_token": "t0k", "Token": "x1"}, "password": "p", "ok": "visible"}'
    text = redact_payload(raw, ["token", "api_token"], 2048)
    assert "t0k" not in text and "x1" not in text and '"p"' not in text
    assert "visible" in text


def test_listed_fields_are_masked_in_broken_json_too() -> None:
    text = redact_payload(b'{"password": "hunter2", "x": ', ["password"], 2048)
    assert "hunter2" not in text


def test_payloads_are_bounded() -> None:
    text = redact_payload(b'"' + b"x" * 10_000 + b'"', [], 100)
    assert len(text) < 130 and text.endswith("(10002 bytes)")
