"""The concurrency-scaling benchmark runs end to end (--smoke) and its report is complete."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_scaling_smoke_reports_every_concurrency(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.scaling", kafka_bootstrap, database_url, timeout=180)

    assert report["config"]["rounds"] == 1 and report["config"]["sleep_ms"] == 20
    assert report["config"]["app_settings"]["max_in_flight"] >= 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"one-at-a-time", "app-c1", "app-c10", "app-c50", "app-c100"}
    for name, variant in variants.items():
        # Sized from the ideal rate: 20 ms per event per worker.
        assert variant["ideal_rate"] == pytest.approx(variant["concurrency"] / 0.020), name
        assert variant["events"] >= 20, name
        (round_,) = variant["rounds"]
        assert round_["events"] == variant["events"], name
        assert round_["processed"] == variant["events"], (name, round_)
        assert round_["rate"] > 0 and round_["seconds"] > 0, (name, round_)
        # Nothing can beat the ideal: each event waits 20 ms on one of N workers.
        assert 0 < variant["share_of_ideal"] <= 1.05, (name, variant["share_of_ideal"])
        assert variant["ratio_to_baseline"] > 0, name
    assert variants["one-at-a-time"]["ratio_to_baseline"] == pytest.approx(1.0)
    assert variants["app-c100"]["events"] > variants["app-c10"]["events"]
    assert variants["app-c10"]["target_share_of_ideal"] == 0.9
    assert isinstance(variants["app-c10"]["meets_target"], bool)
