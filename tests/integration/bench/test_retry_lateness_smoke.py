"""The retry-lateness benchmark runs end to end (--smoke): every retry measured, per tier."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_retry_lateness_smoke_measures_every_retry(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.retry_lateness", kafka_bootstrap, database_url, timeout=180)

    cfg = report["config"]
    events = cfg["events"]
    assert events == 300 and cfg["rounds"] == 1
    # Every event fails once, 10 % twice, 5 % three times (make_plan rounds the shares).
    expected = {
        "retry-1s": events,
        "retry-2s": round(events * cfg["twice_share"]) + round(events * cfg["thrice_share"]),
        "retry-4s": round(events * cfg["thrice_share"]),
    }
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"burst", "spread-2s"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["unmatched_retry_records"] == 0, name
        assert round_["retry_records"] == sum(expected.values()), name
        # No attempt ran twice: each retry record maps to exactly one handler call.
        assert round_["handler_calls"] == round_["expected_calls"], name
        for tier, count in expected.items():
            app, timer = variant["tiers"][tier], variant["baseline"][tier]
            assert app["count"] == count and timer["count"] == count, (name, tier)
            # A retry never runs before it is due (a small negative would be clock noise).
            assert app["median_ms"] >= -1 and app["p99_ms"] >= app["median_ms"], (name, tier)
            assert app["max_ms"] >= app["p99_ms"], (name, tier)
            assert app["target_met"] == (app["p99_ms"] < report["target_p99_ms"])
            assert timer["max_ms"] >= timer["median_ms"] >= 0, (name, tier)
            # Sanity bound: a retry that waits ten times its tier's delay is a broken schedule.
            assert app["max_ms"] < 10_000, (name, tier, app)
    assert report["machine"]["nproc"] >= 1 and report["machine"]["librdkafka"]
