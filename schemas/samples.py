"""Realistic, valid events of every type: for `qchem-events sample | kcat -P`, tests and benchmarks.

Each type's registration gives how to make one (its `sample`, schemas/catalog.py); this module
adds the envelope.

With a `seed` the output is reproducible apart from `occurred_at` (always "now", so retention
and lag dashboards treat sample events like real ones) - event ids included, so producing the
same seeded sample twice yields duplicates the consumer will drop. Without a seed, ids are
fresh uuid4s.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from common import event_types
from schemas.codec import encode_json
from schemas.events import Event

PRODUCER = "qchem-events sample"


def sample_events(
    event_type: str, count: int, *, seed: int | None = None, keys: int | None = None
) -> list[Event]:
    """`count` valid `event_type` events with unique ids and strictly increasing occurred_at.

    The key is the entity the event is about (chemical id, recipient, report id). With `keys`,
    entities repeat round-robin so exactly min(count, keys) distinct keys appear - what an
    ordering or partitioning test needs.
    """
    spec = event_types.get(event_type)
    if spec is None:
        raise ValueError(
            f"unknown event type {event_type!r}; choose from {list(event_types.registered())}"
        )
    if spec.sample is None:
        raise ValueError(f"event type {event_type!r} was registered without a sample")
    if count < 0:
        raise ValueError("count must be 0 or more")
    if keys is not None and keys < 1:
        raise ValueError("keys must be 1 or more")
    # The type is part of the seed: samples of different types must not share event ids.
    rng = random.Random(f"{event_type}:{seed}") if seed is not None else random.Random()
    make = spec.sample
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    # One millisecond apart, the last one now: increasing, and never in the future.
    first = now - timedelta(milliseconds=max(count - 1, 0))
    events = []
    for i in range(count):
        key, payload = make((i % keys if keys else i) + 1, rng)
        # A seeded run draws its ids from rng too, so it is reproducible end to end.
        event_id = (
            uuid.UUID(int=rng.getrandbits(128), version=4) if seed is not None else uuid.uuid4()
        )
        events.append(
            Event(
                event_id=str(event_id),
                event_type=event_type,
                occurred_at=first + timedelta(milliseconds=i),
                producer=PRODUCER,
                schema_version=1,
                key=key,
                payload=payload,
            )
        )
    return events


def sample_json_lines(
    event_type: str, count: int, *, seed: int | None = None, keys: int | None = None
) -> Iterator[str]:
    """One compact JSON document per event, without newline: a line of `kcat -P` input."""
    for event in sample_events(event_type, count, seed=seed, keys=keys):
        yield encode_json(event).decode("utf-8")
