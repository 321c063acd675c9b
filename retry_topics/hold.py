"""Holding in place, the one mechanism (retry_topics/failure.py's docstring says when): a
record that cannot go on now keeps its offset uncommitted and no attempt is used up; it is
tried again after capped jittered backoff (policy.hold_delay_s), counted on the record. The
writer's hold through a database outage takes the same backoff (`Hold.delay_s`) and reports
to the same database mark (`Hold.writes_held`), which pauses the listener until a probe finds
the database answering again.

`InFlight` and `Later` say what is needed of the consumer's record and timers
(consumers/work.py, consumers/timers.py), which this package sits below (pyproject.toml's
layers) and so does not import.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import structlog

from common.telemetry import NULL_EVENT_TELEMETRY, EventTelemetry
from retry_topics import headers as rh
from retry_topics.naming import TopicNames
from retry_topics.policy import FailureKind, hold_delay_s
from schemas.events import Event

log = structlog.get_logger(__name__)

# While the database is marked down, it is asked this often whether it answers again.
DATABASE_PROBE_S = 1.0


class Later(Protocol):
    """Runs a callback after a delay, on a thread of its own (consumers/timers.py)."""

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None: ...


class InFlight(Protocol):
    """What the failure path reads and writes of a record (consumers/work.py's `Work`)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    origin: rh.Origin
    event: Event | None
    attempt: int
    first_failure_ms: int | None
    replay_count: int
    held: int  # times held in place
    claimed: bool  # holds the claim on its event's outside effect (storage/claims.py)
    started: float  # time.monotonic() when it was taken
    span: Any

    @property
    def lane(self) -> Hashable: ...

    def log_fields(self) -> dict[str, Any]: ...


class Hold:
    """Holding in place, for one event type (module docstring): the count and the backoff of
    every hold - the pipeline's on the timers (`again`), the writer's on its own thread
    (`delay_s`) - and the database's down mark, which pauses the listener."""

    def __init__(
        self,
        later: Later,
        *,
        probe: Callable[[], bool],
        names: TopicNames,
        telemetry: EventTelemetry = NULL_EVENT_TELEMETRY,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self._later = later
        self._probe = probe  # does the database answer now? (storage/db.py)
        self.telemetry = telemetry
        self.log = log.bind(event_type=names.event_type, group=names.group)
        # Monotonic time of the last "database unavailable" failure, None once it answers
        # again: the listener stops fetching meanwhile (nothing could be recorded).
        self.database_down_since: float | None = None

    def delay_s(self, held: int) -> float:
        """The wait before the next try of something held `held` times - the writer's too."""
        return hold_delay_s(held, self.rng)

    def again(self, work: InFlight, run: Callable[[], None], delay_s: float | None = None) -> None:
        """Hold `work` in place: count it, and `run` it again after `delay_s` (by default the
        backoff for the times it has been held)."""
        work.held += 1
        self._later.call_later(self.delay_s(work.held) if delay_s is None else delay_s, run)

    # -- the database ------------------------------------------------------------------------

    def writes_held(self, down: bool, held: int) -> None:
        """The writer holds `held` writes until the database answers, or (`down` False) has
        written them (storage/writer.py)."""
        if not down:
            self.database_back()
            return
        self.telemetry.held(FailureKind.DATABASE_DOWN.value, held)
        if self.database_down_since is None:
            self.log.warning("database_unavailable_writes_held", held=held)
        self.database_down()

    def database_down(self) -> None:
        """Mark the database down (the listener pauses fetching) and start probing it."""
        if self.database_down_since is not None:
            return
        self.database_down_since = time.monotonic()
        self._later.call_later(DATABASE_PROBE_S, self._probe_database)

    def _probe_database(self) -> None:
        if self.database_down_since is None:
            return  # a write succeeded meanwhile
        if self._probe():
            self.database_back()
        else:
            self._later.call_later(DATABASE_PROBE_S, self._probe_database)

    def database_back(self) -> None:
        if self.database_down_since is not None:
            self.database_down_since = None
            self.log.info("database_available_again")
