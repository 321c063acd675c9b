"""What the batch writer (storage/writer.py) is asked to write, and what it answers.

A request is one event's outcome (and, for a success, its effect): the pipeline and the
failure path build them, the writer writes them and tells each its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import Connection


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DLQ = "dlq"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class WriteResult(StrEnum):
    APPLIED = "applied"  # the effect was applied now
    DUPLICATE = "duplicate"  # the effect had been applied before: nothing done
    RECORDED = "recorded"  # an outcome without an effect (retrying, dlq, invalid)


OriginKey = tuple[str, str, int, int]  # consumer group, origin topic, partition, offset


@dataclass(slots=True)
class WriteRequest:
    group: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    event_type: str
    status: Status
    # Told the result; unless `on_done_all` is given (one of the two must be).
    on_done: Callable[[WriteResult | BaseException], None] | None = None
    event_id: str | None = None
    event_key: str | None = None
    attempts: int = 1
    last_error: str | None = None
    processing_ms: int | None = None
    # The handler's database effect, called as `apply(conn, item, performed)`; only for
    # SUCCEEDED, which also writes the dedup row. (The handler's own method, shared by every
    # request: no per-event closure.)
    apply: Callable[[Connection, Any, Any], None] | None = None
    performed: Any = None
    # The handler's set-based effect (consumers/handlers/base.py BatchHandler), called once
    # with the `item`s of every fresh request of the transaction that has the same one.
    apply_batch: Callable[[Connection, list[Any]], None] | None = None
    item: Any = None
    # A dead letter's row of the DLQ index (storage/dlq_index.py), written with its record.
    dlq_entry: dict[str, Any] | None = None
    # Instead of `on_done`: called once per transaction with every request that has the same
    # one, in submission order (the pipeline's completions: one lock, one metric update per
    # batch rather than per event); `context` is whatever the caller needs back.
    on_done_all: Callable[[list[WriteRequest]], None] | None = None
    context: Any = None
    result: WriteResult | BaseException | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # Caught where the request is built: found only at completion, it would be swallowed
        # as a callback failure and the event's offset never marked done (a stalled partition).
        if self.on_done is None and self.on_done_all is None:
            raise ValueError("a write request needs on_done or on_done_all")

    @property
    def origin_key(self) -> OriginKey:
        return (self.group, self.origin_topic, self.origin_partition, self.origin_offset)
