"""The memory benchmark runs end to end (--smoke): child processes sampled, backlog drained."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_memory_smoke_samples_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.memory", kafka_bootstrap, database_url, timeout=240)

    events = report["config"]["events"]
    assert events == 20_000
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"app-idle", "raw", "app"}
    for name, variant in variants.items():
        assert variant["exit_code"] == 0, (name, variant["exit_code"])
        assert len(variant["rss_series_mb"]) >= 2, name
        # A Python process with confluent-kafka is tens of MB; a GB means a broken reading.
        assert 10 < variant["steady_rss_mb"] <= variant["peak_rss_mb"] < 1024, (name, variant)
        assert variant["vmhwm_mb"] >= 0.9 * variant["peak_rss_mb"], (name, variant)
    assert variants["raw"]["events_processed"] == events
    app = variants["app"]
    assert app["events_processed"] == events and app["drained_share"] == 1.0
    assert not app["stopped_by_max_seconds"]
    # The whole application (threads, pool, HTTP server) weighs more than a bare consume loop.
    assert app["peak_rss_mb"] > variants["raw"]["steady_rss_mb"]
    summary = report["summary"]
    assert summary["app_peak_mb"] >= app["peak_rss_mb"]
    assert summary["target_met"] == (summary["app_peak_mb"] < report["target_peak_mb"])
