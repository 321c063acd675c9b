"""Redaction of what goes into log lines: secrets and listed fields, at any depth.

Shared by the runtime (a record's payload in an "event_invalid" line, retry_topics/failure.py),
the log configuration (ops/logging.py) and the runbook (ops/dlq_service.py), so it lives in
the leaf package; configuring logging stays in ops.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from common.urls import REDACTED, mask_url_passwords


def redact(value: Any, fields: frozenset[str], depth: int = 0) -> Any:
    """`value` with URL passwords masked in every string and the named fields (lower case)
    replaced, at any depth up to 8."""
    if depth > 8:
        return value
    if isinstance(value, str):
        return mask_url_passwords(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in fields else redact(v, fields, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, fields, depth + 1) for v in value]
    return value


def redact_payload(raw: bytes, fields: Iterable[str], limit: int) -> str:
    """A record's value for a log line: secrets and listed fields masked, size-bounded.

    JSON is parsed and masked by field name at any depth; anything else (invalid JSON,
    binary) gets the listed fields masked textually, then is cut at `limit` bytes.
    """
    names = frozenset(f.lower() for f in fields) | {"password"}
    try:
        if len(raw) <= 65_536:  # parsing a megabyte for a log line is not worth it
            text = json.dumps(redact(json.loads(raw), names), ensure_ascii=False)
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
    text = mask_url_passwords(text)
    if len(text) > limit:
        return text[:limit] + f"... ({len(raw)} bytes)"
    return text
