"""The Prometheus telemetry: a batch of outcomes (`finished_all`, the writer's completions)
moves every metric exactly as the same outcomes reported one by one."""

from __future__ import annotations

from prometheus_client import REGISTRY

from ops.telemetry import PrometheusEventTelemetry

OUTCOMES = [("success", 1, 0.01), ("success", 3, 0.2), ("duplicate", 1, 0.05), ("success", 7, 2.5)]


def _metrics(event_type: str) -> dict[str, float]:
    names = {
        ("qchem_events_processed_total", "outcome", "success"),
        ("qchem_events_processed_total", "outcome", "duplicate"),
        ("qchem_event_processing_seconds_count", None, None),
        ("qchem_event_processing_seconds_sum", None, None),
        ("qchem_events_in_flight", None, None),
    }
    found = {}
    for name, label, value in names:
        labels = {"event_type": event_type, **({label: value} if label else {})}
        found[f"{name}:{value}"] = REGISTRY.get_sample_value(name, labels) or 0.0
    for attempt in ("1", "2", "3", "4"):
        labels = {"event_type": event_type, "attempt": attempt}
        found[f"attempt:{attempt}"] = (
            REGISTRY.get_sample_value("qchem_events_succeeded_on_attempt_total", labels) or 0.0
        )
    return found


def test_finished_all_moves_the_metrics_as_one_by_one_does() -> None:
    one_by_one, batch = PrometheusEventTelemetry("TelOne"), PrometheusEventTelemetry("TelAll")
    one_by_one.accepted(len(OUTCOMES))
    batch.accepted(len(OUTCOMES))
    for outcome, attempt, seconds in OUTCOMES:
        if outcome == "success":
            one_by_one.succeeded_on(attempt)
        one_by_one.finished(outcome, seconds)
    batch.finished_all(OUTCOMES)

    expected = _metrics("TelOne")
    assert _metrics("TelAll") == expected
    assert expected["qchem_events_processed_total:success"] == 3
    assert (expected["attempt:3"], expected["attempt:4"]) == (1, 1)  # 7 counts as "4"
    assert expected["qchem_events_in_flight:None"] == 0
