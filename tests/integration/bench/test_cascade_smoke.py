"""The cascade benchmark runs end to end (--smoke): both variants reach 100 % and are timed."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_cascade_smoke_times_both_variants(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.cascade", kafka_bootstrap, database_url, timeout=180)

    events = report["config"]["events"]
    assert events == 100 and report["config"]["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"cascade", "no-fault"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["succeeded"] == events, (name, round_)
        # The scenario's own checks are reported, not judged here: at 100 events its fault
        # shapes can race (its tests cover them). A failed run must say which check failed.
        assert round_["passed"] == (not round_["failed_checks"]), (name, round_)
        assert 0 < round_["t50_s"] <= round_["t99_9_s"] <= round_["wall_s"] < 120, (name, round_)
        assert variant["median_wall_s"] == round_["wall_s"]
    cascade, baseline = variants["cascade"], variants["no-fault"]
    assert baseline["all_rounds_passed"], baseline["rounds"][0]["failed_checks"]
    assert baseline["ratio_to_no_fault"] == pytest.approx(1.0)
    # The faulted events wait for at least the 1 s retry tier, so the cascade takes longer.
    assert cascade["median_wall_s"] > 1.0
    assert cascade["rounds"][0]["succeeded_on_attempt"].get("1", 0) < events
    assert baseline["rounds"][0]["succeeded_on_attempt"] == {"1": events}
    assert cascade["target_met"] == (cascade["median_wall_s"] <= report["target"]["within_s"])
