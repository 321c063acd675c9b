"""Dead letters as the pipeline leaves them, for tests and the DLQ benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from retry_topics import headers as rh
from retry_topics.naming import TopicNames


def exhausted_headers(
    names: TopicNames,
    origin: rh.Origin,
    failure: rh.Failure,
    *,
    source_headers: Sequence[tuple[str, bytes | None]] | None,
    first_failure_ms: int,
    reason: str = "exhausted",
) -> rh.Headers:
    """The headers of a DLQ record whose third attempt failed (the pipeline's, rh.build)."""
    return rh.build(
        source_headers=source_headers,
        origin=origin,
        group=names.group,
        attempt=3,
        first_failure_ms=first_failure_ms,
        due_ms=None,
        failure=failure,
        dlq_reason=reason,
    )
