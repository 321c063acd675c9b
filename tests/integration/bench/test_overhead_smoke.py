"""The framework-overhead benchmark runs end to end (--smoke) and its report is complete."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_overhead_smoke_reports_latencies(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.overhead", kafka_bootstrap, database_url, timeout=180)

    mx, cfg = report["max_throughput"], report["config"]
    assert mx["rate"] > 0 and mx["succeeded"] == mx["events"] == 1_000
    assert cfg["rate"] == pytest.approx(mx["rate"] / 2)
    assert cfg["events"] >= 1 and cfg["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"raw-poll", "raw-batch", "app"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["produced"] == round_["done"] == cfg["events"], (name, round_)
        assert 0 < round_["measured"] <= cfg["events"], (name, round_)
        assert round_["produce_rate"] > 0, (name, round_)
        assert 0 < round_["p50_ms"] <= round_["p90_ms"] <= round_["p99_ms"] <= round_["max_ms"]
        for stat in ("p50_ms", "p99_ms"):
            expected = variant[f"median_{stat}"] - variants["raw-poll"][f"median_{stat}"]
            assert variant[f"added_{stat}"] == pytest.approx(expected), (name, stat)
    assert variants["raw-poll"]["added_p50_ms"] == 0
    # Only the app's outcome times come from polling the database.
    assert variants["app"]["rounds"][0]["db_poll_period_ms"] > 0
    assert variants["raw-poll"]["rounds"][0]["db_poll_period_ms"] is None
