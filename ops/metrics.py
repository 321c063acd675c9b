"""Prometheus metrics, named by Prometheus conventions (base units, `_total`, `_seconds`).

Every metric the dashboard (deploy/grafana) and the alert rules (deploy/prometheus) query is
defined here; tests/integration/ops checks that a running application exports them all.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter(
    "qchem_events_processed_total",
    "Events finished, by outcome: success, retried (sent to a retry tier), dlq, invalid, "
    "duplicate (effect already applied).",
    ["event_type", "outcome"],
)
SUCCESS_ATTEMPT = Counter(
    "qchem_events_succeeded_on_attempt_total",
    "Successful events by the attempt they succeeded on (4 means 4 or later).",
    ["event_type", "attempt"],
)
PROCESSING_SECONDS = Histogram(
    "qchem_event_processing_seconds",
    "Time from a record's hand-off to its durable outcome.",
    ["event_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.8, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0),
)
RETRY_LATENESS = Histogram(
    "qchem_retry_lateness_seconds",
    "How late a retry-tier record started, after its due time.",
    ["event_type", "topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
IN_FLIGHT = Gauge(
    "qchem_events_in_flight", "Events handed to workers and not finished.", ["event_type"]
)
HELD = Counter(
    "qchem_events_held_total",
    "Times an event was held in place (database down, dependency breaker open).",
    ["event_type", "reason"],
)
CONSUMER_LAG = Gauge(
    "qchem_consumer_lag_records",
    "Records between the committed offset and the end of the partition.",
    ["event_type", "topic", "partition"],
)
DLQ_DEPTH = Gauge(
    "qchem_dlq_depth_records", "Records retained in the event type's DLQ.", ["event_type"]
)
DB_POOL_IN_USE = Gauge("qchem_db_pool_connections_in_use", "Checked-out database connections.")
DB_POOL_SIZE = Gauge("qchem_db_pool_connections_max", "Size of the database connection pool.")
BREAKER_STATE = Gauge(
    "qchem_dependency_breaker_state",
    "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
    ["dependency"],
)
WRITE_BATCH_SIZE = Histogram(
    "qchem_db_write_batch_events",
    "Events written per database transaction (group commit).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
PAUSED_PARTITIONS = Gauge(
    "qchem_paused_partitions", "Partitions paused, by reason.", ["event_type", "reason"]
)
REDRIVES = Counter(
    "qchem_dlq_redriven_total", "DLQ records redriven by the DLQ monitor.", ["event_type"]
)
REPLAYS = Counter(
    "qchem_dlq_replayed_total",
    "Replayed or redriven DLQ records received back on the main topic.",
    ["event_type"],
)
LAST_PROCESSED = Gauge(
    "qchem_last_processed_timestamp_seconds",
    "Unix time of the last finished event.",
    ["event_type"],
)


OUTCOMES = ("success", "retried", "dlq", "invalid", "duplicate")
HELD_REASONS = ("database_down", "dependency_down")


def initialise(event_type: str) -> None:
    """Create an event type's label sets at 0, so the first increment is visible to rate()."""
    for outcome in OUTCOMES:
        PROCESSED.labels(event_type, outcome)
    for attempt in ("1", "2", "3", "4"):
        SUCCESS_ATTEMPT.labels(event_type, attempt)
    for reason in HELD_REASONS:
        HELD.labels(event_type, reason)
    REDRIVES.labels(event_type)
    REPLAYS.labels(event_type)
    IN_FLIGHT.labels(event_type)
    PROCESSING_SECONDS.labels(event_type)
