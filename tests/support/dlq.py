"""DLQ records as the pipeline dead-letters them, for the unit tests of ops/dlq*.py."""

from __future__ import annotations

from retry_topics import headers as rh
from retry_topics.dlq_record import DlqRecord, make_record
from schemas.codec import encode_json
from schemas.samples import sample_events

ORIGIN = rh.Origin("qchem.email", 2, 41, 1_700_000_000_000)


def dlq_headers(
    *,
    error_class: str = "DependencyDownError",
    kind: str = "transient",
    replay_count: int = 0,
    source: list[tuple[str, bytes | None]] | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a record dead-lettered after 3 attempts, from ORIGIN."""
    return rh.build(
        source_headers=source
        if source is not None
        else [("content-type", b"application/json"), ("traceparent", b"00-ab-cd-01")],
        origin=ORIGIN,
        group="qchem-events.email",
        attempt=3,
        first_failure_ms=1_700_000_001_000,
        due_ms=None,
        failure=rh.Failure(error_class, "smtp: connection refused", "Traceback ...", kind),
        replay_count=replay_count,
        dlq_reason="exhausted",
    )


def dlq_record(
    offset: int = 0,
    *,
    partition: int = 0,
    timestamp_ms: int = 1_700_000_002_000,
    value: bytes | None = None,
    key: bytes | None = b"user-1",
    headers: list[tuple[str, bytes]] | None = None,
    event_type: str = "Email",
) -> DlqRecord:
    """A record of qchem.email.dlq; by default a valid sample event with `dlq_headers()`."""
    if value is None:
        value = encode_json(sample_events(event_type, 1)[0])
    return make_record(
        event_type,
        "qchem.email.dlq",
        partition,
        offset,
        timestamp_ms,
        key,
        value,
        dlq_headers() if headers is None else headers,
    )
