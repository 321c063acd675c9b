"""Structured JSON logs (structlog), with secrets and listed fields redacted.

Each line about an event carries event_id, event_type, topic, partition, offset and attempt
(bound in consumers/processing.py), and trace_id and span_id while tracing is on
(common/tracing.py). Passwords in URLs are masked wherever they appear in a
value, and any field named in LOG_REDACT_FIELDS is replaced, at any depth.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from common import redaction
from common.tracing import add_trace_ids
from common.urls import mask_url_passwords


def mask_secrets(text: str) -> str:
    """URL passwords masked up to the last '@', the rule of common/urls.py: a password
    with an unescaped '@' is hidden whole, however a reader splits it."""
    return mask_url_passwords(text)


def redactor(fields: Iterable[str]) -> Any:
    names = frozenset(f.lower() for f in fields) | {"password", "sasl.password"}

    def processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
        return redaction.redact(dict(event_dict), names)

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
