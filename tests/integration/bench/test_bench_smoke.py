"""The throughput benchmark runs end to end (--smoke) and every variant reads every event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_bench_smoke_reports_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--smoke", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"bench failed:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)

    events = report["config"]["events"]
    assert events == 2_000 and report["config"]["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"raw-json", "raw-decode", "app-c1", "app-c10"}
    for name, variant in variants.items():
        assert len(variant["rounds"]) == 1, name
        for round_ in variant["rounds"]:
            assert round_["processed"] == events, (name, round_)
            assert round_["rate"] > 0, (name, round_)
        assert variant["median_rate"] > 0, name
    assert variants["raw-json"]["ratio_to_baseline"] == pytest.approx(1.0)
    for name in ("app-c1", "app-c10"):
        assert variants[name]["median_committed_rate"] > 0, name
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["librdkafka"] and machine["postgresql"]
