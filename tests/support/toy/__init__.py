"""A toy event type, Tally, added the way README "Add an event type" says - but at run time.

Its schema is `Tally.avsc` (next to this file), its payload `TallyPayload`, its handler
`TallyHandler` (database only: it adds each event's amount to a row of `toy_tallies`, a table
the tests create). `registered()` registers both halves and forgets them afterwards, so the
built-in types are all other tests see.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from common import event_types
from common.event_types import EventType
from common.settings import Settings
from consumers.handlers import register_handler, unregister_handler
from consumers.handlers.base import nothing_outside_the_database
from schemas.events import Event

NAME = "Tally"
SCHEMA = Path(__file__).with_name("Tally.avsc")
TABLE = "toy_tallies"


@dataclass(frozen=True, slots=True)
class TallyPayload:
    counter: str
    amount: int
    note: str | None = None


def tally_sample(n: int, rng: random.Random) -> tuple[str, Any]:
    counter = f"counter-{n % 3}"
    return counter, TallyPayload(counter, rng.randint(1, 100))


TALLY = EventType(NAME, TallyPayload, schema=SCHEMA, sample=tally_sample, retries=1)


class TallyHandler:
    """Adds the event's amount to its counter's row, and keeps the events it applied."""

    event_type: ClassVar[str] = NAME
    dependency: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        """Built like every handler; it needs no setting."""

    perform = nothing_outside_the_database

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        payload: TallyPayload = event.payload
        conn.execute(
            text(
                f"INSERT INTO {TABLE} (counter, total, applied) VALUES (:c, :a, 1) "
                f"ON CONFLICT (counter) DO UPDATE SET total = {TABLE}.total + :a, "
                f"applied = {TABLE}.applied + 1"
            ),
            {"c": payload.counter, "a": payload.amount},
        )


@contextmanager
def registered() -> Iterator[EventType]:
    """Tally registered (its type and its handler) for the duration, then forgotten."""
    event_types.register(TALLY)
    try:
        register_handler(TallyHandler)
        yield TALLY
    finally:
        unregister_handler(NAME)
        event_types.unregister(NAME)


def create_table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(
            text(
                f"CREATE TABLE {TABLE} (counter text PRIMARY KEY, total bigint NOT NULL, "
                "applied int NOT NULL)"
            )
        )


def drop_table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
