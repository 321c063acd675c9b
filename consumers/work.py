"""One consumed record and what is known about it, on its way through the pipeline."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from common import tracing
from retry_topics import headers as rh
from schemas.events import Event

NOT_PERFORMED: Any = object()

now_ms = rh.now_ms  # the clock of due times and first failures (retry_topics/headers.py)


@dataclass(slots=True)
class Work:
    """One consumed record and what is known about it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    origin: rh.Origin
    event: Event | None = None
    # Set on the poll thread when the record cannot be processed at all.
    rejected: Exception | None = None
    attempt: int = 1
    first_failure_ms: int | None = None
    replay_count: int = 0
    due_ms: int | None = None
    held: int = 0  # times held in place (database down, breaker open)
    claimed: bool = False  # holds the claim on its event's outside effect (storage/claims.py)
    lane_taken: bool = False  # its key's lane in the dispatcher is busy with it
    # What `perform` returned, kept while the event is held for the database only.
    performed: Any = NOT_PERFORMED
    # Framed Avro whose writer schema the registry could not give yet (consumers/schema_wait.py).
    schema_pending: bool = False
    started: float = field(default_factory=time.monotonic)
    span: Any = None  # its processing's consumer span while tracing is on (common/tracing.py)

    @property
    def lane(self) -> Hashable:
        if self.event is not None:
            return self.event.key
        return ("unkeyed", self.topic, self.partition, self.offset)

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def log_fields(self) -> dict[str, Any]:
        fields = {
            "event_id": self.event.event_id if self.event else None,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "attempt": self.attempt,
        }
        if self.span is not None:  # also on the writer and delivery threads
            fields.update(tracing.log_ids(self.span))
        return fields
