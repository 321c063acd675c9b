"""The Prometheus implementation of the runtime's telemetry interface (common/telemetry.py).

The runtime reports events ("finished", "held", "lag"); this turns them into the metrics of
ops/metrics.py, which the dashboard and the alert rules query. ops/app.py hands it to the
runtime when it assembles the application.
"""

from __future__ import annotations

from collections import Counter
from contextlib import suppress

from consumers.breakers import STATE_VALUES
from ops import metrics


class PrometheusEventTelemetry:
    """One event type's metrics. Label lookups take a lock each: the children of the hot
    path are bound once, here, not per event."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        metrics.initialise(event_type)
        self._in_flight = metrics.IN_FLIGHT.labels(event_type)
        self._processed = {o: metrics.PROCESSED.labels(event_type, o) for o in metrics.OUTCOMES}
        self._succeeded_on = {
            a: metrics.SUCCESS_ATTEMPT.labels(event_type, str(a)) for a in (1, 2, 3, 4)
        }
        self._seconds = metrics.PROCESSING_SECONDS.labels(event_type)
        self._last_processed = metrics.LAST_PROCESSED.labels(event_type)
        self._held = {r: metrics.HELD.labels(event_type, r) for r in metrics.HELD_REASONS}
        self._replays = metrics.REPLAYS.labels(event_type)
        self._redrives = metrics.REDRIVES.labels(event_type)

    def accepted(self, count: int = 1) -> None:
        self._in_flight.inc(count)

    def abandoned(self) -> None:
        self._in_flight.dec()

    def finished(self, outcome: str, seconds: float) -> None:
        self._processed[outcome].inc()
        self._seconds.observe(seconds)
        self._in_flight.dec()
        self._last_processed.set_to_current_time()

    def finished_all(self, outcomes: list[tuple[str, int, float]]) -> None:
        by_outcome: Counter[str] = Counter()
        by_attempt: Counter[int] = Counter()
        for outcome, attempt, seconds in outcomes:
            by_outcome[outcome] += 1
            if outcome == "success":
                by_attempt[min(attempt, 4)] += 1
            self._seconds.observe(seconds)
        for outcome, n in by_outcome.items():
            self._processed[outcome].inc(n)
        for attempt, n in by_attempt.items():
            self._succeeded_on[attempt].inc(n)
        self._in_flight.dec(len(outcomes))
        self._last_processed.set_to_current_time()

    def succeeded_on(self, attempt: int) -> None:
        self._succeeded_on[min(attempt, 4)].inc()  # "4" means 4 or later

    def retry_late(self, topic: str, seconds: float) -> None:
        metrics.RETRY_LATENESS.labels(self.event_type, topic).observe(seconds)

    def held(self, reason: str, times: int = 1) -> None:
        child = self._held.get(reason) or metrics.HELD.labels(self.event_type, reason)
        child.inc(times)

    def replayed(self) -> None:
        self._replays.inc()

    def lag(self, topic: str, partition: int, records: int) -> None:
        metrics.CONSUMER_LAG.labels(self.event_type, topic, str(partition)).set(records)

    def lag_gone(self, topic: str, partition: int) -> None:
        with suppress(KeyError):  # never reported: nothing to remove
            metrics.CONSUMER_LAG.remove(self.event_type, topic, str(partition))

    def paused(self, reason: str, partitions: int) -> None:
        metrics.PAUSED_PARTITIONS.labels(self.event_type, reason).set(partitions)

    def redriven(self, records: int) -> None:
        self._redrives.inc(records)


class PrometheusTelemetry:
    """The application's metrics (prometheus_client's default registry, served on /metrics)."""

    def __init__(self) -> None:
        self._event_types: dict[str, PrometheusEventTelemetry] = {}

    def for_event_type(self, event_type: str) -> PrometheusEventTelemetry:
        if event_type not in self._event_types:
            self._event_types[event_type] = PrometheusEventTelemetry(event_type)
        return self._event_types[event_type]

    def breaker_state(self, dependency: str, state: str) -> None:
        metrics.BREAKER_STATE.labels(dependency).set(STATE_VALUES.get(state, 0))

    def write_batch(self, events: int) -> None:
        metrics.WRITE_BATCH_SIZE.observe(events)
