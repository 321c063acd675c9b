"""What the runtime reports, as an interface: the runtime says what happened, not how it is
measured.

The runtime (consumers/, retry_topics/, storage/) is handed a `Telemetry` when the
application is assembled and never imports a metrics library; the Prometheus implementation
lives with the rest of observability (ops/telemetry.py) and is wired in by ops/app.py. A
runtime built without one (a unit test, a tool) reports to `NULL_TELEMETRY`.

One `EventTelemetry` per event type (`Telemetry.for_event_type`): an implementation resolves
its per-type instruments once there, off the hot path, because every event reports through
it several times.
"""

from __future__ import annotations

from typing import Protocol


class EventTelemetry(Protocol):
    """What one event type's listener and pipeline report."""

    def accepted(self, count: int = 1) -> None:
        """Events were handed to the pipeline: `count` more in flight."""

    def abandoned(self) -> None:
        """An event left the pipeline without an outcome (its partition moved away)."""

    def finished(self, outcome: str, seconds: float) -> None:
        """An event's outcome is durable: success, retried, dlq, invalid or duplicate;
        `seconds` from hand-off to outcome."""

    def finished_all(self, outcomes: list[tuple[str, int, float]]) -> None:
        """`finished` (and `succeeded_on` for each "success") for many events at once:
        (outcome, attempt, seconds) each."""

    def succeeded_on(self, attempt: int) -> None:
        """A success on this attempt (1 = first delivery)."""

    def retry_late(self, topic: str, seconds: float) -> None:
        """A retry-tier record started this long after its due time."""

    def held(self, reason: str, times: int = 1) -> None:
        """Events held in place (database_down, dependency_down, route_failed, ...)."""

    def replayed(self) -> None:
        """A replayed or redriven DLQ record came back on the main topic."""

    def lag(self, topic: str, partition: int, records: int) -> None:
        """Records between the committed offset and the end of an owned partition."""

    def lag_gone(self, topic: str, partition: int) -> None:
        """The partition is no longer owned: its lag is not this consumer's to report."""

    def paused(self, reason: str, partitions: int) -> None:
        """How many partitions are paused for this reason now."""

    def redriven(self, records: int) -> None:
        """Dead letters sent back to the main topic by the DLQ monitor."""


class Telemetry(Protocol):
    """What the running application reports; given to the runtime at start-up."""

    def for_event_type(self, event_type: str) -> EventTelemetry:
        """The reporter of one event type (its instruments created at zero)."""
        ...

    def breaker_state(self, dependency: str, state: str) -> None:
        """A dependency's circuit breaker is now `state` (closed, half-open, open)."""

    def write_batch(self, events: int) -> None:
        """The writer committed this many events in one database transaction."""


class _NullEventTelemetry:
    """Reports nothing (every method a no-op)."""

    def accepted(self, count: int = 1) -> None:
        pass

    def abandoned(self) -> None:
        pass

    def finished(self, outcome: str, seconds: float) -> None:
        pass

    def finished_all(self, outcomes: list[tuple[str, int, float]]) -> None:
        pass

    def succeeded_on(self, attempt: int) -> None:
        pass

    def retry_late(self, topic: str, seconds: float) -> None:
        pass

    def held(self, reason: str, times: int = 1) -> None:
        pass

    def replayed(self) -> None:
        pass

    def lag(self, topic: str, partition: int, records: int) -> None:
        pass

    def lag_gone(self, topic: str, partition: int) -> None:
        pass

    def paused(self, reason: str, partitions: int) -> None:
        pass

    def redriven(self, records: int) -> None:
        pass


class NullTelemetry:
    """Reports nothing: the default of a runtime built without an observer."""

    def for_event_type(self, event_type: str) -> EventTelemetry:
        return NULL_EVENT_TELEMETRY

    def breaker_state(self, dependency: str, state: str) -> None:
        pass

    def write_batch(self, events: int) -> None:
        pass


NULL_EVENT_TELEMETRY: EventTelemetry = _NullEventTelemetry()
NULL_TELEMETRY: Telemetry = NullTelemetry()
