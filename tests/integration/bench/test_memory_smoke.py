"""The memory benchmark runs end to end (--smoke): child processes sampled, backlog drained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_memory_smoke_samples_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--smoke", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"bench failed:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)

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
