"""The cascade benchmark runs end to end (--smoke): both variants reach 100 % and are timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_cascade_smoke_times_both_variants(kafka_bootstrap: str, database_url: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "bench.cascade", "--smoke", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"bench failed:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)

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
