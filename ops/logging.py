"""Structured JSON logs (structlog), with secrets and listed fields redacted.

Each line about an event carries event_id, event_type, topic, partition, offset and attempt
(bound in consumers/processing.py), and trace_id and span_id while tracing is on
(common/tracing.py). Passwords in URLs are masked wherever they appear in a
value, and any field named in LOG_REDACT_FIELDS is replaced, at any depth.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from common.tracing import add_trace_ids
from consumers.urls import REDACTED, mask_url_passwords


def mask_secrets(text: str) -> str:
    """URL passwords masked up to the last '@', the rule of consumers/urls.py: a password
    with an unescaped '@' is hidden whole, however a reader splits it."""
    return mask_url_passwords(text)


def _redact(value: Any, fields: frozenset[str], depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in fields else _redact(v, fields, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, fields, depth + 1) for v in value]
    return value


def redactor(fields: Iterable[str]) -> Any:
    names = frozenset(f.lower() for f in fields) | {"password", "sasl.password"}

    def processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
        return _redact(dict(event_dict), names)

    return processor


def configure(level: str = "INFO", fmt: str = "json", redact: Iterable[str] = ()) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s", force=True)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,  # trace_id, span_id of the current span (tracing on only)
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor(redact),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def redact_payload(raw: bytes, fields: Iterable[str], limit: int) -> str:
    """A record's value for a log line: secrets and listed fields masked, size-bounded.

    JSON is parsed and masked by field name at any depth; anything else (invalid JSON,
    binary) gets the listed fields masked textually, then is cut at `limit` bytes.
    """
    names = frozenset(f.lower() for f in fields) | {"password"}
    try:
        if len(raw) <= 65_536:  # parsing a megabyte for a log line is not worth it
            text = json.dumps(_redact(json.loads(raw), names), ensure_ascii=False)
        else:
            raise ValueError("too large to parse for a log line")
    except (ValueError, RecursionError):
        text = raw[: limit * 2].decode("utf-8", "backslashreplace")
        for name in names:
            text = re.sub(
                rf'("?{re.escape(name)}"?\s*[:=]\s*)("[^"]*"?|[^\s,}}]*)',
                rf"\g<1>{REDACTED}",
                text,
                flags=re.IGNORECASE,
            )
    text = mask_secrets(text)
    if len(text) > limit:
        return text[:limit] + f"... ({len(raw)} bytes)"
    return text
